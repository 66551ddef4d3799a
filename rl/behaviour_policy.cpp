#include "rl/behaviour_policy.h"
