#include "rl/gen_data.h"
