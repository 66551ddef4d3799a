#include "tokenizers/bpe.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <queue>
#include <stdexcept>

#include "tokenizers/unicode_text.h"

namespace namm::tokenizers {
namespace {

// Far above any released vocabulary (Gemma 3: 262,145) and small enough
// that the id table of a hostile file cannot exhaust memory.
constexpr int64_t kMaxTokenId = 16'777'215;

std::invalid_argument field_error(const std::string& field, const std::string& problem) {
  return std::invalid_argument(field + ": " + problem);
}

bool optional_bool(const nlohmann::json& model, const char* key) {
  const auto it = model.find(key);
  if (it == model.end() || it->is_null()) return false;
  if (!it->is_boolean()) throw field_error(std::string("model.") + key, "is not true or false");
  return it->get<bool>();
}

}  // namespace

BpeModel BpeModel::from_json(const nlohmann::json& model) {
  BpeModel bpe;
  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) throw field_error("model.vocab", "missing or not an object of token: id");
  const auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) throw field_error("model.merges", "missing or not an array");
  if (const auto d = model.find("dropout"); d != model.end() && !d->is_null() && d->is_number() && d->get<double>() > 0)
    throw field_error("model.dropout", "BPE dropout is a training-time option; this tokenizer does not apply it");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()))
      throw field_error(std::string("model.") + key, "unsupported (only empty or null)");
  }
  bpe.byte_fallback_ = optional_bool(model, "byte_fallback");
  bpe.ignore_merges_ = optional_bool(model, "ignore_merges");
  bpe.fuse_unk_ = optional_bool(model, "fuse_unk");

  int64_t max_id = -1;
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer()) throw field_error("model.vocab[\"" + token + "\"]", "id is not an integer");
    const int64_t value = id.get<int64_t>();
    if (value < 0 || value > kMaxTokenId)
      throw field_error("model.vocab[\"" + token + "\"]", "id " + std::to_string(value) + " is out of range");
    if (value > max_id) max_id = value;
  }
  bpe.id_to_token_.resize(static_cast<std::size_t>(max_id + 1));
  bpe.id_defined_.assign(static_cast<std::size_t>(max_id + 1), false);
  bpe.token_to_id_.reserve(vocab->size());
  for (const auto& [token, id] : vocab->items()) {
    const auto value = id.get<int32_t>();
    if (bpe.id_defined_[value])
      throw field_error("model.vocab[\"" + token + "\"]", "id " + std::to_string(value) + " is already taken by \"" +
                                                          bpe.id_to_token_[value] + "\"");
    bpe.id_to_token_[value] = token;
    bpe.id_defined_[value] = true;
    bpe.token_to_id_.emplace(token, value);
  }

  bpe.merges_.reserve(merges->size());
  int32_t rank = 0;
  for (const auto& merge : *merges) {
    const std::string field = "model.merges[" + std::to_string(rank) + "]";
    std::string left, right;
    if (merge.is_string()) {  // tokenizers < 0.20: "left right"
      const auto& text = merge.get_ref<const std::string&>();
      const std::size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
        throw field_error(field, "\"" + text + "\" is not two tokens separated by one space");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      throw field_error(field, "is neither \"left right\" nor [left, right]");
    }
    const auto l = bpe.token_to_id_.find(left), r = bpe.token_to_id_.find(right);
    const auto m = bpe.token_to_id_.find(left + right);
    if (l == bpe.token_to_id_.end()) throw field_error(field, "\"" + left + "\" is not in model.vocab");
    if (r == bpe.token_to_id_.end()) throw field_error(field, "\"" + right + "\" is not in model.vocab");
    if (m == bpe.token_to_id_.end()) throw field_error(field, "the merged token \"" + left + right + "\" is not in model.vocab");
    // a pair listed twice keeps its last rank, as the reference implementations do
    bpe.merges_[pair_key(l->second, r->second)] = Merge{rank, m->second};
    ++rank;
  }

  if (const auto unk = model.find("unk_token"); unk != model.end() && !unk->is_null()) {
    if (!unk->is_string()) throw field_error("model.unk_token", "is not a string");
    bpe.unk_token_ = unk->get<std::string>();
    const auto it = bpe.token_to_id_.find(bpe.unk_token_);
    if (it == bpe.token_to_id_.end()) throw field_error("model.unk_token", "\"" + bpe.unk_token_ + "\" is not in model.vocab");
    bpe.unk_id_ = it->second;
  }
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    const auto it = bpe.token_to_id_.find(name);
    bpe.byte_ids_[byte] = it == bpe.token_to_id_.end() ? -1 : it->second;
  }
  return bpe;
}

