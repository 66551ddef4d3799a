// libFuzzer target: core/npy.h read_npy on arbitrary bytes. Any input must
// either parse or throw std::runtime_error; a crash, a sanitizer report, or
// an allocation beyond what the file holds is a bug.
#include "core/npy.h"
#include "fuzz/fuzz_input.h"

#include <ATen/core/Tensor.h>

#include <stdexcept>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const namm::fuzz::MemoryFile file(data, size);
  try {
    const at::Tensor t = namm::read_npy(file.path());
    if (t.numel() > 0 && static_cast<size_t>(t.nbytes()) > size) __builtin_trap();  // data it never read
  } catch (const std::runtime_error&) {
  }
  return 0;
}
