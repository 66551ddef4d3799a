// The NAMM as a MemoryPolicy: per-sequence feature state around a shared model.
#pragma once

#include "core/memory_policy.h"
#include "core/namm_model.h"

#include <map>
#include <memory>
#include <vector>

namespace namm {

/// Scores and selects tokens with a NammModel. One instance per sequence.
class NammPolicy : public MemoryPolicy {
 public:
  explicit NammPolicy(std::shared_ptr<const NammModel> model);

  std::string name() const override { return "namm"; }
  PolicyNeeds needs() const override { return {true, false}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override;

  /// The normaliser in use: a copy of the model's; it keeps learning from the
  /// features seen when the model's statistics are not frozen yet (pooled
  /// over layers, heads, tokens and sequences: reset() keeps it).
  const FeatureNormalizer& normalizer() const { return normalizer_; }

  /// The 25 features [T, recency_dim + F] of one head (scaled spectrogram
  /// EMA appended to the recency embedding), updating that head's state.
  /// Exposed for `namm score` and tests.
  at::Tensor head_features(int layer, int head, const HeadObservation& observation,
                           int64_t num_new_tokens);

 private:
  /// The state of one head, created on first sight; checks that it holds
  /// num_old_tokens rows (T - num_new_tokens) when it exists.
  HeadSpectrogramState& head_state(int layer, size_t head, int64_t num_old_tokens);
  /// Validates one head and advances its spectrogram state: -> [T, F] raw EMA.
  at::Tensor raw_spectrogram(int layer, size_t head, const HeadObservation& observation,
                             int64_t num_new_tokens);
  /// The raw spectrogram EMA [T, F] on the model's common scale (NammConfig::feature_scaling).
  at::Tensor scale_features(const at::Tensor& spectrogram, FeatureScaling scaling) const;
  /// [recency(T), scaled spectrogram [T, F]] -> [T, recency_dim + F].
  at::Tensor assemble_features(const HeadObservation& observation,
                               const at::Tensor& spectrogram) const;

  std::shared_ptr<const NammModel> model_;
  SpectrogramFeaturizer featurizer_;
  FeatureNormalizer normalizer_;
  std::map<int, std::vector<HeadSpectrogramState>> state_;  // layer -> heads
};

}  // namespace namm
