// The strongest training-free eviction rules of the kvpress leaderboard, as
// scorers over what a host records (core/scorer_policy.h):
//
//   SnapKV     attention of the last `window` queries (the observation
//              window), averaged over them and smoothed by average pooling
//              over neighbouring tokens; the window's own tokens always stay.
//   PyramidKV  SnapKV's scores with layer-wise budgets: lower layers keep
//              more, upper layers fewer, linearly, the total over layers
//              unchanged (beta sets the ratio of the largest to the smallest).
//   AdaKV      SnapKV's scores with head-wise budgets: a layer's total
//              H * B is shared among its heads by one ranking over all of
//              them, each head guaranteed a floor of floor_share * B.
//   KeyDiff    keys least like the head's mean key direction (minus the
//              cosine similarity to the normalised mean of normalised keys).
//
// Every budget counts the protected tokens. The periodic update differs
// from a one-shot prefill press in one way: the observation window is the
// last queries of the tokens fed since the previous update (at most Q of them).
//
// Shape letters: Q new queries, T cached tokens of one head, H KV heads, D head width.
#pragma once

#include "core/scorer_policy.h"

#include <cstdint>
#include <vector>

namespace namm {

/// The observation-window options SnapKV, PyramidKV and AdaKV share.
struct WindowOptions {
  int64_t window = 64;       ///< observation window: the last queries whose attention scores tokens.
  int64_t kernel = 5;        ///< average-pooling width over neighbouring tokens (odd; 1 = none).
};

/// SnapKV's score of one head: attention [Q, T] -> [T] float32, the mean of the
/// last min(window, Q) rows, average-pooled with `kernel` (zero padding, as
/// torch's avg_pool1d with count_include_pad).
at::Tensor snapkv_scores(const at::Tensor& attention, const WindowOptions& options);

/// SnapKV.
class SnapKvPolicy : public ScorerPolicy {
 public:
  /// Throws std::invalid_argument unless window >= 1 and kernel is odd and >= 1.
  SnapKvPolicy(Budget budget, WindowOptions options);
  std::string name() const override { return "snapkv"; }
  PolicyNeeds needs() const override { return {true, false}; }
  void reset() override {}

 protected:
  std::vector<at::Tensor> score_layer(const LayerObservation& observation) override;
  int64_t protected_recent(const LayerObservation& observation) const override;
  const WindowOptions& window_options() const { return options_; }

 private:
  WindowOptions options_;
};

/// PyramidKV's budget of one layer: with b = B - window beyond the window,
/// the largest layer budget is 2b - b / beta (capped at tokens - window, the
/// smallest raised to keep the sum), the smallest b / beta, linear in
/// between from layer 0 down to layer L - 1; plus the window. L = 1 gives B.
/// The policy passes tokens_seen as tokens, the same for every layer, so the
/// layers' budgets sum to L * B (a layer holding fewer tokens keeps them all).
int64_t pyramid_layer_budget(int64_t budget, int64_t window, int64_t tokens, int layer, int num_layers, double beta);

/// PyramidKV.
class PyramidKvPolicy : public SnapKvPolicy {
 public:
  /// Throws std::invalid_argument unless beta >= 1 (and as SnapKvPolicy).
  PyramidKvPolicy(Budget budget, WindowOptions options, double beta = 20.0);
  std::string name() const override { return "pyramidkv"; }

 protected:
  std::vector<int64_t> head_budgets(const LayerObservation& observation, const std::vector<at::Tensor>& scores,
                                    int64_t budget) override;

 private:
  double beta_;
};

/// AdaKV's head budgets: per head, how many of the layer's H * budget tokens
/// it keeps when the protected (newest `window`) tokens and each head's top
/// round(floor_share * budget) tokens come first and the rest go to the
/// highest scores over all heads (ties: lower head, then newer token).
std::vector<int64_t> adakv_head_budgets(const std::vector<at::Tensor>& scores, int64_t budget, int64_t window,
                                        double floor_share);

/// AdaKV over SnapKV scores.
class AdaKvPolicy : public SnapKvPolicy {
 public:
  /// Throws std::invalid_argument unless 0 <= floor_share <= 1 (and as SnapKvPolicy).
  AdaKvPolicy(Budget budget, WindowOptions options, double floor_share = 0.2);
  std::string name() const override { return "adakv"; }

 protected:
  std::vector<int64_t> head_budgets(const LayerObservation& observation, const std::vector<at::Tensor>& scores,
                                    int64_t budget) override;

 private:
  double floor_share_;
};

/// KeyDiff's score of one head: keys [T, D] -> [T] float32, minus the cosine
/// similarity of each key to the normalised mean of the normalised keys.
at::Tensor keydiff_scores(const at::Tensor& keys);

/// KeyDiff; the newest token always stays.
class KeyDiffPolicy : public ScorerPolicy {
 public:
  explicit KeyDiffPolicy(Budget budget) : ScorerPolicy(budget) {}
  std::string name() const override { return "keydiff"; }
  PolicyNeeds needs() const override { return {false, true}; }
  void reset() override {}

 protected:
  std::vector<at::Tensor> score_layer(const LayerObservation& observation) override;
};

}  // namespace namm
