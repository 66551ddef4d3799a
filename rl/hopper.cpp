#include "rl/hopper.h"
