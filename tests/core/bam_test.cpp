#include "core/bam.h"

#include <gtest/gtest.h>
