#include "text/tasks.h"

#include "text/tokenizer.h"

#include "core/seed_mix.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <utility>

namespace namm {
namespace {

// ---------------------------------------------------------------------------
// randomness: std::mt19937_64's output sequence is fixed by the standard; the
// draws below are written out so no implementation-defined distribution is used.

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  /// Uniform in [0, n), n >= 1; rejection keeps it unbiased.
  uint64_t below(uint64_t n) {
    // 2^64 mod n: accepting x >= threshold leaves a multiple of n outcomes
    const uint64_t threshold = (0 - n) % n;
    uint64_t x = engine_();
    while (x < threshold) x = engine_();
    return x % n;
  }
  /// Uniform in [lo, hi].
  int64_t range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
  }
  template <class T>
  const T& pick(const std::vector<T>& values) {
    return values[below(values.size())];
  }
  /// Fisher-Yates.
  template <class T>
  void shuffle(std::vector<T>& values) {
    for (size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[below(i)]);
  }
  /// k distinct values of [0, n) in random order (partial Fisher-Yates).
  std::vector<int64_t> distinct(int64_t n, int64_t k) {
    std::vector<int64_t> pool(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pool[i] = i;
    for (int64_t i = 0; i < k; ++i) std::swap(pool[i], pool[i + below(n - i)]);
    pool.resize(static_cast<size_t>(k));
    return pool;
  }

 private:
  std::mt19937_64 engine_;
};

// ---------------------------------------------------------------------------
// the builtin vocabulary as id lists

struct Lexicon {
  std::vector<int64_t> digits, determiners, adjectives, nouns, verbs, prepositions, names;
  std::vector<int64_t> common;  // every filler word, for paragraph bodies
  int64_t dot, colon, qmark, equals, comma;

  int64_t id(const char* word) const { return builtin_tokenizer().id(word); }
  std::vector<int64_t> words(std::initializer_list<const char*> list) const {
    std::vector<int64_t> ids;
    for (const char* w : list) ids.push_back(id(w));
    return ids;
  }
};

std::vector<int64_t> ids_of(const std::vector<std::string>& words) {
  std::vector<int64_t> ids;
  for (const std::string& w : words) ids.push_back(builtin_tokenizer().id(w));
  return ids;
}

const Lexicon& lexicon() {
  static const Lexicon lex = [] {
    const BuiltinVocabulary& v = builtin_vocabulary();
    Lexicon l;
    l.digits = ids_of(v.digits);
    l.determiners = ids_of(v.determiners);
    l.adjectives = ids_of(v.adjectives);
    l.nouns = ids_of(v.nouns);
    l.verbs = ids_of(v.verbs);
    l.prepositions = ids_of(v.prepositions);
    l.names = ids_of(v.names);
    for (const auto* list : {&l.determiners, &l.adjectives, &l.nouns, &l.verbs, &l.prepositions})
      l.common.insert(l.common.end(), list->begin(), list->end());
    l.dot = l.id(".");
    l.colon = l.id(":");
    l.qmark = l.id("?");
    l.equals = l.id("=");
    l.comma = l.id(",");
    return l;
  }();
  return lex;
}

// ---------------------------------------------------------------------------
// drafts: a task generator emits header, question and record items; the
// common code pads with filler sentences, shuffles and assembles.

enum class Role { kFiller, kEvidence, kDistractor };

struct Item {
  std::vector<int64_t> tokens;
  Role role = Role::kFiller;
  bool lookalike = false;
  int group = -1;  // task-specific (chain, key) for after-layout rewrites
  // items sharing a repeat_group state the same thing (verbatim or nearly);
  // every one after the first in prompt order is a redundant span
  int repeat_group = -1;
};

struct Draft {
  std::vector<int64_t> header;    // instruction, after <bos>
  std::vector<int64_t> question;  // <q> ... <a>
  std::vector<Item> items;        // records; filler is added later
  std::vector<int64_t> answer;
  int64_t body_tokens = 0;        // what header and question leave of the context
  // rewrites order-dependent records (chains, superseded values) once shuffled
  std::function<void(Draft&)> after_layout;
  // the body's filler is one boilerplate block repeated (redundant tasks)
  // instead of fresh sentences
  bool boilerplate_filler = false;
  int next_repeat_group = 0;

  int64_t record_tokens() const {
    int64_t n = 0;
    for (const Item& item : items) n += static_cast<int64_t>(item.tokens.size());
    return n;
  }
  /// Adds a record if it fits within budget tokens of records.
  bool try_add(Item item, int64_t budget) {
    if (record_tokens() + static_cast<int64_t>(item.tokens.size()) > budget) return false;
    items.push_back(std::move(item));
    return true;
  }
};

std::vector<int64_t> random_digits(Rng& rng, int64_t n) {
  std::vector<int64_t> d;
  for (int64_t i = 0; i < n; ++i) d.push_back(rng.pick(lexicon().digits));
  return d;
}

std::vector<int64_t> concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// part-of-speech patterns of filler sentences (D det, J adj, N noun, V verb, P prep)
const char* const kSentencePatterns[] = {"DNV", "DJNV", "DNVPDN", "DJNVPDN", "DJNVPDJN",
                                         "DNVPDJN", "DJJNVPDN", "DNVPDNPDN"};

int64_t word_of(Rng& rng, char part) {
  const Lexicon& l = lexicon();
  switch (part) {
    case 'D': return rng.pick(l.determiners);
    case 'J': return rng.pick(l.adjectives);
    case 'N': return rng.pick(l.nouns);
    case 'V': return rng.pick(l.verbs);
    default: return rng.pick(l.prepositions);
  }
}

/// A filler sentence of exactly n >= 1 tokens (the last is ".").
std::vector<int64_t> filler_sentence(Rng& rng, int64_t n) {
  std::vector<int64_t> s;
  const int64_t words = n - 1;
  // one pattern per word count 0..9 (append_filler never asks for more)
  static const char* const kExact[] = {"", "N", "NV", "DNV", "DJNV", "DJJNV",
                                       "DNVPDN", "DJNVPDN", "DJNVPDJN", "DNVPDNPDN"};
  std::string pattern;
  if (words < 10) {
    pattern = kExact[words];
  } else {
    const std::string cycle = "DJNVP";
    for (int64_t i = 0; i < words; ++i) pattern.push_back(cycle[i % cycle.size()]);
  }
  for (char part : pattern) s.push_back(word_of(rng, part));
  s.push_back(lexicon().dot);
  return s;
}

/// Appends filler sentences totalling exactly n tokens.
void append_filler(std::vector<Item>& items, Rng& rng, int64_t n) {
  constexpr int64_t kPatterns = sizeof(kSentencePatterns) / sizeof(kSentencePatterns[0]);
  while (n > 14) {
    const int64_t len =
        static_cast<int64_t>(std::string(kSentencePatterns[rng.below(kPatterns)]).size()) + 1;
    items.push_back({filler_sentence(rng, len)});
    n -= len;
  }
  if (n > 10) {
    items.push_back({filler_sentence(rng, n / 2)});
    n -= n / 2;
  }
  if (n > 0) items.push_back({filler_sentence(rng, n)});
}

// Repeated boilerplate: one block of filler sentences (24-48 tokens) drawn
// once per prompt and restated until the body is full, as a license header,
// a log template or a static run of video frames repeats. One copy in four is
// a near-duplicate: one word swapped for another of the same part of speech
// (never the closing "."). What the block cannot fill is fresh filler.
void append_boilerplate(Draft& d, Rng& rng, int64_t n) {
  if (n < 24) {
    append_filler(d.items, rng, n);
    return;
  }
  std::vector<Item> sentences;
  append_filler(sentences, rng, rng.range(24, 48));
  std::vector<int64_t> block;
  std::vector<char> parts;  // the part of speech of each block token ('.' for the dot)
  const Lexicon& l = lexicon();
  for (const Item& s : sentences) {
    for (int64_t id : s.tokens) {
      block.push_back(id);
      char part = '.';
      for (auto [list, p] : {std::pair{&l.determiners, 'D'}, {&l.adjectives, 'J'}, {&l.nouns, 'N'},
                             {&l.verbs, 'V'}, {&l.prepositions, 'P'}})
        if (std::find(list->begin(), list->end(), id) != list->end()) part = p;
      parts.push_back(part);
    }
  }
  const int group = d.next_repeat_group++;
  const int64_t len = static_cast<int64_t>(block.size());
  while (n >= len) {
    Item copy{block};
    copy.repeat_group = group;
    if (rng.below(4) == 0) {
      const int64_t at = static_cast<int64_t>(rng.below(static_cast<uint64_t>(len)));
      if (parts[at] != '.') copy.tokens[at] = word_of(rng, parts[at]);
    }
    d.items.push_back(std::move(copy));
    n -= len;
  }
  append_filler(d.items, rng, n);
}

int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return std::max(lo, std::min(hi, v)); }

