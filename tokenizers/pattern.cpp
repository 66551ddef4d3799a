#include "tokenizers/pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdexcept>

#include "tokenizers/unicode_text.h"

namespace namm::tokenizers {

struct Pattern::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

Pattern::Pattern(Pattern&&) noexcept = default;
Pattern& Pattern::operator=(Pattern&&) noexcept = default;
Pattern::~Pattern() = default;

Pattern Pattern::literal(std::string text) {
  if (text.empty()) throw std::invalid_argument("empty String pattern");
  Pattern p;
  p.literal_ = std::move(text);
  return p;
}

Pattern Pattern::regex(const std::string& source) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    throw std::invalid_argument("regex does not compile at offset " + std::to_string(offset) + ": " +
                                reinterpret_cast<const char*>(message));
  }
  // The JIT makes the pre-tokenizer regexes several times faster; where it
  // is unavailable pcre2_match interprets the same code.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  Pattern p;
  p.regex_ = std::make_shared<Compiled>();
  p.regex_->code = code;
  return p;
}

Pattern Pattern::from_kind(std::string_view kind, const std::string& value) {
  if (kind == "String") return literal(value);
  if (kind == "Regex") return regex(value);
  throw std::invalid_argument("pattern is neither String nor Regex");
}

std::vector<std::pair<std::size_t, std::size_t>> Pattern::find_all(std::string_view text) const {
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  if (!regex_) {
    std::size_t pos = 0;
    while ((pos = text.find(literal_, pos)) != std::string_view::npos) {
      matches.emplace_back(pos, pos + literal_.size());
      pos += literal_.size();
    }
    return matches;
  }
  // Validate once, then tell PCRE2 not to: its own check scans the whole
  // subject on every call, which would make a long text quadratic.
  if (!utf8_is_valid(text)) throw std::invalid_argument("text is not valid UTF-8");
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(regex_->code, nullptr), &pcre2_match_data_free);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t start = 0;
  while (start <= text.size()) {
    const int rc = pcre2_match(regex_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      throw std::runtime_error(std::string("regex match failed: ") + reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const std::size_t begin = ovector[0], end = ovector[1];
    if (end > begin) {
      matches.emplace_back(begin, end);
      start = end;
    } else {
      if (begin >= text.size()) break;
      start = begin + utf8_char_length(text, begin);
    }
  }
  return matches;
}

std::string Pattern::replace_all(std::string_view text, std::string_view with) const {
  std::string out;
  out.reserve(text.size());
  std::size_t previous = 0;
  for (const auto& [begin, end] : find_all(text)) {
    out.append(text.substr(previous, begin - previous));
    out.append(with);
    previous = end;
  }
  out.append(text.substr(previous));
  return out;
}

}  // namespace namm::tokenizers
