#include "core/baselines.h"

#include <gtest/gtest.h>
