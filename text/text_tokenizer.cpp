// text_tokenizer: see text_tokenizer.h
#include "text/text_tokenizer.h"

#include "text/tokenizer.h"
#include "tokenizers/hf_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace namm {

TextTokenizer::TextTokenizer(TextTokenizer&&) noexcept = default;
TextTokenizer& TextTokenizer::operator=(TextTokenizer&&) noexcept = default;
TextTokenizer::~TextTokenizer() = default;

TextTokenizer TextTokenizer::load(const std::string& dir_or_file) {
  std::filesystem::path file = dir_or_file;
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) file /= "tokenizer.json";
  if (!std::filesystem::exists(file, ec)) throw std::invalid_argument(file.string() + ": no such file (the model's tokenizer)");
  // the builtin vocabulary's file says so near its start
  std::ifstream in(file, std::ios::binary);
  std::string head(4096, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<std::size_t>(in.gcount()));
  TextTokenizer out;
  out.file_ = file.string();
  if (head.find("\"namm-word-tokenizer\"") != std::string::npos) {
    out.words_ = std::make_unique<Tokenizer>(Tokenizer::load(file.string()));
  } else {
    out.hf_ = std::make_unique<tokenizers::HfTokenizer>(tokenizers::HfTokenizer::load(file));
  }
  return out;
}

std::vector<int64_t> TextTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (words_) {
    std::vector<int64_t> ids;
    if (add_special_tokens) ids.push_back(Tokenizer::kBos);
    for (const int64_t id : words_->encode(text)) ids.push_back(id);
    return ids;
  }
  const std::vector<int32_t> ids = hf_->encode(text, add_special_tokens);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

std::string TextTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  if (words_) return words_->decode(ids, skip_special_tokens);
  std::vector<int32_t> narrow;
  narrow.reserve(ids.size());
  for (const int64_t id : ids) {
    if (id < 0 || id >= hf_->vocab_size())
      throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary of " + file_);
    narrow.push_back(static_cast<int32_t>(id));
  }
  return hf_->decode(narrow, skip_special_tokens);
}

int64_t TextTokenizer::vocab_size() const { return words_ ? words_->vocab_size() : hf_->vocab_size(); }

std::vector<int64_t> TextTokenizer::end_ids() const {
  if (words_) return {Tokenizer::kEos};
  if (const auto eos = hf_->eos_id()) return {*eos};
  return {};
}

std::string TextTokenizer::describe() const {
  return (words_ ? "builtin word vocabulary, " : "Hugging Face tokenizer.json (BPE), ") + std::to_string(vocab_size()) +
         " tokens";
}

void TextTokenizer::check_fits(int64_t model_vocab_size, const std::string& model_config_path) const {
  if (vocab_size() > model_vocab_size) {
    throw std::invalid_argument(file_ + ": " + std::to_string(vocab_size()) + " tokens, but " + model_config_path +
                                " has vocab_size " + std::to_string(model_vocab_size) +
                                " (the tokenizer and the model do not belong together)");
  }
}

}  // namespace namm
