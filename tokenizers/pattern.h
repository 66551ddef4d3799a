// A tokenizer.json pattern: {"String": "..."} (a literal) or {"Regex": "..."}
// (PCRE2 in UTF + UCP mode, so \p{L}, \p{N} and \s are Unicode classes, as
// in the Oniguruma regexes the Hugging Face tokenizers run). It finds every
// non-overlapping match left to right; Split, Replace and the decoders
// share it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace namm::tokenizers {

class Pattern {
 public:
  /// A literal pattern (matched byte for byte) or a regex. Throws
  /// std::invalid_argument naming PCRE2's complaint and its offset when the
  /// regex does not compile.
  static Pattern literal(std::string text);
  static Pattern regex(const std::string& source);
  /// Parses {"String": s} / {"Regex": r} given as (kind, value).
  static Pattern from_kind(std::string_view kind, const std::string& value);

  /// [begin, end) byte ranges of the matches in text, left to right and
  /// non-overlapping; an empty match is skipped and the search goes on one
  /// code point later.
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view text) const;

  /// text with every match replaced by `with`.
  std::string replace_all(std::string_view text, std::string_view with) const;

  Pattern(Pattern&&) noexcept;
  Pattern& operator=(Pattern&&) noexcept;
  ~Pattern();

 private:
  struct Compiled;
  Pattern() = default;
  std::string literal_;
  std::shared_ptr<Compiled> regex_;  // null for a literal pattern
};

}  // namespace namm::tokenizers