void require_body(const std::string& task, const Draft& d, int64_t needed, int64_t context) {
  if (d.body_tokens < needed)
    throw std::invalid_argument("make_example(" + task + "): context_tokens " +
                                std::to_string(context) + " leaves " + std::to_string(d.body_tokens) +
                                " body tokens, need " + std::to_string(needed));
}

void set_body(Draft& d, int64_t context_tokens) {
  d.body_tokens = context_tokens - 1 - static_cast<int64_t>(d.header.size()) -
                  static_cast<int64_t>(d.question.size());
}

// ---------------------------------------------------------------------------
// key-value tasks: "k1 k2 : d d d ."

using Key = std::pair<int64_t, int64_t>;
constexpr int64_t kValueDigits = 3;
// Keys of one prompt never share a word, so at most 383 / 2 keys exist; the
// cap keeps fresh draws quick, and longer contexts get more filler instead.
// Why no look-alike keys (two keys sharing a word): a small host trained
// here learned to match one word of the key and then stayed at about 50% on
// every question whose key had a look-alike for 1,000 steps (commit 3988c6e,
// models/lm/README.md); the needle task keeps the look-alikes.
constexpr int64_t kMaxKvRecords = 160;

Key random_key(Rng& rng) {
  const std::vector<int64_t> two = rng.distinct(static_cast<int64_t>(lexicon().names.size()), 2);
  return {lexicon().names[two[0]], lexicon().names[two[1]]};
}

/// A key neither of whose words any earlier key of the prompt used; records its words.
Key fresh_key(Rng& rng, std::set<int64_t>& used_words) {
  for (;;) {
    const Key k = random_key(rng);
    if (used_words.count(k.first) || used_words.count(k.second)) continue;
    used_words.insert(k.first);
    used_words.insert(k.second);
    return k;
  }
}

std::vector<int64_t> kv_record(const Key& k, const std::vector<int64_t>& value) {
  const Lexicon& l = lexicon();
  return concat({{k.first, k.second, l.colon}, value, {l.dot}});
}

/// kv_retrieval (n_targets 1) and kv_multi (n_targets 2).
Draft make_kv(Rng& rng, int64_t context, int n_targets, const std::string& task) {
  const Lexicon& l = lexicon();
  Draft d;
  d.header = l.words({"remember", "each", "key", "and", "its", "value", "."});
  std::set<int64_t> used;
  std::vector<Key> targets;
  for (int i = 0; i < n_targets; ++i) targets.push_back(fresh_key(rng, used));
  d.question = {Tokenizer::kQ, l.id("value"), l.id("of"), targets[0].first, targets[0].second};
  for (int i = 1; i < n_targets; ++i) {
    d.question.push_back(l.id("and"));
    d.question.push_back(targets[i].first);
    d.question.push_back(targets[i].second);
  }
  d.question.push_back(l.qmark);
  d.question.push_back(Tokenizer::kA);
  set_body(d, context);
  const int64_t record_len = 3 + kValueDigits + 1;
  require_body(task, d, n_targets * record_len + 8, context);

  for (const Key& t : targets) {
    std::vector<int64_t> value = random_digits(rng, kValueDigits);
    d.answer.insert(d.answer.end(), value.begin(), value.end());
    d.items.push_back({kv_record(t, value), Role::kEvidence});
  }
  const int64_t budget = std::max<int64_t>(d.record_tokens() + record_len,
                                           std::min(d.body_tokens / 2, kMaxKvRecords * record_len));
  for (;;) {
    Item item{kv_record(fresh_key(rng, used), random_digits(rng, kValueDigits)), Role::kDistractor};
    if (!d.try_add(std::move(item), budget)) break;
  }
  return d;
}

