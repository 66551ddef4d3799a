// Pre-tokenizers of tokenizer.json: Split (by String or Regex, with the five
// delimiter behaviours), ByteLevel, Metaspace, Whitespace, WhitespaceSplit,
// Digits and Sequence. Semantics follow the Hugging Face tokenizers crate.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

#include "tokenizers/component_json.h"
#include "tokenizers/components.h"
#include "tokenizers/unicode_text.h"

namespace namm::tokenizers {
namespace {

enum class Delimiter { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct Span {
  std::size_t begin, end;
  bool is_match;
};

// The pieces of text around and at the matches, per delimiter behaviour.
// invert: the matches are the pieces to keep and the rest the delimiters.
std::vector<std::string> split_by(const std::string& text, const Pattern& pattern, Delimiter behavior, bool invert) {
  std::vector<Span> spans;
  std::size_t previous = 0;
  for (const auto& [begin, end] : pattern.find_all(text)) {
    if (begin > previous) spans.push_back({previous, begin, invert});
    spans.push_back({begin, end, !invert});
    previous = end;
  }
  if (previous < text.size()) spans.push_back({previous, text.size(), invert});

  std::vector<Span> merged;
  switch (behavior) {
    case Delimiter::kRemoved:
      for (const auto& s : spans)
        if (!s.is_match) merged.push_back(s);
      break;
    case Delimiter::kIsolated:
      merged = spans;
      break;
    case Delimiter::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& s : spans) {
        if (s.is_match && !previous_match && !merged.empty()) {
          merged.back().end = s.end;
        } else {
          merged.push_back(s);
        }
        previous_match = s.is_match;
      }
      break;
    }
    case Delimiter::kMergedWithNext: {
      bool next_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !next_match && !merged.empty()) {
          merged.back().begin = it->begin;
        } else {
          merged.push_back(*it);
        }
        next_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
    case Delimiter::kContiguous: {
      for (const auto& s : spans) {
        if (!merged.empty() && merged.back().is_match && s.is_match) {
          merged.back().end = s.end;
        } else {
          merged.push_back(s);
        }
      }
      break;
    }
  }
  std::vector<std::string> pieces;
  pieces.reserve(merged.size());
  for (const auto& s : merged)
    if (s.end > s.begin) pieces.push_back(text.substr(s.begin, s.end - s.begin));
  return pieces;
}

class Split : public PreTokenizer {
 public:
  Split(Pattern pattern, Delimiter behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  std::vector<std::string> split(std::vector<std::string> pieces, std::size_t) const override {
    std::vector<std::string> out;
    for (const auto& piece : pieces)
      for (auto& p : split_by(piece, pattern_, behavior_, invert_)) out.push_back(std::move(p));
    return out;
  }

 private:
  Pattern pattern_;
  Delimiter behavior_;
  bool invert_;
};

// GPT-2's pattern: contractions, letters, numbers, other symbols, spaces.
const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex), gpt2_(Pattern::regex(kGpt2Pattern)) {}
  std::vector<std::string> split(std::vector<std::string> pieces, std::size_t) const override {
    std::vector<std::string> out;
    for (auto& piece : pieces) {
      if (add_prefix_space_ && (piece.empty() || piece[0] != ' ')) piece.insert(piece.begin(), ' ');
      std::vector<std::string> parts =
          use_regex_ ? split_by(piece, gpt2_, Delimiter::kIsolated, false) : std::vector<std::string>{piece};
      for (const auto& part : parts) {
        std::string mapped;
        mapped.reserve(part.size() * 2);
        for (const char c : part) mapped += byte_to_unicode(static_cast<unsigned char>(c));
        out.push_back(std::move(mapped));
      }
    }
    return out;
  }

 private:
  bool add_prefix_space_, use_regex_;
  Pattern gpt2_;
};

class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  Metaspace(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split),
        replacement_pattern_(Pattern::literal(replacement_)), space_(Pattern::literal(" ")) {}
  std::vector<std::string> split(std::vector<std::string> pieces, std::size_t section) const override {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      std::string text = space_.replace_all(pieces[i], replacement_);
      const bool first = section == 0 && i == 0;
      if ((prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && first)) &&
          text.compare(0, replacement_.size(), replacement_) != 0)
        text = replacement_ + text;
      if (split_) {
        for (auto& p : split_by(text, replacement_pattern_, Delimiter::kMergedWithNext, false)) out.push_back(std::move(p));
      } else {
        out.push_back(std::move(text));
      }
    }
    return out;
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
  Pattern replacement_pattern_, space_;
};

