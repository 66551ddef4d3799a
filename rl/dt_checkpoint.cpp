#include "rl/dt_checkpoint.h"
