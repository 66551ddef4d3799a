#include "rl/decision_transformer.h"
