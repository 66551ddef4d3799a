#include "core/safetensors.h"

#include <gtest/gtest.h>
