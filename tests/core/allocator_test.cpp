// Pins the heap settings' switch: applied on glibc unless NAMM_SYSTEM_MALLOC=1.
#include "core/allocator.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

namespace namm {
namespace {

TEST(Allocator, NammSystemMallocLeavesGlibcDefaults) {
  ASSERT_EQ(setenv("NAMM_SYSTEM_MALLOC", "1", 1), 0);
  const AllocatorTuning tuning = tune_allocator_for_tensors();
  unsetenv("NAMM_SYSTEM_MALLOC");
  EXPECT_FALSE(tuning.applied);
  EXPECT_STREQ(tuning.reason, "NAMM_SYSTEM_MALLOC=1");
}

TEST(Allocator, TunesGlibcOtherwise) {
  unsetenv("NAMM_SYSTEM_MALLOC");
  const AllocatorTuning tuning = tune_allocator_for_tensors();
#if defined(__GLIBC__)
  EXPECT_TRUE(tuning.applied) << tuning.reason;
#else
  EXPECT_FALSE(tuning.applied);
#endif
  // a tensor-sized block comes and goes without error after the change
  void* block = std::malloc(8 << 20);
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, 8 << 20);
  std::free(block);
}

}  // namespace
}  // namespace namm
