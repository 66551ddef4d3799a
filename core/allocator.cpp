#include "core/allocator.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace namm {

AllocatorTuning tune_allocator_for_tensors() {
  const char* opt_out = std::getenv("NAMM_SYSTEM_MALLOC");
  if (opt_out != nullptr && std::strcmp(opt_out, "1") == 0) return {false, "NAMM_SYSTEM_MALLOC=1"};
#if defined(__GLIBC__)
  // 32 MiB is glibc's ceiling for the threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX);
  // larger blocks (a long prompt's attention scores) still come from mmap.
  constexpr int kMmapThreshold = 32 << 20;
  // Free memory at the heap top is kept up to 1 GiB and the heap grows in
  // 64 MiB steps: a step's peak is reached once, then reused.
  constexpr int kTrimThreshold = 1 << 30;
  constexpr int kTopPad = 64 << 20;
  const bool ok = mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1 &&
                  mallopt(M_TOP_PAD, kTopPad) == 1;
  return {ok, ok ? "glibc mallopt" : "mallopt refused a setting"};
#else
  return {false, "not glibc"};
#endif
}

}  // namespace namm
