#include "core/policy_registry.h"
