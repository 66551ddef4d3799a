// Runs one memory policy over all attention layers of one sequence.
//
// Host protocol (any LibTorch host: language, video, Decision Transformer).
// adapters/cached_host.h implements it once (feed_chunk, feed_sequence) for
// every CachedHost; a host that implements that interface gets it for free:
//   1. Before feeding a chunk, ask n_max = controller.tokens_until_update()
//      and feed at most n_max tokens, so that every update sees exactly
//      `delay` new queries (the NAMM's STFT needs a multiple of its hop).
//   2. In every attention layer l, call
//        prunable_attention(q, k, v, positions, caches[l], controller.recorder(l))
//      recorder(l) is null when the policy needs no attention, so nothing
//      is recorded then.
//   3. After the chunk has passed through all layers, call
//        controller.after_tokens(n, caches)
//      When `delay` tokens have accumulated it builds one LayerObservation
//      per layer, calls policy->update, evicts physically from the caches,
//      clears the buffers and records statistics.
//   4. At the end of a prompt a host may call flush(caches) to update with
//      whatever is buffered. Use it only when the buffered count suits the
//      policy (for a NAMM a multiple of its hop; NammPolicy checks this and
//      throws otherwise).
// A new sequence needs reset() (and cleared caches).
//
// Observation tensors (attention rows, keys) live on options.policy_device
// and are only valid during policy->update(): keys may be views into the
// cache storage that the following eviction rewrites.
//
// Shape letters: Q buffered queries, T cached tokens of one head.
#pragma once

#include "adapters/kv_cache.h"
#include "adapters/prunable_attention.h"
#include "core/memory_policy.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace namm {

/// How often a policy runs and what is kept for plots.
struct ControllerOptions {
  int64_t delay = 512;             ///< new tokens between updates.
  bool record_statistics = true;   ///< keep one UpdateHeadStats per update, layer and head.
  at::Device policy_device = at::kCPU;  ///< where observations are handed to the policy (core policies run on the CPU).
};

/// What one update did to one KV head of one layer.
struct UpdateHeadStats {
  int64_t update = 0;          ///< update index, 0 = first.
  int layer = 0;
  int head = 0;
  int64_t tokens_seen = 0;     ///< tokens of the sequence so far (the full-cache size).
  int64_t num_new_tokens = 0;  ///< queries Q of this update.
  int64_t tokens_before = 0;   ///< cached tokens T before eviction.
  int64_t tokens_after = 0;    ///< cached tokens K after eviction.
  double mean_age = 0.0;       ///< mean of newest position - position over kept tokens (0 if none kept).
  double max_age = 0.0;        ///< oldest kept token's age.
  bool has_scores = false;     ///< whether the policy reported scores.
  double score_mean = 0.0;     ///< mean score over the T tokens (NaN without scores).
  double score_nonneg_fraction = 0.0;  ///< fraction of the T tokens scored >= 0 (NaN without scores).
};

/// Owns a policy for one sequence and runs it every `delay` tokens.
class MemoryController {
 public:
  MemoryController(std::unique_ptr<MemoryPolicy> policy, int num_layers, ControllerOptions options = {});

  MemoryPolicy& policy() { return *policy_; }
  const MemoryPolicy& policy() const { return *policy_; }
  const ControllerOptions& options() const { return options_; }
  int num_layers() const { return num_layers_; }

  /// Tokens the host may still feed before the next update (1..delay).
  int64_t tokens_until_update() const { return options_.delay - buffered_; }
  /// Tokens fed since the last update.
  int64_t buffered_tokens() const { return buffered_; }
  /// Tokens fed since construction or reset().
  int64_t tokens_seen() const { return tokens_seen_; }
  /// Updates run so far.
  int64_t num_updates() const { return num_updates_; }

  /// The recorder layer's attention should fill, or null when the policy
  /// needs no attention (then nothing must be recorded).
  AttentionRecorder* recorder(int layer);
  /// recorder(l) for every layer [L], or an empty list when the policy needs
  /// no attention (the form CachedHost::forward_layers takes; no allocation).
  const std::vector<AttentionRecorder*>& recorders() const;

  /// Tells the controller that n more tokens passed through every layer of
  /// caches [num_layers]. Runs an update when `delay` tokens have
  /// accumulated; returns whether it did. Throws if n exceeds tokens_until_update().
  bool after_tokens(int64_t n, const std::vector<LayerKvCache*>& caches);
  bool after_tokens(int64_t n, std::vector<LayerKvCache>& caches);

  /// Updates now with the buffered tokens (if any); returns whether it ran.
  bool flush(const std::vector<LayerKvCache*>& caches);
  bool flush(std::vector<LayerKvCache>& caches);

  /// Forgets the sequence: policy state, buffers, counters and statistics.
  void reset();

  /// One entry per update, layer and head, in that order.
  const std::vector<UpdateHeadStats>& statistics() const { return statistics_; }

  /// Mean fraction of the full cache retained, over all updates, layers and
  /// heads: sum of kept tokens / sum of tokens seen (1 before any update).
  double mean_retained_fraction() const;
  /// The same for one layer.
  double mean_retained_fraction(int layer) const;

 private:
  void run_update(const std::vector<LayerKvCache*>& caches);
  static std::vector<LayerKvCache*> pointers(std::vector<LayerKvCache>& caches);

  std::unique_ptr<MemoryPolicy> policy_;
  int num_layers_;
  ControllerOptions options_;
  std::vector<AttentionRecorder> recorders_;  // [layers], sized by the first recorded chunk
  std::vector<AttentionRecorder*> recorder_pointers_;  // [layers] into recorders_
  int64_t buffered_ = 0;
  int64_t tokens_seen_ = 0;
  int64_t num_updates_ = 0;
  std::vector<UpdateHeadStats> statistics_;
  // running sums for the retained fraction, kept even without statistics
  std::vector<double> kept_sum_, seen_sum_;  // [layers]
};

}  // namespace namm
