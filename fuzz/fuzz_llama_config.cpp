// libFuzzer target: a Hugging Face Llama config.json (text/llama_checkpoint.h
// parse_llama_config) on arbitrary text. Either it parses into a config that
// passes validation, or it throws a std::exception with a one-line message.
#include "text/llama_checkpoint.h"

#include <stdexcept>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const namm::LlamaConfig config = namm::parse_llama_config(text, "config.json");
    config.validate();
  } catch (const std::exception& e) {
    const std::string message = e.what();
    if (message.empty() || message.find('\n') != std::string::npos) __builtin_trap();  // one line, always
  }
  return 0;
}
