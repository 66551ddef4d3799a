// The per-sequence inference state every host keeps: one prunable KV cache
// per attention layer and the position the next token gets.
//
// As in CTranslate2's decoder/state split, the model is immutable during
// inference and everything that belongs to one sequence lives here, so one
// model serves many sequences (threads) at once, each with its own state,
// controller and policy.
//
// Shape letters: L layers, H KV heads of one layer.
#pragma once

#include "adapters/kv_cache.h"

#include <cstdint>
#include <vector>

namespace namm {

/// One sequence's caches [L] and next position.
struct SequenceState {
  std::vector<LayerKvCache> caches;  ///< [L] caches, H heads each.
  int64_t next_position = 0;         ///< position the next fed token gets by default.

  /// L caches of the given sizes, empty.
  static SequenceState with_layers(int64_t num_layers, const KvCacheOptions& options);

  int64_t num_layers() const { return static_cast<int64_t>(caches.size()); }
  /// Sum over layers of LayerKvCache::bytes() (allocated storage).
  int64_t bytes() const;
  /// Sum over layers of LayerKvCache::used_bytes() (storage holding cached tokens).
  int64_t used_bytes() const;
  /// Mean over one layer's KV heads of the tokens cached; throws std::out_of_range for a bad layer.
  double mean_cached_tokens(int64_t layer) const;
  /// Mean over layers of mean_cached_tokens(layer) (0 without layers).
  double mean_cached_tokens() const;
  /// Per layer, mean_cached_tokens(layer): [L].
  std::vector<double> cached_tokens_per_layer() const;
  /// Empties every cache and restarts positions at 0.
  void clear();
};

}  // namespace namm
