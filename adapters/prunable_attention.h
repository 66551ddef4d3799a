// Causal attention over a prunable per-head KV cache, recording what a
// memory policy needs.
//
// A host's attention layer hands over its queries and the new keys/values
// (all after RoPE); this appends the new tokens to the layer's cache and
// attends each query over its KV head's cached tokens, causally by POSITION
// (a query at position p sees cached keys at positions <= p), so it stays
// exact after any eviction. Grouped-query attention: query head i uses KV
// head i / (Hq / Hkv).
//
// While a policy needs attention, an AttentionRecorder collects, per KV
// head, the attention rows of the new queries averaged over the query heads
// of the group. At an update the recorder yields attention [Q, T_h] aligned
// with the head's current cache: keys appended after a query get zeros.
//
// Not here: projections, RoPE, output projection (the host's), the policy
// schedule (memory_controller.h).
//
// Shape letters: Hq query heads, Hkv KV heads, G = Hq / Hkv, n new tokens,
// Q buffered queries, T cached tokens of one head, D head width.
#pragma once

#include "adapters/kv_cache.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace namm {

/// Attention rows of the queries since the last policy update, for every KV
/// head of one layer. Rows stay on the device they were computed on.
class AttentionRecorder {
 public:
  /// num_heads 0 lets the first prunable_attention call size it to its cache.
  explicit AttentionRecorder(int64_t num_heads = 0);

  int64_t num_heads() const { return static_cast<int64_t>(heads_.size()); }
  /// Sizes an empty recorder for num_heads KV heads (throws if rows are buffered).
  void set_num_heads(int64_t num_heads);

  /// Records rows [n, T_h] float32 for one head: the group-averaged
  /// attention of n queries over the T_h tokens cached at that moment
  /// (cache eviction epoch `epoch`, see LayerKvCache::eviction_epoch()).
  void record(int64_t head, const at::Tensor& rows, int64_t epoch);

  /// Rows buffered for one head.
  int64_t num_rows(int64_t head) const;
  /// Rows buffered, which must be the same for every head (throws if not); 0 without heads.
  int64_t num_rows() const;

  /// All buffered rows of one head aligned with the cache's current tokens:
  /// [Q, T_h] float32, zero where a key was appended after the query.
  /// Throws if the cache evicted tokens since the rows were recorded.
  at::Tensor rows(int64_t head, const LayerKvCache& cache) const;

  /// Drops all rows.
  void clear();

 private:
  struct Chunk {
    at::Tensor rows;  // [n, T at record time] float32
    int64_t epoch;
  };
  std::vector<std::vector<Chunk>> heads_;  // [Hkv] -> chunks in order
  std::vector<int64_t> counts_;            // [Hkv] rows buffered
};

/// Knobs of prunable_attention.
struct AttentionOptions {
  double scale = 0.0;  ///< softmax temperature; 0 means 1 / sqrt(D).
  /// Optional additive mask per KV head, [n, T_h] after the append (for
  /// tests and experiments: -inf hides a key); empty means none.
  std::vector<at::Tensor> extra_mask;
};

/// Appends k, v [Hkv, n, D] at positions [n] to cache, then returns the causal
/// attention output [Hq, n, D] of q [Hq, n, D] over the cached tokens. Records
/// the group-averaged attention rows [n, T_h] per KV head when recorder is
/// non-null. Computed in the cache's dtype on the cache's device.
at::Tensor prunable_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& positions, LayerKvCache& cache,
                              AttentionRecorder* recorder = nullptr,
                              const AttentionOptions& options = {});

}  // namespace namm
