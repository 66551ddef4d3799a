#include "adapters/memory_controller.h"

#include <gtest/gtest.h>
