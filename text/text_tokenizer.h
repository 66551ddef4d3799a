// The tokenizer of a model directory, whichever kind it holds: a Hugging
// Face tokenizer.json (tokenizers/hf_tokenizer.h, for real checkpoints) or
// the builtin word vocabulary our synthetic-task hosts were trained with
// (text/tokenizer.h). `namm logits` and `namm generate` take any model
// directory through it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace namm {

class Tokenizer;
namespace tokenizers {
class HfTokenizer;
}

class TextTokenizer {
 public:
  /// The tokenizer.json in dir (or the file itself). Throws
  /// std::invalid_argument naming the file and the problem.
  static TextTokenizer load(const std::string& dir_or_file);

  /// Ids [T] of UTF-8 text. add_special_tokens: what the model expects
  /// around a sequence (the builtin vocabulary's <bos>, Llama 2's <s>, ...).
  /// Throws std::invalid_argument (invalid UTF-8, a word the builtin
  /// vocabulary lacks).
  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens) const;

  /// Text of ids [T]; throws std::out_of_range for an id outside the vocabulary.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const;

  /// One past the largest id.
  int64_t vocab_size() const;
  /// Ids that end generation: the tokenizer's end-of-sequence token, if it names one.
  std::vector<int64_t> end_ids() const;
  /// "builtin word vocabulary (686 tokens)" or "tokenizer.json (BPE, 128256 tokens)".
  std::string describe() const;
  /// Throws std::invalid_argument naming both files when the tokenizer has
  /// ids the model cannot embed (vocab_size above the model's).
  void check_fits(int64_t model_vocab_size, const std::string& model_config_path) const;

  TextTokenizer(TextTokenizer&&) noexcept;
  TextTokenizer& operator=(TextTokenizer&&) noexcept;
  ~TextTokenizer();

 private:
  TextTokenizer() = default;
  std::string file_;
  std::unique_ptr<Tokenizer> words_;                // builtin, or
  std::unique_ptr<tokenizers::HfTokenizer> hf_;     // Hugging Face
};

}  // namespace namm
