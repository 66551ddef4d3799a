// The process's heap settings for tensor work on the CPU.
//
// LibTorch's CPU allocator takes every tensor from malloc. glibc serves
// blocks above its mmap threshold (128 KiB at first, raised on the fly
// towards 32 MiB) with a fresh mmap and gives them back with munmap, and
// trims the heap top whenever 128 KiB lie free there, so a training step
// that makes and frees many activations of a few MiB pays a page fault for
// every 4 KiB it touches, every step: on the language host, 1.7-1.9 million
// faults and 12-14 s of kernel time in 30 steps of 28-30 s.
// Keeping freed blocks in the heap removes those faults
// (bench/bench_allocator.sh measures the difference).
#pragma once

namespace namm {

/// What tune_allocator_for_tensors() did.
struct AllocatorTuning {
  bool applied = false;  ///< false: opted out, or not glibc.
  const char* reason = "";
};

/// Sets glibc's mmap threshold to its largest value (32 MiB) and its trim
/// threshold and top pad high, so freed tensor memory stays in the heap for
/// the next step instead of going back to the kernel. Call once, first thing
/// in main(), before any thread starts. The environment variable
/// NAMM_SYSTEM_MALLOC=1 leaves glibc's defaults (for benchmarks).
AllocatorTuning tune_allocator_for_tensors();

}  // namespace namm
