#include "core/feature_norm.h"

#include <gtest/gtest.h>
