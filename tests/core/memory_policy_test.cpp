#include "core/memory_policy.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace namm {
namespace {

TEST(Budget, ParsesTokensPercentAndFraction) {
  EXPECT_EQ(Budget::parse("512").tokens, 512);
  EXPECT_DOUBLE_EQ(Budget::parse("25%").fraction, 0.25);
  EXPECT_DOUBLE_EQ(Budget::parse("0.5").fraction, 0.5);
}

TEST(Budget, RejectsOutOfRangeAndGarbage) {
  for (const char* bad : {"", "0", "-3", "0%", "150%", "1.5", "abc", "12tokens", "nan"}) {
    EXPECT_THROW(Budget::parse(bad), std::invalid_argument) << bad;
  }
}

TEST(Budget, FractionRoundsUpAndKeepsAtLeastOne) {
  EXPECT_EQ(Budget::parse("25%").resolve(10), 3);
  EXPECT_EQ(Budget::parse("0.01").resolve(5), 1);
  EXPECT_EQ(Budget::parse("64").resolve(1000), 64);
}

}  // namespace
}  // namespace namm
