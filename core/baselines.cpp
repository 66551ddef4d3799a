#include "core/baselines.h"
