#include "adapters/kv_cache.h"

#include <gtest/gtest.h>
