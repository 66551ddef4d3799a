// libFuzzer target: a Hugging Face tokenizer.json (tokenizers/hf_tokenizer.h)
// and a text to run through it. The input is the file's bytes, then a NUL,
// then the text (without a NUL, a fixed text). Either the file is refused with
// a one-line std::exception, or every encode either succeeds or refuses the
// text with one line, and the ids it gives decode without error.
#include "tokenizers/hf_tokenizer.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace {

void require_one_line(const std::exception& e) {
  const std::string message = e.what();
  if (message.empty() || message.find('\n') != std::string::npos) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  const void* nul = std::memchr(bytes, '\0', size);
  const size_t json_size = nul ? static_cast<size_t>(static_cast<const char*>(nul) - bytes) : size;
  const std::string json(bytes, json_size);
  const std::string text = nul ? std::string(bytes + json_size + 1, size - json_size - 1)
                               : std::string("Hello, w\xC3\xB6rld! 123 <s> \t\n  x\xF0\x9F\x98\x80");
  try {
    const auto tokenizer = namm::tokenizers::HfTokenizer::parse(json, "", "tokenizer.json");
    for (const bool special : {false, true}) {
      std::vector<int32_t> ids;
      try {
        ids = tokenizer.encode(text, special);
      } catch (const std::invalid_argument& e) {
        require_one_line(e);
        continue;
      }
      for (const int32_t id : ids)
        if (id < 0 || id >= tokenizer.vocab_size()) __builtin_trap();  // every id names a token
      (void)tokenizer.decode(ids, false);
      (void)tokenizer.decode(ids, true);
    }
  } catch (const std::exception& e) {
    require_one_line(e);
  }
  return 0;
}
