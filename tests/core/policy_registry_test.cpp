#include "core/policy_registry.h"

#include <gtest/gtest.h>
