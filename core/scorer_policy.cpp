// scorer_policy: see scorer_policy.h
#include "core/scorer_policy.h"

#include "core/selection.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

namespace namm {

int64_t check_head_observation(const char* policy, const LayerObservation& observation, size_t h,
                               bool need_attention, bool need_keys) {
  const HeadObservation& head = observation.heads[h];
  TORCH_CHECK(head.positions.defined(), policy, ": layer ", observation.layer, " head ", h,
              " has no positions");
  TORCH_CHECK(head.positions.dim() == 1 && head.positions.scalar_type() == at::kLong, policy,
              ": layer ", observation.layer, " head ", h, " positions must be [T] int64, got ",
              head.positions.sizes(), " ", head.positions.scalar_type());
  const int64_t t = head.positions.size(0);
  if (need_attention) {
    TORCH_CHECK(head.attention.defined(), policy, ": layer ", observation.layer, " head ", h,
                " has no attention rows (the host must buffer them: needs().attention)");
    TORCH_CHECK(head.attention.dim() == 2 && head.attention.size(1) == t, policy, ": layer ",
                observation.layer, " head ", h, " attention ", head.attention.sizes(),
                " does not match [Q, T] with T = ", t, " positions");
  }
  if (need_keys) {
    TORCH_CHECK(head.keys.defined(), policy, ": layer ", observation.layer, " head ", h,
                " has no keys (the host must hand them over: needs().keys)");
    TORCH_CHECK(head.keys.dim() == 2 && head.keys.size(0) == t, policy, ": layer ",
                observation.layer, " head ", h, " keys ", head.keys.sizes(),
                " do not match [T, D] with T = ", t, " positions");
  }
  return t;
}

// the budget of a layer; a fractional budget is meaningless if tokens_seen
// undercounts the cache, so that is a host bug worth stopping on.
int64_t resolve_layer_budget(const char* policy, const Budget& budget, const LayerObservation& observation) {
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    const HeadObservation& head = observation.heads[h];
    const int64_t t = head.positions.defined() ? head.positions.size(0) : 0;
    TORCH_CHECK(observation.tokens_seen >= t, policy, ": layer ", observation.layer,
                " tokens_seen (", observation.tokens_seen, ") is smaller than head ", h,
                "'s cache (", t, " tokens)");
  }
  return budget.resolve(observation.tokens_seen);
}

at::Tensor keep_by_score(const at::Tensor& scores, int64_t budget, int64_t protected_recent) {
  TORCH_CHECK(scores.dim() == 1, "keep_by_score: scores must be [T], got ", scores.sizes());
  const int64_t t = scores.size(0);
  const at::TensorOptions index = at::TensorOptions().dtype(at::kLong).device(scores.device());
  if (t <= budget) return at::arange(t, index);
  budget = std::max<int64_t>(budget, 0);
  const at::Tensor ranked = scores.to(at::kFloat).masked_fill(scores.isnan(), -std::numeric_limits<float>::infinity());
  const int64_t recent = std::clamp<int64_t>(protected_recent, 0, budget);
  const at::Tensor window = at::arange(t - recent, t, index);                         // [recent]
  const at::Tensor older = top_k_ascending(ranked.narrow(0, 0, t - recent), budget - recent).to(index.device());
  return at::cat({older, window});  // ascending: every older index precedes the window
}

LayerDecision ScorerPolicy::update(const LayerObservation& observation) {
  const int64_t budget = resolve_layer_budget(name().c_str(), budget_, observation);
  const std::vector<at::Tensor> scores = score_layer(observation);  // [H] x [T_h]
  TORCH_CHECK(scores.size() == observation.heads.size(), name(), ": ", scores.size(), " score rows for ",
              observation.heads.size(), " heads");
  const std::vector<int64_t> budgets = head_budgets(observation, scores, budget);
  TORCH_CHECK(budgets.size() == scores.size(), name(), ": ", budgets.size(), " head budgets for ", scores.size(), " heads");
  const int64_t recent = protected_recent(observation);
  LayerDecision decision;
  std::vector<at::Tensor> keep;
  for (size_t h = 0; h < scores.size(); ++h) {
    TORCH_CHECK(scores[h].dim() == 1 && scores[h].size(0) == observation.heads[h].positions.size(0), name(),
                ": layer ", observation.layer, " head ", h, " scores ", scores[h].sizes(), " for ",
                observation.heads[h].positions.size(0), " cached tokens");
    keep.push_back(keep_by_score(scores[h], budgets[h], recent));
    decision.heads.push_back({keep.back(), scores[h]});
  }
  kept(observation, keep);
  return decision;
}

std::vector<int64_t> ScorerPolicy::head_budgets(const LayerObservation& observation, const std::vector<at::Tensor>&,
                                                int64_t budget) {
  return std::vector<int64_t>(observation.heads.size(), budget);
}

int64_t ScorerPolicy::protected_recent(const LayerObservation&) const { return 1; }

void ScorerPolicy::kept(const LayerObservation&, const std::vector<at::Tensor>&) {}

}  // namespace namm