/// kv_update: keys reassigned 1-4 times; the question asks the latest value.
Draft make_kv_update(Rng& rng, int64_t context) {
  const Lexicon& l = lexicon();
  Draft d;
  d.header = l.words({"keys", "may", "change", ",", "use", "the", "last", "value", "."});
  std::set<int64_t> used;
  const Key target = fresh_key(rng, used);
  d.question = {Tokenizer::kQ, l.id("last"), l.id("value"), l.id("of"), target.first, target.second,
                l.qmark, Tokenizer::kA};
  set_body(d, context);
  const int64_t record_len = 3 + kValueDigits + 1;
  const int64_t updates = rng.range(2, 4);
  require_body("kv_update", d, updates * record_len + 8, context);
  const int64_t budget = std::max<int64_t>(updates * record_len,
                                           std::min(d.body_tokens * 2 / 5, kMaxKvRecords * record_len));
  // one group per key; values of one key are pairwise distinct, so an old
  // value is always a wrong answer
  auto add_key = [&](const Key& key, int64_t count, int group) {
    std::set<std::vector<int64_t>> values;
    while (static_cast<int64_t>(values.size()) < count) values.insert(random_digits(rng, kValueDigits));
    std::vector<std::vector<int64_t>> shuffled(values.begin(), values.end());
    rng.shuffle(shuffled);
    for (const auto& v : shuffled) {
      // after_layout marks the asked key's superseded values as look-alikes
      Item item{kv_record(key, v), Role::kDistractor, false, group};
      if (!d.try_add(std::move(item), budget)) return false;
    }
    return true;
  };
  add_key(target, updates, 0);
  for (int group = 1;; ++group) {
    if (!add_key(fresh_key(rng, used), rng.range(1, 3), group)) break;
  }
  d.after_layout = [](Draft& draft) {
    Item* last = nullptr;
    for (Item& item : draft.items) {
      if (item.group != 0) continue;
      item.lookalike = true;  // superseded values of the asked key
      last = &item;
    }
    last->role = Role::kEvidence;
    last->lookalike = false;
    draft.answer.assign(last->tokens.begin() + 3, last->tokens.begin() + 3 + kValueDigits);
  };
  return d;
}

// ---------------------------------------------------------------------------
// needle: "the secret of NAME is d d d d ."

Draft make_needle(Rng& rng, int64_t context) {
  const Lexicon& l = lexicon();
  constexpr int64_t kNeedleDigits = 4;
  Draft d;
  d.header = l.words({"find", "the", "secret", "of", "the", "name", "."});
  const std::vector<int64_t> attributes = l.words({"secret", "code", "pin", "number"});
  const int64_t target = rng.pick(l.names);
  d.question = {Tokenizer::kQ, l.id("what"), l.id("is"), l.id("the"), attributes[0], l.id("of"),
                target, l.qmark, Tokenizer::kA};
  set_body(d, context);
  auto statement = [&](int64_t attribute, int64_t name, const std::vector<int64_t>& value) {
    return concat({{l.id("the"), attribute, l.id("of"), name, l.id("is")}, value, {l.dot}});
  };
  const int64_t statement_len = 5 + kNeedleDigits + 1;
  require_body("needle", d, statement_len + 8, context);
  d.answer = random_digits(rng, kNeedleDigits);
  d.items.push_back({statement(attributes[0], target, d.answer), Role::kEvidence});

  // look-alikes: the same name with another attribute, or the same attribute
  // with another name; each (attribute, name) pair appears once
  std::set<std::pair<int64_t, int64_t>> used = {{attributes[0], target}};
  const int64_t n_look = clamp64(d.body_tokens / 150, 1, 64);
  const int64_t budget = d.body_tokens / 4;
  for (int64_t i = 0; i < n_look; ++i) {
    int64_t attribute = attributes[0], name = target;
    while (used.count({attribute, name})) {
      if (rng.below(4) == 0) {
        attribute = rng.pick(attributes);
        name = target;
      } else {
        attribute = rng.below(2) == 0 ? attributes[0] : rng.pick(attributes);
        name = rng.pick(l.names);
      }
    }
    used.insert({attribute, name});
    Item item{statement(attribute, name, random_digits(rng, kNeedleDigits)), Role::kDistractor, true};
    if (!d.try_add(std::move(item), budget)) break;
  }
  return d;
}

// ---------------------------------------------------------------------------
// passage_retrieval: "words with 4 keywords paragraph d d d ."
//
// The id closes its paragraph, as a citation would, so the id's digits come
// after the words that identify it: a causal host can gather the keywords into
// the digits' positions and copy the best-matching id, as it copies a kv value
// after its key. With the id first (commits 5503d3d to 7f9d4d8) the id had to be read back
// from the keywords' positions, mixed over every paragraph sharing a keyword,
// and the two-layer host never got past picking a paragraph at random.

