#include "core/npy.h"

#include <gtest/gtest.h>
