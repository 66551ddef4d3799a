#include "core/namm_model.h"

#include <gtest/gtest.h>