Draft make_passage(Rng& rng, int64_t context) {
  const Lexicon& l = lexicon();
  constexpr int64_t kKeywords = 4;
  Draft d;
  d.header = l.words({"each", "paragraph", "has", "an", "id", "."});
  const int64_t n_names = static_cast<int64_t>(l.names.size());
  std::vector<int64_t> target_keys;
  for (int64_t i : rng.distinct(n_names, kKeywords)) target_keys.push_back(l.names[i]);
  d.question = {Tokenizer::kQ, l.id("which"), l.id("paragraph"), l.id("has")};
  const size_t keys_at = d.question.size();
  d.question.resize(keys_at + kKeywords);
  d.question.push_back(l.qmark);
  d.question.push_back(Tokenizer::kA);
  set_body(d, context);

  const int64_t budget = d.body_tokens * 9 / 10;
  const int64_t min_paragraphs = 2;
  require_body("passage_retrieval", d, min_paragraphs * 18 + 4, context);
  const int64_t max_paragraphs = 900;  // 3-digit ids
  // mean paragraph length 28 tokens until the id space runs out, then longer
  const int64_t mean_len = std::max<int64_t>(28, budget / max_paragraphs);
  const int64_t n_look = clamp64(budget / mean_len / 10, 1, 8);
  const std::vector<int64_t> ids = rng.distinct(1000, max_paragraphs);

  // a paragraph of `len` tokens holding `keys` at random distinct places
  auto paragraph = [&](int64_t pid, std::vector<int64_t> keys, int64_t len,
                       std::vector<int64_t>* key_order) {
    const int64_t content = len - 5;  // the closing "paragraph d d d ."
    std::vector<int64_t> words(static_cast<size_t>(content));
    for (int64_t& w : words) w = rng.pick(l.common);
    const std::vector<int64_t> places = rng.distinct(content, kKeywords);
    std::vector<int64_t> sorted_places = places;
    std::sort(sorted_places.begin(), sorted_places.end());
    for (int64_t k = 0; k < kKeywords; ++k) words[places[k]] = keys[k];
    if (key_order)
      for (int64_t p : sorted_places) key_order->push_back(words[p]);
    return concat({words,
                   {l.id("paragraph"), l.digits[pid / 100], l.digits[pid / 10 % 10], l.digits[pid % 10], l.dot}});
  };
  auto draw_len = [&]() {
    const int64_t lo = std::max<int64_t>(kKeywords + 10, mean_len * 3 / 5);
    return rng.range(lo, std::max(lo, mean_len * 7 / 5));
  };
  auto overlap = [&](const std::vector<int64_t>& keys) {
    int64_t n = 0;
    for (int64_t k : keys) n += std::count(target_keys.begin(), target_keys.end(), k);
    return n;
  };

  std::vector<int64_t> order;
  const int64_t target_len = std::min(draw_len(), budget / min_paragraphs);
  d.items.push_back({paragraph(ids[0], target_keys, target_len, &order), Role::kEvidence});
  std::copy(order.begin(), order.end(), d.question.begin() + keys_at);
  d.answer = {l.digits[ids[0] / 100], l.digits[ids[0] / 10 % 10], l.digits[ids[0] % 10]};

  for (int64_t p = 1; p < max_paragraphs; ++p) {
    std::vector<int64_t> keys;
    const bool look = p <= n_look;
    if (look) {
      // shares exactly two keywords with the target
      for (int64_t i : rng.distinct(kKeywords, 2)) keys.push_back(target_keys[i]);
      while (keys.size() < static_cast<size_t>(kKeywords)) {
        const int64_t k = rng.pick(l.names);
        if (!overlap({k}) && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
      }
      rng.shuffle(keys);
    } else {
      // at most one keyword in common, so the target is the unique best match
      do {
        keys.clear();
        for (int64_t i : rng.distinct(n_names, kKeywords)) keys.push_back(l.names[i]);
      } while (overlap(keys) > 1);
    }
    Item item{paragraph(ids[p], keys, draw_len(), nullptr), Role::kDistractor, look};
    if (!d.try_add(std::move(item), budget)) break;
  }
  return d;
}

// ---------------------------------------------------------------------------
// variable_tracking: "var a = d d d ." then "var b = a ." ...

/// The instruction of variable_tracking and of its training bridge
/// variable_lookup: the bridge must read as the task it leads to.
std::vector<int64_t> variables_header() {
  return lexicon().words({"follow", "the", "variables", "to", "their", "value", "."});
}

Draft make_variables(Rng& rng, int64_t context) {
  const Lexicon& l = lexicon();
  Draft d;
  d.header = variables_header();
  const int64_t n_names = static_cast<int64_t>(l.names.size());
  const int64_t max_chains = 64, max_hops = 3;
  // every variable name is distinct across all chains
  const std::vector<int64_t> name_order = rng.distinct(n_names, max_chains * (max_hops + 1));
  int64_t next_name = 0;
  struct Chain {
    std::vector<int64_t> vars;  // root first
    std::vector<int64_t> value;
  };
  std::vector<Chain> chains;
  auto new_chain = [&](int64_t hops) {
    Chain c;
    for (int64_t i = 0; i <= hops; ++i) c.vars.push_back(l.names[name_order[next_name++]]);
    c.value = random_digits(rng, kValueDigits);
    return c;
  };
  chains.push_back(new_chain(rng.range(1, max_hops)));
  d.question = {Tokenizer::kQ, l.id("what"), l.id("is"), l.id("var"), chains[0].vars.back(), l.qmark,
                Tokenizer::kA};
  // The answer restates the chain's assignments from the asked variable back
  // to its root ("var c" -> "c = b , b = a , a = d d d"). Each step is one
  // lookup of "var X = ...", which a two-layer host can make, where the value
  // alone would need all hops in one forward pass (commit a971199: 0.25 at 1k
  // tokens). Restating the key makes every step the same lookup, keyed by
  // the token before "=": a bare walk ("b a d d d") keys its first step on the
  // question and the others on the token just written, two circuits, and
  // the host learned neither (commit 4de40d1: 0.06 at 1k). Exact match scores the
  // whole walk, so a wrong turn is a wrong answer.
  {
    const std::vector<int64_t>& v = chains[0].vars;
    for (size_t k = v.size() - 1; k > 0; --k) {
      for (int64_t id : {v[k], l.equals, v[k - 1], l.comma}) d.answer.push_back(id);
    }
    d.answer.push_back(v[0]);
    d.answer.push_back(l.equals);
    d.answer.insert(d.answer.end(), chains[0].value.begin(), chains[0].value.end());
  }
  set_body(d, context);
  const int64_t root_len = 3 + kValueDigits + 1, link_len = 5;  // "var a = d d d ." and "var b = a ."
  auto chain_len = [&](const Chain& c) {
    return root_len + link_len * (static_cast<int64_t>(c.vars.size()) - 1);
  };
  require_body("variable_tracking", d, chain_len(chains[0]) + 8, context);

  // slots: the tokens are written after the shuffle, in order of appearance,
  // so every chain reads root first whatever order its slots landed in
  auto add_slots = [&](const Chain& c, int group, Role role, int64_t budget) {
    if (d.record_tokens() + chain_len(c) > budget) return false;
    for (size_t i = 0; i < c.vars.size(); ++i)
      d.items.push_back({std::vector<int64_t>(i == 0 ? root_len : link_len, 0), role, role != Role::kEvidence,
                         group});
    return true;
  };
  const int64_t budget = std::max(chain_len(chains[0]), d.body_tokens * 2 / 5);
  add_slots(chains[0], 0, Role::kEvidence, budget);
  const int64_t n_decoys = clamp64(d.body_tokens / 100, 1, max_chains - 1);
  for (int64_t i = 0; i < n_decoys; ++i) {
    Chain c = new_chain(rng.range(0, max_hops));
    if (!add_slots(c, static_cast<int>(chains.size()), Role::kDistractor, budget)) break;
    chains.push_back(std::move(c));
  }
  d.after_layout = [chains](Draft& draft) {
    const Lexicon& lx = lexicon();
    std::vector<size_t> seen(chains.size(), 0);
    // lengths move with the content: the first slot of a chain becomes the root
    for (Item& item : draft.items) {
      if (item.group < 0) continue;
      const Chain& c = chains[item.group];
      const size_t k = seen[item.group]++;
      if (k == 0)
        item.tokens = concat({{lx.id("var"), c.vars[0], lx.equals}, c.value, {lx.dot}});
      else
        item.tokens = {lx.id("var"), c.vars[k], lx.equals, c.vars[k - 1], lx.dot};
    }
  };
  return d;
}

// ---------------------------------------------------------------------------
// variable_lookup (training only): single assignments, some to a name that is
// never assigned itself, some to digits; <q> what is var X ? -> X = Y.
//
// A bridge to variable_tracking. The host shipped until commit 72cb864 makes
// the `X = d d d` lookup but not one whose value is a name: of 75 wrong walks
// 71 went wrong at the first name lookup (models/lm/README.md). Here every
// question is one name-valued lookup among look-alike records, in the walk's
// own form, and the walk's stopping rule holds: a walk ends at a value that
// has no assignment (digits, or a name never assigned).

Draft make_variable_lookup(Rng& rng, int64_t context) {
  const Lexicon& l = lexicon();
  Draft d;
  d.header = variables_header();
  const int64_t n_names = static_cast<int64_t>(l.names.size());
  constexpr int64_t kMaxRecords = 64;
  // assigned names and name values all distinct, so no value is ever assigned
  const std::vector<int64_t> name_order = rng.distinct(n_names, 2 * kMaxRecords);
  const int64_t asked = l.names[name_order[0]], asked_value = l.names[name_order[1]];
  d.question = {Tokenizer::kQ, l.id("what"), l.id("is"), l.id("var"), asked, l.qmark, Tokenizer::kA};
  d.answer = {asked, l.equals, asked_value};
  set_body(d, context);
  const int64_t name_len = 5;  // "var a = b ."
  require_body("variable_lookup", d, name_len + 8, context);
  d.items.push_back({{l.id("var"), asked, l.equals, asked_value, l.dot}, Role::kEvidence});
  const int64_t budget = std::max(name_len, d.body_tokens * 2 / 5);
  const int64_t n_others = clamp64(d.body_tokens / 40, 1, kMaxRecords - 1);
  for (int64_t i = 1; i <= n_others; ++i) {
    const int64_t var = l.names[name_order[2 * i]];
    Item item{{}, Role::kDistractor, true};
    if (rng.below(2) == 0)
      item.tokens = {l.id("var"), var, l.equals, l.names[name_order[2 * i + 1]], l.dot};
    else
      item.tokens = concat({{l.id("var"), var, l.equals}, random_digits(rng, kValueDigits), {l.dot}});
    if (!d.try_add(std::move(item), budget)) break;
  }
  return d;
}

// ---------------------------------------------------------------------------
// counting: names sprinkled among filler sentences

Draft make_counting(Rng& rng, int64_t context) {
  const Lexicon& l = lexicon();
  Draft d;
  d.header = l.words({"count", "the", "names", "in", "the", "list", "."});
  const int64_t n_names = static_cast<int64_t>(l.names.size());
  const int64_t max_others = 40;
  const std::vector<int64_t> picks = rng.distinct(n_names, max_others + 1);
  const int64_t target = l.names[picks[0]];
  d.question = {Tokenizer::kQ, l.id("how"), l.id("many"), target, l.qmark, Tokenizer::kA};
  set_body(d, context);
  constexpr int64_t kMaxCount = 9;
  require_body("counting", d, kMaxCount + 8, context);
  const int64_t count = rng.range(1, kMaxCount);
  d.answer = {l.digits[count]};
  for (int64_t i = 0; i < count; ++i) d.items.push_back({{target}, Role::kEvidence});
  const int64_t budget = std::max(count, d.body_tokens / 5);
  const int64_t n_others = clamp64(d.body_tokens / 150, 2, max_others);
  for (int64_t i = 1; i <= n_others; ++i) {
    // every other name about as frequent as the target; within one of it is a look-alike
    const int64_t c = rng.range(1, kMaxCount);
    const bool look = std::abs(c - count) <= 1;
    bool fits = true;
    for (int64_t j = 0; j < c && fits; ++j) fits = d.try_add({{l.names[picks[i]]}, Role::kDistractor, look}, budget);
    if (!fits) break;
  }
  return d;
}

// ---------------------------------------------------------------------------
// redundant tasks: the records of an existing task in a body that is mostly
// repetition, so a memory can drop most of the context and lose nothing.

/// needle_boilerplate: the needle task's statements among repeated boilerplate.
Draft make_needle_boilerplate(Rng& rng, int64_t context) {
  Draft d = make_needle(rng, context);
  d.boilerplate_filler = true;
  return d;
}

/// kv_repeated: few keys, each "k1 k2 : d d d ." stated three times at
/// random places (the copies agree), among repeated boilerplate.
Draft make_kv_repeated(Rng& rng, int64_t context) {
  constexpr int64_t kCopies = 3;
  const Lexicon& l = lexicon();
  Draft d;
  d.header = l.words({"remember", "each", "key", "and", "its", "value", "."});
  d.boilerplate_filler = true;
  std::set<int64_t> used;
  const Key target = fresh_key(rng, used);
  d.question = {Tokenizer::kQ, l.id("value"), l.id("of"), target.first, target.second, l.qmark, Tokenizer::kA};
  set_body(d, context);
  const int64_t record_len = 3 + kValueDigits + 1;
  require_body("kv_repeated", d, 2 * kCopies * record_len + 8, context);
  const int64_t keys = clamp64(d.body_tokens / 400, 2, 40);
  d.answer = random_digits(rng, kValueDigits);
  for (int64_t k = 0; k < keys; ++k) {
    const Key key = k == 0 ? target : fresh_key(rng, used);
    const std::vector<int64_t> value = k == 0 ? d.answer : random_digits(rng, kValueDigits);
    const int group = d.next_repeat_group++;
    for (int64_t c = 0; c < kCopies; ++c) {
      Item item{kv_record(key, value), k == 0 ? Role::kEvidence : Role::kDistractor};
      item.repeat_group = group;
      d.items.push_back(std::move(item));
    }
  }
  return d;
}

// ---------------------------------------------------------------------------

struct TaskSpec {
  const char* name;
  TaskMetric metric;
  int64_t min_context;
  std::function<Draft(Rng&, int64_t)> make;
  enum Group { kSuite, kTrainingOnly, kRedundant };
  Group group = kSuite;  // kTrainingOnly: a curriculum step, not part of the evaluated suite
};

const std::vector<TaskSpec>& specs() {
  static const std::vector<TaskSpec> all = {
      {"kv_retrieval", TaskMetric::kExact, 64,
       [](Rng& r, int64_t t) { return make_kv(r, t, 1, "kv_retrieval"); }},
      {"kv_multi", TaskMetric::kF1, 64, [](Rng& r, int64_t t) { return make_kv(r, t, 2, "kv_multi"); }},
      {"kv_update", TaskMetric::kExact, 64, make_kv_update},
      {"needle", TaskMetric::kExact, 64, make_needle},
      {"passage_retrieval", TaskMetric::kExact, 96, make_passage},
      {"variable_tracking", TaskMetric::kExact, 64, make_variables},
      {"counting", TaskMetric::kExact, 64, make_counting},
      {"variable_lookup", TaskMetric::kExact, 64, make_variable_lookup, TaskSpec::kTrainingOnly},
      {"needle_boilerplate", TaskMetric::kExact, 64, make_needle_boilerplate, TaskSpec::kRedundant},
      {"kv_repeated", TaskMetric::kExact, 128, make_kv_repeated, TaskSpec::kRedundant},
  };
  return all;
}

size_t task_id(const std::string& task) {
  const auto& all = specs();
  for (size_t i = 0; i < all.size(); ++i)
    if (task == all[i].name) return i;
  std::string known;
  for (const auto& s : all) known += std::string(known.empty() ? "" : ", ") + s.name;
  throw std::invalid_argument("unknown task '" + task + "' (known: " + known + ")");
}

}  // namespace

