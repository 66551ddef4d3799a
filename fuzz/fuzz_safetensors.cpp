// libFuzzer target: core/safetensors.h, the header alone and the whole file,
// on arbitrary bytes. Either it parses or it throws std::runtime_error; the
// tensors never claim more bytes than the file holds.
#include "core/safetensors.h"
#include "fuzz/fuzz_input.h"

#include <stdexcept>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const namm::fuzz::MemoryFile file(data, size);
  try {
    namm::read_safetensors_header(file.path());
    const namm::SafetensorsFile parsed = namm::read_safetensors(file.path());
    size_t bytes = 0;
    for (const auto& [name, tensor] : parsed.tensors) bytes += static_cast<size_t>(tensor.nbytes());
    if (bytes > size) __builtin_trap();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
