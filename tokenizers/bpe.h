// The BPE model of a Hugging Face tokenizer.json ("model": {"type": "BPE"}):
// a vocabulary, a ranked list of merges, and the options the four real
// tokenizers under tests/fixtures/tokenizers use (byte_fallback,
// ignore_merges, fuse_unk, unk_token).
//
// Encoding a pre-token: split it into code points, then repeatedly apply the
// lowest-ranked merge among adjacent pairs (ties to the leftmost pair) until
// none applies. Merges are stored by token-id pair, so the inner loop
// compares integers, not strings.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace namm::tokenizers {

class BpeModel {
 public:
  /// Reads tokenizer.json's "model" object. Throws std::invalid_argument
  /// naming the field (e.g. "model.merges[12]: 'ab' is not in model.vocab").
  static BpeModel from_json(const nlohmann::json& model);

  /// Registers an added token's id so ignore_merges and id lookups see it.
  void add_token(const std::string& content, int32_t id);

  /// Appends the ids of one pre-token (UTF-8, non-empty) to out.
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  /// Fuses runs of unk ids when fuse_unk is set (over one section).
  void fuse_unknown(std::vector<int32_t>& ids, std::size_t from) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  /// The vocabulary string of id, or nullptr when id names nothing.
  const std::string* id_to_token(int32_t id) const;
  /// One past the largest id (added tokens included).
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  void emit_unknown_symbol(std::string_view symbol, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> id_defined_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
  std::string unk_token_;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  int32_t byte_ids_[256];  // <0xXX> tokens of byte_fallback (-1: missing)
};

}  // namespace namm::tokenizers