const char* to_string(Split split) {
  switch (split) {
    case Split::kTrain: return "train";
    case Split::kValidation: return "validation";
    case Split::kTest: return "test";
  }
  return "?";
}

Split parse_split(const std::string& text) {
  if (text == "train") return Split::kTrain;
  if (text == "validation" || text == "val") return Split::kValidation;
  if (text == "test") return Split::kTest;
  throw std::invalid_argument("unknown split '" + text + "' (train, validation, test)");
}

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& s : specs())
      if (s.group == TaskSpec::kSuite) n.push_back(s.name);
    return n;
  }();
  return names;
}

const std::vector<std::string>& redundant_task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& s : specs())
      if (s.group == TaskSpec::kRedundant) n.push_back(s.name);
    return n;
  }();
  return names;
}

const std::vector<std::string>& training_task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& s : specs()) n.push_back(s.name);
    return n;
  }();
  return names;
}

TaskMetric task_metric(const std::string& task) { return specs()[task_id(task)].metric; }

int64_t min_context_tokens(const std::string& task) { return specs()[task_id(task)].min_context; }

uint64_t example_seed(const std::string& task, Split split, int64_t index, int64_t context_tokens) {
  const uint64_t id = task_id(task);
  if (index < 0 || index >= (int64_t{1} << 36))
    throw std::invalid_argument("example_seed: index " + std::to_string(index) + " outside [0, 2^36)");
  if (context_tokens < 0 || context_tokens >= (int64_t{1} << 20))
    throw std::invalid_argument("example_seed: context_tokens " + std::to_string(context_tokens) +
                                " outside [0, 2^20)");
  // split | task | length | index packed injectively, then a bijection: the
  // three splits can never share a seed
  const uint64_t packed = (static_cast<uint64_t>(split) << 62) | (id << 56) |
                          (static_cast<uint64_t>(context_tokens) << 36) | static_cast<uint64_t>(index);
  return splitmix64_finalize(packed);
}