void BpeModel::add_token(const std::string& content, int32_t id) {
  if (id < 0 || id > kMaxTokenId) throw std::invalid_argument("added token id " + std::to_string(id) + " is out of range");
  if (static_cast<std::size_t>(id) >= id_to_token_.size()) {
    id_to_token_.resize(static_cast<std::size_t>(id) + 1);
    id_defined_.resize(static_cast<std::size_t>(id) + 1, false);
  }
  id_to_token_[id] = content;
  id_defined_[id] = true;
  token_to_id_[content] = id;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const auto it = token_to_id_.find(std::string(token));
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= id_to_token_.size() || !id_defined_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::emit_unknown_symbol(std::string_view symbol, std::vector<int32_t>& out) const {
  if (byte_fallback_) {
    bool all_bytes_known = true;
    for (const char c : symbol) all_bytes_known = all_bytes_known && byte_ids_[static_cast<unsigned char>(c)] >= 0;
    if (all_bytes_known) {
      for (const char c : symbol) out.push_back(byte_ids_[static_cast<unsigned char>(c)]);
      return;
    }
  }
  if (!unk_id_) {
    throw std::invalid_argument("the text has a character the vocabulary cannot spell (U+" +
                                [&] {
                                  std::size_t n;
                                  char hex[16];
                                  std::snprintf(hex, sizeof hex, "%04X",
                                                static_cast<unsigned>(utf8_decode_at(symbol, 0, &n)));
                                  return std::string(hex);
                                }() +
                                ") and the model has no unk_token");
  }
  out.push_back(*unk_id_);
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    if (const auto it = token_to_id_.find(std::string(piece)); it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // One symbol per code point, in a doubly linked list over a vector; a
  // merge keeps the left symbol's slot, so a slot index is also the
  // position tie-break.
  struct Symbol {
    int32_t id;
    uint32_t begin, end;  // bytes of piece
    int32_t prev, next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  std::string code_point;
  for (std::size_t pos = 0; pos < piece.size();) {
    const std::size_t n = utf8_char_length(piece, pos);
    code_point.assign(piece.substr(pos, n));
    const auto it = token_to_id_.find(code_point);
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{it == token_to_id_.end() ? -1 : it->second, static_cast<uint32_t>(pos),
                             static_cast<uint32_t>(pos + n), index - 1, index + 1});
    pos += n;
  }
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank, left;  // left: slot of the left symbol
    int32_t left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto consider = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0 || symbols[left].id < 0 || symbols[right].id < 0) return;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) queue.push(Candidate{it->second.rank, left, symbols[left].id, symbols[right].id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    // stale: this slot was merged away, or either side changed since
    if (left.id != top.left_id || left.next < 0 || symbols[left.next].id != top.right_id) continue;
    Symbol& right = symbols[left.next];
    left.id = merges_.at(pair_key(top.left_id, top.right_id)).merged_id;
    left.end = right.end;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.id = -2;  // dead slot: never matches a candidate again
    right.next = -1;
    if (left.prev >= 0) consider(left.prev);
    consider(top.left);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) {
      out.push_back(symbols[i].id);
    } else {
      emit_unknown_symbol(piece.substr(symbols[i].begin, symbols[i].end - symbols[i].begin), out);
    }
  }
}

void BpeModel::fuse_unknown(std::vector<int32_t>& ids, std::size_t from) const {
  if (!fuse_unk_ || !unk_id_) return;
  std::size_t write = from;
  for (std::size_t read = from; read < ids.size(); ++read) {
    if (ids[read] == *unk_id_ && write > from && ids[write - 1] == *unk_id_) continue;
    ids[write++] = ids[read];
  }
  ids.resize(write);
}

}  // namespace namm::tokenizers
