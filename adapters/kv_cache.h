// A prunable KV cache for one attention layer, one cache per KV head.
//
// Heads may hold different numbers of tokens: a memory policy decides per
// head, and eviction is physical (the rows of evicted tokens are compacted
// away and storage far larger than what is used is released), so bytes()
// is the memory the cache really holds. As in llama.cpp's kv-cells, the
// bookkeeping (the sequence position of each cached token) is kept apart
// from the K/V tensors.
//
// Keys are stored as the host hands them, i.e. after RoPE, so a kept token
// keeps its original position. The cache lives on whatever device its
// options name; nothing here assumes the CPU.
//
// This is not an attention implementation (see prunable_attention.h) and it
// knows nothing about policies (see memory_controller.h).
//
// Shape letters: H KV heads, n new tokens, T cached tokens of one head,
// D head width, K kept tokens.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <vector>

namespace namm {

/// Sizes and storage of a layer's cache.
struct KvCacheOptions {
  int64_t num_heads = 1;        ///< KV heads H.
  int64_t head_dim = 64;        ///< head width D.
  at::ScalarType dtype = at::kFloat;  ///< storage type of keys and values.
  at::Device device = at::kCPU;       ///< where the K/V storage lives.
  int64_t min_capacity = 16;    ///< smallest allocation per head, in tokens.
};

/// The KV cache of one layer: per KV head, positions plus K/V storage.
class LayerKvCache {
 public:
  explicit LayerKvCache(KvCacheOptions options);

  /// Copies are deep: a copy owns its storage (a shallow copy would let one
  /// cache's in-place compaction or append rewrite the other's rows).
  LayerKvCache(const LayerKvCache& other);
  LayerKvCache& operator=(const LayerKvCache& other);
  LayerKvCache(LayerKvCache&&) noexcept = default;
  LayerKvCache& operator=(LayerKvCache&&) noexcept = default;

  const KvCacheOptions& options() const { return options_; }
  int64_t num_heads() const { return options_.num_heads; }
  int64_t head_dim() const { return options_.head_dim; }

  /// Appends n tokens to every head: k, v [H, n, D] (keys after RoPE; any
  /// dtype/device, converted to the cache's), positions [n] int64, strictly
  /// ascending and above every cached position. Storage grows geometrically.
  void append(const at::Tensor& k, const at::Tensor& v, const at::Tensor& positions);

  /// Keeps only the given cached tokens of one head: indices [K] int64,
  /// strictly ascending, in [0, length(head)). Compacts the kept rows to the
  /// front and shrinks storage to fit when less than half of it stays used.
  void keep(int64_t head, const at::Tensor& indices);

  /// keep() for every head: indices[h] [K_h] int64 ascending.
  void keep_all_heads(const std::vector<at::Tensor>& indices);

  /// Tokens T cached in one head.
  int64_t length(int64_t head) const;
  /// Largest length over the heads.
  int64_t max_length() const;
  /// Allocated rows of one head's storage (>= length).
  int64_t capacity(int64_t head) const;

  /// Sequence positions of one head's cached tokens: [T] int64 on the CPU, ascending (a copy).
  at::Tensor positions(int64_t head) const;
  /// The same positions without a copy.
  const std::vector<int64_t>& position_list(int64_t head) const;

  /// One head's keys [T, D], a view into the storage: valid until the next append/keep/clear.
  at::Tensor keys(int64_t head) const;
  /// One head's values [T, D], a view like keys().
  at::Tensor values(int64_t head) const;

  /// Bytes of K/V storage allocated (capacity * D * 2 * element size, summed over heads).
  int64_t bytes() const;
  /// Bytes of K/V storage holding cached tokens (length * D * 2 * element size, summed).
  int64_t used_bytes() const;

  /// Position of the newest token ever appended (-1 before the first append);
  /// it survives eviction, so ages can be measured against it.
  int64_t newest_position() const { return newest_position_; }
  /// Tokens appended since construction or clear(), evicted or not.
  int64_t tokens_appended() const { return tokens_appended_; }
  /// Counts keep()/clear() calls: rows recorded against an older epoch no
  /// longer line up with the cached tokens.
  int64_t eviction_epoch() const { return eviction_epoch_; }

  /// Drops every token and releases all storage.
  void clear();

 private:
  struct HeadStore {
    std::vector<int64_t> positions;  // [T] ascending: the bookkeeping
    at::Tensor k, v;                 // [capacity, D] storage; rows [0, T) hold tokens
  };

  void check_head(int64_t head) const;
  void reserve(HeadStore& store, int64_t rows);

  KvCacheOptions options_;
  std::vector<HeadStore> heads_;
  int64_t newest_position_ = -1;
  int64_t tokens_appended_ = 0;
  int64_t eviction_epoch_ = 0;
};

}  // namespace namm
