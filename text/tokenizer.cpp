#include "text/tokenizer.h"

#include "core/atomic_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <stdexcept>
#include <unordered_set>

namespace namm {
namespace {

using json = nlohmann::json;

constexpr const char* kFormat = "namm-word-tokenizer";
constexpr int kVersion = 1;

// made-up names: every onset with every coda gives 24 x 16 = 384 single-token
// names that cannot be confused with the English filler words.
std::vector<std::string> make_names() {
  const char* onsets[] = {"ba", "ce", "do", "fe", "ga", "hi", "jo", "ka", "lu", "mi", "no", "pe",
                          "qui", "ri", "sa", "tu", "ve", "wi", "xa", "yo", "zu", "bre", "cla", "dri"};
  const char* codas[] = {"ran", "lix", "mon", "dor", "vel", "tis", "rek", "nar",
                         "sul", "bin", "kor", "pha", "len", "dus", "rim", "gat"};
  std::vector<std::string> names;
  for (const char* onset : onsets)
    for (const char* coda : codas) names.push_back(std::string(onset) + coda);
  return names;
}

BuiltinVocabulary make_builtin_vocabulary() {
  BuiltinVocabulary v;
  v.specials = {"<pad>", "<unk>", "<bos>", "<eos>", "<sep>", "<q>", "<a>"};
  for (char c = '0'; c <= '9'; ++c) v.digits.push_back(std::string(1, c));
  v.punctuation = {".", ",", ":", ";", "?", "!", "=", "(", ")", "-", "'", "\"", "#"};
  v.function_words = {"remember", "each", "key", "keys", "and", "its", "value", "of", "find",
                      "secret", "code", "pin", "number", "in", "text", "what", "is", "which",
                      "paragraph", "has", "an", "id", "follow", "variables", "var", "to",
                      "how", "many", "count", "names", "list", "may", "change", "use", "last",
                      "times", "word", "question", "answer", "set", "was", "are", "it", "name"};
  v.determiners = {"the", "a", "this", "that", "every", "some", "one", "no",
                   "my", "our", "his", "her", "their", "your", "another"};
  v.adjectives = {"old", "new", "quiet", "small", "large", "bright", "dark", "warm", "cold",
                  "green", "blue", "red", "yellow", "white", "black", "gray", "soft", "hard",
                  "slow", "fast", "tall", "short", "long", "wide", "narrow", "deep", "calm",
                  "busy", "empty", "full", "heavy", "light", "young", "ancient", "gentle",
                  "wild", "clean", "dusty", "silent", "loud", "rich", "poor", "sharp", "round",
                  "flat", "sweet", "bitter", "fresh", "pale", "golden", "wooden", "happy",
                  "sad", "brave", "tired", "early", "late", "strange", "lonely", "proud"};
  v.nouns = {"river", "town", "house", "garden", "tree", "forest", "road", "bridge", "mountain",
             "valley", "lake", "sea", "field", "city", "village", "market", "school", "window",
             "door", "table", "chair", "book", "letter", "lamp", "cup", "boat", "ship", "train",
             "cart", "horse", "dog", "cat", "bird", "farmer", "teacher", "child", "baker",
             "sailor", "doctor", "king", "queen", "soldier", "painter", "friend", "stranger",
             "morning", "evening", "night", "winter", "summer", "spring", "autumn", "rain",
             "snow", "wind", "sun", "moon", "star", "cloud", "stone", "hill", "path", "wall",
             "roof", "tower", "church", "harbor", "island", "shore", "song", "story", "bread",
             "coin", "basket", "candle", "clock", "mirror", "rope", "wheel", "fire", "fish"};
  v.verbs = {"walked", "ran", "sat", "stood", "slept", "waited", "sang", "looked", "moved",
             "rested", "danced", "worked", "played", "stayed", "smiled", "laughed", "turned",
             "fell", "rose", "grew", "shone", "glowed", "drifted", "wandered", "climbed",
             "crossed", "passed", "lingered", "listened", "watched", "arrived", "returned",
             "paused", "jumped", "floated", "shivered", "whispered", "shouted", "traveled",
             "hurried", "stopped", "started", "opened", "closed", "burned", "dreamed", "sighed",
             "trembled", "leaned", "hid"};
  v.prepositions = {"near", "under", "over", "behind", "beside", "beyond", "across", "along",
                    "past", "inside", "outside", "above", "below", "around", "through",
                    "toward", "by", "with", "from", "at", "on", "into"};
  v.names = make_names();
  return v;
}

bool is_split_punct(char c) {
  // '<' and '>' open and close specials; every other ASCII mark is its own token.
  return std::ispunct(static_cast<unsigned char>(c)) && c != '<' && c != '>';
}

uint64_t fnv1a(uint64_t hash, std::string_view bytes) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace

const BuiltinVocabulary& builtin_vocabulary() {
  static const BuiltinVocabulary vocabulary = make_builtin_vocabulary();
  return vocabulary;
}

Tokenizer Tokenizer::builtin() {
  const BuiltinVocabulary& v = builtin_vocabulary();
  std::vector<std::string> tokens;
  for (const auto* list : {&v.specials, &v.digits, &v.punctuation, &v.function_words, &v.determiners,
                           &v.adjectives, &v.nouns, &v.verbs, &v.prepositions, &v.names})
    tokens.insert(tokens.end(), list->begin(), list->end());
  return Tokenizer(std::move(tokens));
}

const Tokenizer& builtin_tokenizer() {
  static const Tokenizer tokenizer = Tokenizer::builtin();
  return tokenizer;
}

Tokenizer::Tokenizer(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {
  const std::vector<std::string>& specials = builtin_vocabulary().specials;
  if (tokens_.size() < specials.size())
    throw std::invalid_argument("Tokenizer: " + std::to_string(tokens_.size()) +
                                " tokens, need at least the " + std::to_string(specials.size()) +
                                " specials");
  for (size_t i = 0; i < specials.size(); ++i)
    if (tokens_[i] != specials[i])
      throw std::invalid_argument("Tokenizer: id " + std::to_string(i) + " is '" + tokens_[i] +
                                  "', expected special '" + specials[i] + "'");
  index_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const std::string& t = tokens_[i];
    if (t.empty()) throw std::invalid_argument("Tokenizer: empty token at id " + std::to_string(i));
    for (char c : t) {
      if (std::isspace(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c)))
        throw std::invalid_argument("Tokenizer: token '" + t + "' at id " + std::to_string(i) +
                                    " has whitespace or upper case");
    }
    auto [it, inserted] = index_.emplace(t, static_cast<int64_t>(i));
    if (!inserted)
      throw std::invalid_argument("Tokenizer: duplicate token '" + t + "' at ids " +
                                  std::to_string(it->second) + " and " + std::to_string(i));
  }
  for (char c = '0'; c <= '9'; ++c)
    if (!index_.count(std::string(1, c)))
      throw std::invalid_argument(std::string("Tokenizer: digit '") + c + "' missing");
}

std::vector<int64_t> Tokenizer::encode(std::string_view text, UnknownWord unknown) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 4 + 1);
  std::string word;
  auto emit = [&](const std::string& piece, size_t at) {
    auto it = index_.find(piece);
    if (it != index_.end()) {
      ids.push_back(it->second);
    } else if (unknown == UnknownWord::kMapToUnk) {
      ids.push_back(kUnk);
    } else {
      throw std::invalid_argument("Tokenizer::encode: unknown word '" + piece + "' at character " +
                                  std::to_string(at) + " (vocabulary of " +
                                  std::to_string(tokens_.size()) + " tokens)");
    }
  };
  size_t word_start = 0;
  auto flush = [&]() {
    if (!word.empty()) emit(word, word_start);
    word.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const unsigned char u = static_cast<unsigned char>(c);
    if (std::isspace(u)) {
      flush();
    } else if (c == '<') {
      // a special as written ("<q>"); otherwise '<' is just part of a word
      const size_t close = text.find('>', i);
      if (close != std::string_view::npos && close - i <= 16) {
        std::string special(text.substr(i, close - i + 1));
        for (char& s : special) s = static_cast<char>(std::tolower(static_cast<unsigned char>(s)));
        if (index_.count(special)) {
          flush();
          emit(special, i);
          i = close;
          continue;
        }
      }
      if (word.empty()) word_start = i;
      word.push_back(c);
    } else if (std::isdigit(u) || is_split_punct(c)) {
      flush();
      emit(std::string(1, c), i);
    } else {
      if (word.empty()) word_start = i;
      word.push_back(static_cast<char>(std::tolower(u)));
    }
  }
  flush();
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string text;
  text.reserve(ids.size() * 6);
  for (int64_t id : ids) {
    if (skip_special && id >= 0 && id < kNumSpecial) continue;
    if (!text.empty()) text.push_back(' ');
    text += token(id);
  }
  return text;
}

