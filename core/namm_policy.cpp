// NammPolicy: per-sequence spectrogram state around a shared, immutable
// NammModel. One update per layer: features per head -> BAM scores ->
// selection over the layer's heads -> drop evicted tokens' state.
#include "core/namm_policy.h"

#include "core/bam.h"
#include "core/recency.h"
#include "core/selection.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <utility>

namespace namm {

namespace {

// Checks one head's observation: attention [Q, T] against positions [T], Q a
// positive multiple of hop, num_new_tokens within T. Messages carry values.
void check_head(const HeadObservation& head, int layer, size_t index, int64_t num_new_tokens,
                int64_t hop) {
  TORCH_CHECK(head.positions.defined() && head.positions.dim() == 1,
              "NammPolicy: layer ", layer, " head ", index, ": positions must be [T], got ",
              head.positions.defined() ? head.positions.sizes() : at::IntArrayRef{});
  TORCH_CHECK(head.attention.defined() && head.attention.dim() == 2,
              "NammPolicy: layer ", layer, " head ", index, ": attention must be [Q, T], got ",
              head.attention.defined() ? head.attention.sizes() : at::IntArrayRef{});
  const int64_t q = head.attention.size(0);
  const int64_t t = head.attention.size(1);
  TORCH_CHECK(t == head.positions.size(0), "NammPolicy: layer ", layer, " head ", index,
              ": attention [", q, ", ", t, "] does not match positions [",
              head.positions.size(0), "]");
  TORCH_CHECK(q > 0 && q % hop == 0, "NammPolicy: layer ", layer, " head ", index,
              ": Q=", q, " new queries must be a positive multiple of hop=", hop);
  TORCH_CHECK(num_new_tokens >= 0 && num_new_tokens <= t, "NammPolicy: layer ", layer,
              " head ", index, ": num_new_tokens=", num_new_tokens, " must be in [0, T=", t, "]");
}

}  // namespace

NammPolicy::NammPolicy(std::shared_ptr<const NammModel> model)
    : model_(std::move(model)),
      featurizer_(model_ ? model_->config.spectrogram : SpectrogramOptions{}) {
  TORCH_CHECK(model_ != nullptr, "NammPolicy: model must not be null");
  model_->config.validate();
  TORCH_CHECK(model_->params.defined() &&
                  model_->params.numel() == model_->config.bam.param_count(),
              "NammPolicy: model params have ",
              model_->params.defined() ? model_->params.numel() : int64_t{0},
              " values, the config needs ", model_->config.bam.param_count());
  normalizer_ = model_->normalizer;
}

void NammPolicy::reset() {
  // the normaliser's statistics are not per-sequence: while unfrozen they
  // pool over every sequence this policy sees, so they survive reset().
  state_.clear();
}

HeadSpectrogramState& NammPolicy::head_state(int layer, size_t head, int64_t num_old_tokens) {
  std::vector<HeadSpectrogramState>& heads = state_[layer];
  if (heads.size() <= head) heads.resize(head + 1);  // first sight of this head
  HeadSpectrogramState& state = heads[head];
  // the host must have applied the previous decision: the cache now holds
  // the kept tokens followed by the new ones.
  TORCH_CHECK(!state.ema.defined() || state.ema.size(0) == num_old_tokens, "NammPolicy: layer ",
              layer, " head ", head, ": state holds ", state.ema.defined() ? state.ema.size(0) : 0,
              " tokens but the cache has T - num_new_tokens = ", num_old_tokens,
              " old tokens (was the previous decision applied?)");
  return state;
}

at::Tensor NammPolicy::raw_spectrogram(int layer, size_t head, const HeadObservation& observation,
                                       int64_t num_new_tokens) {
  check_head(observation, layer, head, num_new_tokens, model_->config.spectrogram.hop);
  const int64_t num_tokens = observation.positions.size(0);
  HeadSpectrogramState& state = head_state(layer, head, num_tokens - num_new_tokens);
  return featurizer_.update(observation.attention, num_new_tokens, state);  // [T, F]
}

at::Tensor NammPolicy::scale_features(const at::Tensor& spectrogram, FeatureScaling scaling) const {
  if (scaling == FeatureScaling::kFrozenStats) return normalizer_.apply(spectrogram);
  // per head: over this head's cached tokens. A constant feature (one token,
  // or all tokens alike) becomes 0, the value of an average token.
  const at::Tensor x = spectrogram.to(at::kDouble);
  const at::Tensor mean = x.mean(0, /*keepdim=*/true);
  const at::Tensor var = (x - mean).square().mean(0, /*keepdim=*/true);
  // eps relative to the feature's own size, so a head that attends 100 times
  // more weakly is scaled the same, and exact ties are not blown up.
  const at::Tensor eps = 1e-12 * mean.square() + 1e-30;
  return (x - mean) / (var + eps).sqrt();
}

at::Tensor NammPolicy::assemble_features(const HeadObservation& observation,
                                         const at::Tensor& spectrogram) const {
  const NammConfig& config = model_->config;
  const at::Tensor normalized = scale_features(spectrogram, config.feature_scaling).to(at::kFloat);  // [T, F]
  if (config.recency_dim == 0) return normalized.contiguous();
  const int64_t num_tokens = observation.positions.size(0);
  // age is measured from the newest cached token of this head.
  const int64_t newest = num_tokens == 0 ? 0 : observation.positions.max().item<int64_t>();
  const at::Tensor recency = recency_embedding(observation.positions, newest, config.recency_dim,
                                               config.recency_max_freq);  // [T, recency_dim]
  return at::cat({recency, normalized}, 1);  // [T, recency_dim + F]
}

at::Tensor NammPolicy::head_features(int layer, int head, const HeadObservation& observation,
                                     int64_t num_new_tokens) {
  TORCH_CHECK(head >= 0, "NammPolicy::head_features: head must be >= 0, got ", head);
  const at::Tensor spectrogram =
      raw_spectrogram(layer, static_cast<size_t>(head), observation, num_new_tokens);
  normalizer_.observe(spectrogram);  // no-op once frozen
  return assemble_features(observation, spectrogram);
}

LayerDecision NammPolicy::update(const LayerObservation& observation) {
  const size_t num_heads = observation.heads.size();
  LayerDecision decision;
  if (num_heads == 0) return decision;
  const NammConfig& config = model_->config;

  // validate every head before any state changes, so a bad observation
  // leaves the policy as it was.
  for (size_t h = 0; h < num_heads; ++h) {
    const HeadObservation& head = observation.heads[h];
    check_head(head, observation.layer, h, observation.num_new_tokens, config.spectrogram.hop);
    head_state(observation.layer, h, head.positions.size(0) - observation.num_new_tokens);
  }
  std::vector<HeadSpectrogramState>& states = state_[observation.layer];
  TORCH_CHECK(states.size() == num_heads, "NammPolicy: layer ", observation.layer, " had ",
              states.size(), " heads, now ", num_heads);

  // raw spectrogram EMA of every head first, so that an unfrozen normaliser
  // pools its statistics over all heads of the layer before any is scaled.
  std::vector<at::Tensor> spectrograms(num_heads);  // [T_h, F]
  for (size_t h = 0; h < num_heads; ++h) {
    spectrograms[h] = featurizer_.update(observation.heads[h].attention,
                                         observation.num_new_tokens, states[h]);
  }
  for (const at::Tensor& spectrogram : spectrograms) normalizer_.observe(spectrogram);  // no-op once frozen

  std::vector<at::Tensor> scores(num_heads);  // [T_h]
  for (size_t h = 0; h < num_heads; ++h) {
    const at::Tensor features = assemble_features(observation.heads[h], spectrograms[h]);
    scores[h] = bam_scores(features, model_->params, config.bam);
  }
  const std::vector<at::Tensor> keep = select_tokens(scores, config.selection);

  decision.heads.resize(num_heads);
  for (size_t h = 0; h < num_heads; ++h) {
    // nothing to drop when the head keeps everything.
    if (keep[h].size(0) != scores[h].size(0)) states[h].keep_rows(keep[h]);
    decision.heads[h].keep = keep[h];
    decision.heads[h].scores = scores[h];
  }
  return decision;
}

}  // namespace namm
