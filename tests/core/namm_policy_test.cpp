#include "core/namm_policy.h"

#include <gtest/gtest.h>
