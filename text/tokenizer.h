// A word-level tokenizer over a small fixed vocabulary written in code, for
// the synthetic long-context tasks (text/tasks.h) the language host is
// trained and evolved on.
//
// One token per word, punctuation mark or digit; numbers are spelled digit
// by digit ("412" encodes as "4 1 2"). Letters are lowercased. The special
// tokens sit at fixed ids 0..6 so code can name them as constants.
// Serialisable (to_json / save) so a model checkpoint carries the exact
// vocabulary it was trained with; loading verifies a fingerprint.
//
// Not here: byte-pair or subword schemes, Hugging Face tokenizer files.
// No torch: ids are plain int64 vectors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace namm {

/// The word lists the builtin vocabulary is made of, in vocabulary order.
/// The tasks draw filler sentences and names from these categories.
struct BuiltinVocabulary {
  std::vector<std::string> specials;        ///< <pad> <unk> <bos> <eos> <sep> <q> <a>, ids 0..6.
  std::vector<std::string> digits;          ///< "0".."9".
  std::vector<std::string> punctuation;     ///< ". , : ; ? ! = ( ) - ' \" #".
  std::vector<std::string> function_words;  ///< words the task templates use (key, value, secret, ...).
  std::vector<std::string> determiners;     ///< filler sentence parts ...
  std::vector<std::string> adjectives;
  std::vector<std::string> nouns;
  std::vector<std::string> verbs;
  std::vector<std::string> prepositions;
  std::vector<std::string> names;           ///< made-up names used as keys, variables, needles (384).
};

/// The builtin word lists (built once, thread-safe).
const BuiltinVocabulary& builtin_vocabulary();

/// What encode does with a word that is not in the vocabulary.
enum class UnknownWord {
  kThrow,     ///< throw std::invalid_argument naming the word (the default).
  kMapToUnk,  ///< emit Tokenizer::kUnk.
};

/// Word-level tokenizer: text <-> ids [T] over a fixed vocabulary of V tokens.
class Tokenizer {
 public:
  static constexpr int64_t kPad = 0;  ///< "<pad>"
  static constexpr int64_t kUnk = 1;  ///< "<unk>"
  static constexpr int64_t kBos = 2;  ///< "<bos>": first token of every prompt.
  static constexpr int64_t kEos = 3;  ///< "<eos>": ends an answer.
  static constexpr int64_t kSep = 4;  ///< "<sep>"
  static constexpr int64_t kQ = 5;    ///< "<q>": starts the question.
  static constexpr int64_t kA = 6;    ///< "<a>": last prompt token; the answer follows.
  static constexpr int64_t kNumSpecial = 7;

  /// The builtin vocabulary (builtin_vocabulary() concatenated in field order).
  static Tokenizer builtin();

  /// A tokenizer over these tokens (id = position). Throws std::invalid_argument
  /// on a duplicate, an empty token, a token with whitespace or upper case,
  /// specials not at ids 0..6, or a missing digit.
  explicit Tokenizer(std::vector<std::string> tokens);

  /// V, the number of tokens.
  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }

  /// text -> ids [T]. Splits on whitespace; each punctuation mark and each
  /// digit is its own token; "<q>"-style specials are recognised as written;
  /// letters are lowercased. Unknown words throw std::invalid_argument
  /// ("unknown word 'xyz' at character 12") or map to kUnk, per `unknown`.
  std::vector<int64_t> encode(std::string_view text, UnknownWord unknown = UnknownWord::kThrow) const;

  /// ids [T] -> tokens joined by single spaces; skip_special drops ids < kNumSpecial.
  /// Throws std::out_of_range for an id outside [0, V).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const;

  /// The id of one token; throws std::invalid_argument if it is not in the vocabulary.
  int64_t id(std::string_view token) const;
  /// Whether a token is in the vocabulary.
  bool contains(std::string_view token) const;
  /// The text of one id; throws std::out_of_range outside [0, V).
  const std::string& token(int64_t id) const;
  /// All tokens, id order.
  const std::vector<std::string>& tokens() const { return tokens_; }

  /// 16 hex digits: FNV-1a 64 over the tokens in id order (identifies a vocabulary).
  std::string fingerprint() const;

  /// {"format": "namm-word-tokenizer", "version": 1, "vocab_size": V,
  ///  "fingerprint": "...", "tokens": [...]}.
  std::string to_json() const;
  /// Parses to_json's output; throws std::invalid_argument if the format,
  /// version, vocab_size or fingerprint do not match the tokens, or the
  /// tokens break the constructor's rules.
  static Tokenizer from_json(std::string_view json);

  /// Writes to_json() atomically to path.
  void save(const std::string& path) const;
  /// Reads a file written by save; errors name the path.
  static Tokenizer load(const std::string& path);

  /// Throws std::invalid_argument naming the first differing id if `other`
  /// is not the same vocabulary (use when loading a model trained with it).
  void check_same_vocabulary(const Tokenizer& other) const;

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> index_;
};

/// The builtin tokenizer, built once (thread-safe); the tasks emit ids in it.
const Tokenizer& builtin_tokenizer();

}  // namespace namm