TaskExample make_example(const std::string& task, Split split, int64_t index, int64_t context_tokens) {
  const TaskSpec& spec = specs()[task_id(task)];
  if (context_tokens < spec.min_context)
    throw std::invalid_argument("make_example(" + task + "): context_tokens " +
                                std::to_string(context_tokens) + " below the minimum " +
                                std::to_string(spec.min_context));
  TaskExample ex;
  ex.task = task;
  ex.split = split;
  ex.index = index;
  ex.seed = example_seed(task, split, index, context_tokens);
  Rng rng(ex.seed);
  Draft d = spec.make(rng, context_tokens);
  const int64_t records = d.record_tokens();
  if (records > d.body_tokens)
    throw std::logic_error("make_example(" + task + "): records take " + std::to_string(records) +
                           " of " + std::to_string(d.body_tokens) + " body tokens");
  if (d.boilerplate_filler)
    append_boilerplate(d, rng, d.body_tokens - records);
  else
    append_filler(d.items, rng, d.body_tokens - records);
  rng.shuffle(d.items);
  if (d.after_layout) d.after_layout(d);

  ex.prompt.reserve(static_cast<size_t>(context_tokens));
  ex.prompt.push_back(Tokenizer::kBos);
  ex.prompt.insert(ex.prompt.end(), d.header.begin(), d.header.end());
  std::set<int> groups_seen;
  for (const Item& item : d.items) {
    const TokenSpan span{static_cast<int64_t>(ex.prompt.size()),
                         static_cast<int64_t>(ex.prompt.size() + item.tokens.size())};
    if (item.repeat_group >= 0 && !groups_seen.insert(item.repeat_group).second) ex.redundant.push_back(span);
    if (item.role == Role::kEvidence) ex.evidence.push_back(span);
    if (item.role == Role::kDistractor) {
      ex.distractors.push_back(span);
      if (item.lookalike) ++ex.num_lookalikes;
    }
    ex.prompt.insert(ex.prompt.end(), item.tokens.begin(), item.tokens.end());
  }
  ex.question_begin = static_cast<int64_t>(ex.prompt.size());
  ex.prompt.insert(ex.prompt.end(), d.question.begin(), d.question.end());
  if (static_cast<int64_t>(ex.prompt.size()) != context_tokens)
    throw std::logic_error("make_example(" + task + "): prompt of " + std::to_string(ex.prompt.size()) +
                           " tokens, asked " + std::to_string(context_tokens));
  ex.num_distractors = static_cast<int64_t>(ex.distractors.size());
  ex.answer = std::move(d.answer);
  ex.answer_text = builtin_tokenizer().decode(ex.answer);
  return ex;
}

std::vector<TaskExample> make_examples(const std::string& task, Split split, int64_t first_index,
                                       int64_t count, int64_t context_tokens) {
  if (count < 0) throw std::invalid_argument("make_examples: count " + std::to_string(count));
  std::vector<TaskExample> out;
  out.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out.push_back(make_example(task, split, first_index + i, context_tokens));
  return out;
}

std::vector<int64_t> training_sequence(const TaskExample& example) {
  std::vector<int64_t> seq = example.prompt;
  seq.insert(seq.end(), example.answer.begin(), example.answer.end());
  seq.push_back(Tokenizer::kEos);
  return seq;
}

