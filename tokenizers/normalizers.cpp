// Normalizers of tokenizer.json: NFC, NFD, NFKC, NFKD, Lowercase, Strip,
// Replace, Prepend and Sequence.
#include <nlohmann/json.hpp>

#include "tokenizers/component_json.h"
#include "tokenizers/components.h"
#include "tokenizers/unicode_text.h"

namespace namm::tokenizers {
namespace {

class UnicodeForm : public Normalizer {
 public:
  explicit UnicodeForm(NormalForm form) : form_(form) {}
  std::string normalize(std::string text) const override { return unicode_normalize(text, form_); }

 private:
  NormalForm form_;
};

class Lowercase : public Normalizer {
 public:
  std::string normalize(std::string text) const override { return unicode_lowercase(text); }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string text) const override {
    return std::string(trim_whitespace(text, left_, right_));
  }

 private:
  bool left_, right_;
};

class Replace : public Normalizer {
 public:
  Replace(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string normalize(std::string text) const override { return pattern_.replace_all(text, content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  // Hugging Face tokenizers leave an empty text empty; the section loop
  // never hands a normalizer an empty text anyway.
  std::string normalize(std::string text) const override { return text.empty() ? text : prefix_ + text; }

 private:
  std::string prefix_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  std::string normalize(std::string text) const override {
    for (const auto& step : steps_) text = step->normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config, const std::string& field) {
  using namespace json_field;
  if (config.is_null()) return nullptr;
  const std::string type = type_of(config, field);
  if (type == "NFC") return std::make_unique<UnicodeForm>(NormalForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeForm>(NormalForm::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeForm>(NormalForm::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeForm>(NormalForm::kNfkd);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Strip")
    return std::make_unique<Strip>(bool_or(config, "strip_left", false, field), bool_or(config, "strip_right", false, field));
  if (type == "Replace") return std::make_unique<Replace>(pattern_of(config, "pattern", field), string_of(config, "content", field));
  if (type == "Prepend") return std::make_unique<Prepend>(string_of(config, "prepend", field));
  if (type == "Sequence") {
    const auto& list = require(config, "normalizers", field);
    if (!list.is_array()) throw error(field + ".normalizers", "is not an array");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto step = make_normalizer(list[i], field + ".normalizers[" + std::to_string(i) + "]");
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  throw error(field + ".type", "unknown or unsupported normalizer '" + type +
                                   "' (supported: NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend, Sequence)");
}

}  // namespace namm::tokenizers