int64_t Tokenizer::id(std::string_view token) const {
  auto it = index_.find(std::string(token));
  if (it == index_.end())
    throw std::invalid_argument("Tokenizer::id: '" + std::string(token) + "' is not in the vocabulary");
  return it->second;
}

bool Tokenizer::contains(std::string_view token) const { return index_.count(std::string(token)) > 0; }

const std::string& Tokenizer::token(int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw std::out_of_range("Tokenizer::token: id " + std::to_string(id) + " outside [0, " +
                            std::to_string(vocab_size()) + ")");
  return tokens_[static_cast<size_t>(id)];
}

std::string Tokenizer::fingerprint() const {
  uint64_t hash = 14695981039346656037ull;
  for (const std::string& t : tokens_) hash = fnv1a(fnv1a(hash, t), "\n");
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(hash));
  return buffer;
}

std::string Tokenizer::to_json() const {
  json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["vocab_size"] = vocab_size();
  j["fingerprint"] = fingerprint();
  j["tokens"] = tokens_;
  return j.dump(1);
}

Tokenizer Tokenizer::from_json(std::string_view text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("Tokenizer::from_json: not JSON: ") + e.what());
  }
  try {
    const std::string format = j.at("format").get<std::string>();
    if (format != kFormat)
      throw std::invalid_argument("Tokenizer::from_json: format '" + format + "', expected '" +
                                  kFormat + "'");
    const int version = j.at("version").get<int>();
    if (version != kVersion)
      throw std::invalid_argument("Tokenizer::from_json: version " + std::to_string(version) +
                                  ", expected " + std::to_string(kVersion));
    Tokenizer tokenizer(j.at("tokens").get<std::vector<std::string>>());
    const int64_t size = j.at("vocab_size").get<int64_t>();
    if (size != tokenizer.vocab_size())
      throw std::invalid_argument("Tokenizer::from_json: vocab_size " + std::to_string(size) +
                                  " but " + std::to_string(tokenizer.vocab_size()) + " tokens");
    const std::string stored = j.at("fingerprint").get<std::string>();
    if (stored != tokenizer.fingerprint())
      throw std::invalid_argument("Tokenizer::from_json: fingerprint " + stored +
                                  " does not match the tokens (" + tokenizer.fingerprint() + ")");
    return tokenizer;
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("Tokenizer::from_json: ") + e.what());
  }
}

void Tokenizer::save(const std::string& path) const { write_file_atomically(path, to_json()); }

Tokenizer Tokenizer::load(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return from_json(text);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
}

void Tokenizer::check_same_vocabulary(const Tokenizer& other) const {
  const int64_t n = std::min(vocab_size(), other.vocab_size());
  for (int64_t i = 0; i < n; ++i)
    if (tokens_[i] != other.tokens_[i])
      throw std::invalid_argument("Tokenizer: vocabularies differ at id " + std::to_string(i) +
                                  ": '" + tokens_[i] + "' vs '" + other.tokens_[i] + "'");
  if (vocab_size() != other.vocab_size())
    throw std::invalid_argument("Tokenizer: vocabularies differ in size: " +
                                std::to_string(vocab_size()) + " vs " +
                                std::to_string(other.vocab_size()));
}

}  // namespace namm
