#include "core/feature_norm.h"