namespace {

// Follow-up questions are read back from the finished prompt by pattern, so
// they can never disagree with what the prompt says.

bool is_in(const std::vector<int64_t>& ids, int64_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

/// Positions [i, i + n) of prompt all digits.
bool digits_at(const std::vector<int64_t>& p, size_t i, size_t n) {
  if (i + n > p.size()) return false;
  for (size_t k = 0; k < n; ++k)
    if (!is_in(lexicon().digits, p[i + k])) return false;
  return true;
}

bool name_at(const std::vector<int64_t>& p, size_t i) { return i < p.size() && is_in(lexicon().names, p[i]); }

std::vector<int64_t> slice(const std::vector<int64_t>& p, size_t begin, size_t n) {
  return std::vector<int64_t>(p.begin() + static_cast<std::ptrdiff_t>(begin),
                              p.begin() + static_cast<std::ptrdiff_t>(begin + n));
}

/// "k1 k2 : d d d ." records of the body, in prompt order: (key, value).
std::vector<std::pair<Key, std::vector<int64_t>>> kv_records(const TaskExample& ex) {
  const Lexicon& l = lexicon();
  const std::vector<int64_t>& p = ex.prompt;
  std::vector<std::pair<Key, std::vector<int64_t>>> out;
  const size_t end = static_cast<size_t>(ex.question_begin);
  for (size_t i = 0; i + 7 <= end; ++i) {
    if (name_at(p, i) && name_at(p, i + 1) && p[i + 2] == l.colon && digits_at(p, i + 3, kValueDigits) &&
        p[i + 3 + kValueDigits] == l.dot) {
      out.push_back({{p[i], p[i + 1]}, slice(p, i + 3, kValueDigits)});
      i += 6;
    }
  }
  return out;
}

std::vector<FollowUp> kv_follow_ups(const TaskExample& ex, int keys_per_question, bool latest) {
  const Lexicon& l = lexicon();
  const std::vector<int64_t> asked(ex.prompt.begin() + ex.question_begin, ex.prompt.end());
  // one value per key: the last one written (kv_update), the only one otherwise
  std::vector<Key> order;
  std::map<Key, std::vector<int64_t>> value;
  for (auto& [key, v] : kv_records(ex)) {
    bool in_question = false;
    for (size_t i = 0; i + 1 < asked.size(); ++i) in_question |= asked[i] == key.first && asked[i + 1] == key.second;
    if (in_question) continue;
    if (!value.count(key)) order.push_back(key);
    if (latest || !value.count(key)) value[key] = v;
  }
  std::vector<FollowUp> out;
  for (size_t i = 0; i + keys_per_question <= order.size(); i += keys_per_question) {
    FollowUp f;
    f.question = {Tokenizer::kQ};
    if (latest) f.question.push_back(l.id("last"));
    f.question.push_back(l.id("value"));
    f.question.push_back(l.id("of"));
    for (int k = 0; k < keys_per_question; ++k) {
      const Key& key = order[i + k];
      if (k > 0) f.question.push_back(l.id("and"));
      f.question.push_back(key.first);
      f.question.push_back(key.second);
      f.answer.insert(f.answer.end(), value[key].begin(), value[key].end());
    }
    f.question.push_back(l.qmark);
    f.question.push_back(Tokenizer::kA);
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<FollowUp> needle_follow_ups(const TaskExample& ex) {
  const Lexicon& l = lexicon();
  const std::vector<int64_t>& p = ex.prompt;
  const std::vector<int64_t> attributes = l.words({"secret", "code", "pin", "number"});
  constexpr size_t kDigits = 4;
  std::vector<FollowUp> out;
  const size_t end = static_cast<size_t>(ex.question_begin);
  // "the ATTR of NAME is d d d d ."
  for (size_t i = 0; i + 10 <= end; ++i) {
    if (p[i] != l.id("the") || !is_in(attributes, p[i + 1]) || p[i + 2] != l.id("of") || !name_at(p, i + 3) ||
        p[i + 4] != l.id("is") || !digits_at(p, i + 5, kDigits) || p[i + 5 + kDigits] != l.dot)
      continue;
    FollowUp f;
    f.question = {Tokenizer::kQ, l.id("what"), l.id("is"), l.id("the"), p[i + 1], l.id("of"), p[i + 3],
                  l.qmark, Tokenizer::kA};
    f.answer = slice(p, i + 5, kDigits);
    const std::vector<int64_t> asked(p.begin() + ex.question_begin, p.end());
    if (f.question != asked) out.push_back(std::move(f));
  }
  return out;
}

std::vector<FollowUp> passage_follow_ups(const TaskExample& ex) {
  const Lexicon& l = lexicon();
  const std::vector<int64_t>& p = ex.prompt;
  std::vector<FollowUp> out;
  const size_t end = static_cast<size_t>(ex.question_begin);
  // "words with 4 keywords paragraph d d d .": the keywords of a paragraph are
  // the names since the previous paragraph's closing id
  const int64_t paragraph = l.id("paragraph");
  std::vector<int64_t> names;
  for (size_t i = 0; i < end; ++i) {
    if (name_at(p, i)) names.push_back(p[i]);
    if (p[i] != paragraph || i + 5 > end || !digits_at(p, i + 1, 3) || p[i + 4] != l.dot) continue;
    FollowUp f;
    f.question = {Tokenizer::kQ, l.id("which"), l.id("paragraph"), l.id("has")};
    f.question.insert(f.question.end(), names.begin(), names.end());
    names.clear();
    if (f.question.size() != 8) continue;
    f.question.push_back(l.qmark);
    f.question.push_back(Tokenizer::kA);
    f.answer = slice(p, i + 1, 3);
    if (f.answer != ex.answer) out.push_back(std::move(f));
    i += 4;
  }
  return out;
}

std::vector<FollowUp> variable_follow_ups(const TaskExample& ex) {
  const Lexicon& l = lexicon();
  const std::vector<int64_t>& p = ex.prompt;
  // the answer to "what is var X": the walk from X back to the root, then the value
  std::map<int64_t, std::vector<int64_t>> walk;
  std::vector<int64_t> order;
  const size_t end = static_cast<size_t>(ex.question_begin);
  auto assignment_at = [&](size_t i) {
    return p[i] == l.id("var") && name_at(p, i + 1) && p[i + 2] == l.equals;
  };
  std::set<int64_t> assigned;
  for (size_t i = 0; i + 5 <= end; ++i)
    if (assignment_at(i)) assigned.insert(p[i + 1]);
  // roots "var a = d d d ." come before their links "var b = a ." (after_layout);
  // a walk also ends at a name never assigned (variable_lookup)
  for (size_t i = 0; i + 5 <= end; ++i) {
    if (!assignment_at(i)) continue;
    if (digits_at(p, i + 3, kValueDigits) && i + 3 + kValueDigits < end && p[i + 3 + kValueDigits] == l.dot) {
      walk[p[i + 1]] = concat({{p[i + 1], l.equals}, slice(p, i + 3, kValueDigits)});
      order.push_back(p[i + 1]);
    } else if (name_at(p, i + 3) && p[i + 4] == l.dot && walk.count(p[i + 3])) {
      walk[p[i + 1]] = concat({{p[i + 1], l.equals, p[i + 3], l.comma}, walk[p[i + 3]]});
      order.push_back(p[i + 1]);
    } else if (name_at(p, i + 3) && p[i + 4] == l.dot && !assigned.count(p[i + 3])) {
      walk[p[i + 1]] = {p[i + 1], l.equals, p[i + 3]};
      order.push_back(p[i + 1]);
    }
  }
  std::vector<FollowUp> out;
  for (int64_t var : order) {
    FollowUp f;
    f.question = {Tokenizer::kQ, l.id("what"), l.id("is"), l.id("var"), var, l.qmark, Tokenizer::kA};
    f.answer = walk[var];
    const std::vector<int64_t> asked(p.begin() + ex.question_begin, p.end());
    if (f.question != asked) out.push_back(std::move(f));
  }
  return out;
}

std::vector<FollowUp> counting_follow_ups(const TaskExample& ex) {
  const Lexicon& l = lexicon();
  const std::vector<int64_t>& p = ex.prompt;
  std::map<int64_t, int64_t> count;
  std::vector<int64_t> order;
  for (int64_t i = 0; i < ex.question_begin; ++i)
    if (name_at(p, static_cast<size_t>(i)) && count[p[i]]++ == 0) order.push_back(p[i]);
  std::vector<FollowUp> out;
  for (int64_t name : order) {
    if (count[name] > 9) continue;
    FollowUp f;
    f.question = {Tokenizer::kQ, l.id("how"), l.id("many"), name, l.qmark, Tokenizer::kA};
    f.answer = {l.digits[count[name]]};
    const std::vector<int64_t> asked(p.begin() + ex.question_begin, p.end());
    if (f.question != asked) out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

std::vector<FollowUp> follow_up_questions(const TaskExample& ex, int64_t max_questions) {
  if (max_questions < 0)
    throw std::invalid_argument("follow_up_questions: max_questions " + std::to_string(max_questions));
  std::vector<FollowUp> all;
  if (ex.task == "kv_retrieval") all = kv_follow_ups(ex, 1, false);
  else if (ex.task == "kv_multi") all = kv_follow_ups(ex, 2, false);
  else if (ex.task == "kv_update") all = kv_follow_ups(ex, 1, true);
  else if (ex.task == "needle" || ex.task == "needle_boilerplate") all = needle_follow_ups(ex);
  else if (ex.task == "kv_repeated") all = kv_follow_ups(ex, 1, false);
  else if (ex.task == "passage_retrieval") all = passage_follow_ups(ex);
  else if (ex.task == "variable_tracking" || ex.task == "variable_lookup") all = variable_follow_ups(ex);
  else if (ex.task == "counting") all = counting_follow_ups(ex);
  else task_id(ex.task);  // throws for an unknown task
  // Drawn with replacement: asked without replacement, each record exactly
  // once, the last questions of a short context are answered by elimination
  // (the record not asked yet), and a host trained that way learned that
  // shortcut instead of matching keys (commit 3988c6e: on 64-token kv prompts,
  // which hold 3 records, 42% of first questions right against a
  // teacher-forced 62% over all questions).
  // A stream of its own, so the example's draws stay as they are.
  Rng rng(splitmix64_finalize(ex.seed ^ 0x5851f42d4c957f2dull));
  const int64_t n = std::min<int64_t>(max_questions, static_cast<int64_t>(all.size()));
  std::vector<FollowUp> drawn;
  drawn.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) drawn.push_back(all[rng.below(all.size())]);
  return drawn;
}

std::vector<int64_t> training_sequence(const TaskExample& example, const std::vector<FollowUp>& follow_ups,
                                       std::vector<TokenSpan>* answer_spans) {
  std::vector<int64_t> seq = example.prompt;
  auto add_answer = [&](const std::vector<int64_t>& answer) {
    const int64_t begin = static_cast<int64_t>(seq.size());
    seq.insert(seq.end(), answer.begin(), answer.end());
    seq.push_back(Tokenizer::kEos);
    if (answer_spans) answer_spans->push_back({begin, static_cast<int64_t>(seq.size())});
  };
  if (answer_spans) answer_spans->clear();
  add_answer(example.answer);
  for (const FollowUp& f : follow_ups) {
    seq.insert(seq.end(), f.question.begin(), f.question.end());
    add_answer(f.answer);
  }
  return seq;
}

std::vector<int64_t> trim_prediction(const std::vector<int64_t>& prediction) {
  auto end = std::find_if(prediction.begin(), prediction.end(),
                          [](int64_t id) { return id == Tokenizer::kEos || id == Tokenizer::kPad; });
  return std::vector<int64_t>(prediction.begin(), end);
}

double score_exact(const std::vector<int64_t>& prediction, const std::vector<int64_t>& answer) {
  return trim_prediction(prediction) == answer ? 1.0 : 0.0;
}

double score_f1(const std::vector<int64_t>& prediction, const std::vector<int64_t>& answer) {
  const std::vector<int64_t> pred = trim_prediction(prediction);
  if (pred.empty() && answer.empty()) return 1.0;
  if (pred.empty() || answer.empty()) return 0.0;
  std::unordered_map<int64_t, int64_t> counts;
  for (int64_t id : answer) ++counts[id];
  int64_t common = 0;
  for (int64_t id : pred) {
    auto it = counts.find(id);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++common;
    }
  }
  if (common == 0) return 0.0;
  const double precision = static_cast<double>(common) / static_cast<double>(pred.size());
  const double recall = static_cast<double>(common) / static_cast<double>(answer.size());
  return 2.0 * precision * recall / (precision + recall);
}

double score_task(const std::string& task, const std::vector<int64_t>& prediction,
                  const std::vector<int64_t>& answer) {
  return task_metric(task) == TaskMetric::kF1 ? score_f1(prediction, answer)
                                              : score_exact(prediction, answer);
}

int64_t Curriculum::context_tokens(double progress) const {
  if (min_tokens <= 0 || max_tokens < min_tokens || multiple <= 0)
    throw std::invalid_argument("Curriculum: min_tokens " + std::to_string(min_tokens) + ", max_tokens " +
                                std::to_string(max_tokens) + ", multiple " + std::to_string(multiple));
  const double p = std::max(0.0, std::min(1.0, progress));
  const double length = static_cast<double>(min_tokens) *
                        std::pow(static_cast<double>(max_tokens) / static_cast<double>(min_tokens), p);
  const int64_t rounded = static_cast<int64_t>(length) / multiple * multiple;
  return std::max(min_tokens, std::min(max_tokens, rounded));
}

}  // namespace namm
