#include "rl/walker2d.h"
