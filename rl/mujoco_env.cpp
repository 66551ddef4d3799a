#include "rl/mujoco_env.h"
