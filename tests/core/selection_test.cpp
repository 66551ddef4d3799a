#include "core/selection.h"

#include <gtest/gtest.h>
