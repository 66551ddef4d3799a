#include "core/namm_policy.h"
