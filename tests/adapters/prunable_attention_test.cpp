#include "adapters/prunable_attention.h"

#include <gtest/gtest.h>
