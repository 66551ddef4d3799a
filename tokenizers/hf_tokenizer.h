// A Hugging Face tokenizer.json, read and run in C++: added tokens, then
// normalizer -> pre-tokenizer -> BPE model -> post-processor to encode, and
// the decoder chain to decode. Gives the same ids as the reference
// implementations on the Llama 3, Qwen3, Llama 2 (SentencePiece-style BPE
// with byte fallback) and Gemma 3 files (tests/tokenizers).
//
//   auto tok = HfTokenizer::load("path/to/model_dir");   // or .../tokenizer.json
//   std::vector<int32_t> ids = tok.encode("Hello world", /*add_special_tokens=*/true);
//   std::string text = tok.decode(ids, /*skip_special_tokens=*/true);
//
// Unicode: PCRE2 runs the pre-tokenizer regexes, utf8proc the normalisation
// forms. Encoding is const and thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace namm::tokenizers {

class HfTokenizer {
 public:
  /// Reads a tokenizer.json file, or the one in a model directory, and the
  /// tokenizer_config.json beside it when there is one (special tokens,
  /// bos/eos). Throws std::invalid_argument "FILE: FIELD: problem" for a
  /// missing, oversized, malformed or unsupported file.
  static HfTokenizer load(const std::filesystem::path& file_or_dir);

  /// Parses tokenizer.json text (and optionally tokenizer_config.json text);
  /// `name` prefixes error messages.
  static HfTokenizer parse(std::string_view tokenizer_json, std::string_view config_json, const std::string& name);

  /// True when path (a file or a directory's tokenizer.json) is a Hugging
  /// Face tokenizer, judged by its top-level "model" object, without a full parse.
  static bool looks_like_hf_tokenizer(const std::filesystem::path& file_or_dir);

  /// Token ids of UTF-8 text. add_special_tokens: let the post-processor add
  /// what the model expects around a sequence (Llama 2's <s>, Gemma's <bos>).
  /// Special-token strings written in the text are always recognised.
  /// Throws std::invalid_argument when text is not valid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;

  /// Text of ids. Throws std::out_of_range naming an id outside the vocabulary.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  /// One past the largest token id, added tokens included.
  int32_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  /// Throws std::out_of_range for an id that names no token.
  std::string id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  /// From tokenizer_config.json's bos_token / eos_token, when given.
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

  HfTokenizer(HfTokenizer&&) noexcept;
  HfTokenizer& operator=(HfTokenizer&&) noexcept;
  ~HfTokenizer();

 private:
  struct Impl;
  explicit HfTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace namm::tokenizers
