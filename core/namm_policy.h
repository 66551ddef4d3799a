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
  /// features seen when the model's statistics are not frozen yet.
  const FeatureNormalizer& normalizer() const { return normalizer_; }

  /// The 25 features [T, recency_dim + F] of one head (normalised spectrogram
  /// EMA appended to the recency embedding), updating that head's state.
  /// Exposed for `namm score` and tests.
  at::Tensor head_features(int layer, int head, const HeadObservation& observation,
                           int64_t num_new_tokens);

 private:
  std::shared_ptr<const NammModel> model_;
  SpectrogramFeaturizer featurizer_;
  FeatureNormalizer normalizer_;
  std::map<int, std::vector<HeadSpectrogramState>> state_;  // layer -> heads
};

}  // namespace namm
