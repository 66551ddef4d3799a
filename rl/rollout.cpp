#include "rl/rollout.h"
