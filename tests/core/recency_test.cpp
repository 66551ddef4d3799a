#include "core/recency.h"

#include <gtest/gtest.h>
