#include "rl/train_dt.h"