class PatternPieces : public PreTokenizer {  // Whitespace, WhitespaceSplit, Digits
 public:
  PatternPieces(const char* regex, Delimiter behavior, bool invert)
      : pattern_(Pattern::regex(regex)), behavior_(behavior), invert_(invert) {}
  std::vector<std::string> split(std::vector<std::string> pieces, std::size_t) const override {
    std::vector<std::string> out;
    for (const auto& piece : pieces)
      for (auto& p : split_by(piece, pattern_, behavior_, invert_)) out.push_back(std::move(p));
    return out;
  }

 private:
  Pattern pattern_;
  Delimiter behavior_;
  bool invert_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  std::vector<std::string> split(std::vector<std::string> pieces, std::size_t section) const override {
    for (const auto& step : steps_) pieces = step->split(std::move(pieces), section);
    return pieces;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

Delimiter delimiter_of(const nlohmann::json& config, const std::string& field) {
  const std::string name = json_field::string_of(config, "behavior", field);
  if (name == "Removed") return Delimiter::kRemoved;
  if (name == "Isolated") return Delimiter::kIsolated;
  if (name == "MergedWithPrevious") return Delimiter::kMergedWithPrevious;
  if (name == "MergedWithNext") return Delimiter::kMergedWithNext;
  if (name == "Contiguous") return Delimiter::kContiguous;
  throw json_field::error(field + ".behavior", "unknown delimiter behaviour '" + name + "'");
}

}  // namespace

const std::string& byte_to_unicode(unsigned char byte) {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      std::string s;
      utf8_append(s, printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++));
      t[b] = s;
    }
    return t;
  }();
  return table[byte];
}

int unicode_to_byte(char32_t cp) {
  static const std::array<int, 324> table = [] {
    std::array<int, 324> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) {
      std::size_t n;
      t[utf8_decode_at(byte_to_unicode(static_cast<unsigned char>(b)), 0, &n)] = b;
    }
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config, const std::string& field) {
  using namespace json_field;
  if (config.is_null()) return nullptr;
  const std::string type = type_of(config, field);
  if (type == "Split")
    return std::make_unique<Split>(pattern_of(config, "pattern", field), delimiter_of(config, field),
                                   bool_or(config, "invert", false, field));
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(bool_or(config, "add_prefix_space", true, field),
                                       bool_or(config, "use_regex", true, field));
  if (type == "Metaspace") {
    const std::string replacement = string_of(config, "replacement", field);
    if (replacement.empty()) throw error(field + ".replacement", "is empty");
    Metaspace::Prepend prepend = bool_or(config, "add_prefix_space", true, field) ? Metaspace::Prepend::kAlways
                                                                                  : Metaspace::Prepend::kNever;
    if (const auto it = config.find("prepend_scheme"); it != config.end() && !it->is_null()) {
      const std::string scheme = it->is_string() ? it->get<std::string>() : "";
      if (scheme == "always") prepend = Metaspace::Prepend::kAlways;
      else if (scheme == "first") prepend = Metaspace::Prepend::kFirst;
      else if (scheme == "never") prepend = Metaspace::Prepend::kNever;
      else throw error(field + ".prepend_scheme", "is not always, first or never");
    }
    return std::make_unique<Metaspace>(replacement, prepend, bool_or(config, "split", true, field));
  }
  if (type == "Whitespace") return std::make_unique<PatternPieces>(R"(\w+|[^\w\s]+)", Delimiter::kRemoved, true);
  if (type == "WhitespaceSplit") return std::make_unique<PatternPieces>(R"(\s+)", Delimiter::kRemoved, false);
  if (type == "Digits")
    return std::make_unique<PatternPieces>("[0-9]", bool_or(config, "individual_digits", false, field)
                                                        ? Delimiter::kIsolated : Delimiter::kContiguous, false);
  if (type == "Sequence") {
    const auto& list = require(config, "pretokenizers", field);
    if (!list.is_array()) throw error(field + ".pretokenizers", "is not an array");
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto step = make_pre_tokenizer(list[i], field + ".pretokenizers[" + std::to_string(i) + "]");
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  throw error(field + ".type", "unknown or unsupported pre-tokenizer '" + type +
                                   "' (supported: Split, ByteLevel, Metaspace, Whitespace, WhitespaceSplit, Digits, Sequence)");
}

}  // namespace namm::tokenizers
