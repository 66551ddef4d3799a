// The baselines: full cache, recency, StreamingLLM, H2O, L2 key norm, TOVA and
// random, each a plain rule over one head's cached tokens at a budget (the
// scorers among them leave the choice to core/scorer_policy.h).
#include "core/baselines.h"

#include "core/scorer_policy.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

namespace namm {
namespace {

// keep [K] int64 ascending on the device of like.
at::Tensor to_keep(std::vector<int64_t> indices, const at::Tensor& like) {
  std::sort(indices.begin(), indices.end());
  return at::tensor(indices, at::TensorOptions().dtype(at::kLong)).to(like.device());
}

at::Tensor keep_range(int64_t begin, int64_t end, const at::Tensor& like) {
  return at::arange(begin, end, like.options().dtype(at::kLong));
}

// appends the indices [begin, end).
void append_range(std::vector<int64_t>& indices, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) indices.push_back(i);
}

}  // namespace

LayerDecision FullCachePolicy::update(const LayerObservation& observation) {
  LayerDecision decision;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    const int64_t t = check_head_observation("full", observation, h, false, false);
    decision.heads.push_back({keep_range(0, t, observation.heads[h].positions), at::Tensor()});
  }
  return decision;
}

std::vector<at::Tensor> RecencyPolicy::score_layer(const LayerObservation& observation) {
  // positions ascend, so the B best-scored are the B most recent tokens
  std::vector<at::Tensor> scores;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    check_head_observation("recency", observation, h, false, false);
    scores.push_back(observation.heads[h].positions.to(at::kFloat));
  }
  return scores;
}

StreamingLlmPolicy::StreamingLlmPolicy(Budget budget, int64_t sinks) : budget_(budget), sinks_(sinks) {
  if (sinks < 0) {
    throw std::invalid_argument("streaming: sinks must be >= 0, got " + std::to_string(sinks));
  }
}

LayerDecision StreamingLlmPolicy::update(const LayerObservation& observation) {
  const int64_t budget = resolve_layer_budget("streaming", budget_, observation);
  LayerDecision decision;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    const at::Tensor& positions = observation.heads[h].positions;
    const int64_t t = check_head_observation("streaming", observation, h, false, false);
    // sinks are the cached tokens whose sequence position is < sinks_: a
    // prefix, since positions ascend; earlier evictions may have thinned it.
    const int64_t cached_sinks = (positions < sinks_).sum().item<int64_t>();
    at::Tensor scores = positions.to(at::kFloat);
    if (t > 0 && cached_sinks > 0) {
      const float above_newest = positions[t - 1].item<float>() + 1.0f;
      scores.narrow(0, 0, cached_sinks).fill_(above_newest);
    }
    if (t <= budget) {
      decision.heads.push_back({keep_range(0, t, positions), scores});
      continue;
    }
    // the newest token outranks sinks when the budget cannot hold both.
    const int64_t kept_sinks = std::min(cached_sinks, budget - 1);
    std::vector<int64_t> keep;
    append_range(keep, 0, kept_sinks);
    append_range(keep, t - (budget - kept_sinks), t);
    decision.heads.push_back({to_keep(keep, positions), scores});
  }
  return decision;
}

H2oPolicy::H2oPolicy(Budget budget, double recent_share) : ScorerPolicy(budget), recent_share_(recent_share) {
  if (!(recent_share >= 0.0 && recent_share <= 1.0)) {
    throw std::invalid_argument("h2o: recent_share must be in [0, 1], got " +
                                std::to_string(recent_share));
  }
}

at::Tensor H2oPolicy::accumulated(int layer, int head) const {
  const auto found = accumulated_.find(layer);
  if (found == accumulated_.end() || head < 0 || head >= static_cast<int>(found->second.size())) {
    return at::Tensor();
  }
  return found->second[static_cast<size_t>(head)];
}

std::vector<at::Tensor> H2oPolicy::score_layer(const LayerObservation& observation) {
  const std::vector<at::Tensor>& sums = accumulated_[observation.layer];
  TORCH_CHECK(sums.empty() || sums.size() == observation.heads.size(), "h2o: layer ", observation.layer, " has ",
              observation.heads.size(), " heads but had ", sums.size(), " at the previous update");
  totals_.clear();
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    const HeadObservation& head = observation.heads[h];
    const int64_t t = check_head_observation("h2o", observation, h, true, false);
    // column sums over the new queries: [Q, T] -> [T].
    const at::Tensor received = head.attention.to(at::kFloat).sum(0);
    if (sums.empty() || !sums[h].defined()) {
      totals_.push_back(received);  // first update: every cached token is new.
      continue;
    }
    const int64_t old = sums[h].size(0);
    TORCH_CHECK(old + observation.num_new_tokens == t, "h2o: layer ", observation.layer, " head ", h, " kept ", old,
                " tokens last update plus num_new_tokens ", observation.num_new_tokens, " != ", t,
                " cached tokens now");
    // new tokens start from zero; old ones add what the new queries gave them.
    totals_.push_back(at::cat({sums[h], at::zeros({observation.num_new_tokens}, received.options())}) + received);
  }
  return totals_;
}

int64_t H2oPolicy::protected_recent(const LayerObservation& observation) const {
  // the recent window holds at least the newest token.
  const int64_t budget = resolve_layer_budget("h2o", this->budget(), observation);
  return std::max<int64_t>(1, std::min<int64_t>(budget, std::llround(recent_share_ * static_cast<double>(budget))));
}

void H2oPolicy::kept(const LayerObservation& observation, const std::vector<at::Tensor>& keep) {
  std::vector<at::Tensor>& sums = accumulated_[observation.layer];
  sums.resize(keep.size());
  for (size_t h = 0; h < keep.size(); ++h) {
    sums[h] = totals_[h].index_select(0, keep[h].to(totals_[h].device()));  // [K], aligned with the kept cache
  }
  totals_.clear();
}

std::vector<at::Tensor> L2NormPolicy::score_layer(const LayerObservation& observation) {
  std::vector<at::Tensor> scores;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    check_head_observation("l2", observation, h, false, true);
    // [T, D] -> [T]; low key norms are the tokens attention tends to need.
    scores.push_back(-at::norm(observation.heads[h].keys.to(at::kFloat), 2, {1}));
  }
  return scores;
}

std::vector<at::Tensor> TovaPolicy::score_layer(const LayerObservation& observation) {
  const size_t num_heads = observation.heads.size();
  std::vector<at::Tensor> rows;  // per head [T]: the last query's attention
  for (size_t h = 0; h < num_heads; ++h) {
    const HeadObservation& head = observation.heads[h];
    check_head_observation("tova", observation, h, true, false);
    TORCH_CHECK(head.attention.size(0) >= 1, "tova: layer ", observation.layer, " head ", h,
                " has no query rows (attention ", head.attention.sizes(), ")");
    rows.push_back(head.attention[head.attention.size(0) - 1].to(at::kFloat));
  }
  // heads holding the same tokens rank them together, as TOVA averages heads.
  bool shared = num_heads > 1;
  for (size_t h = 1; h < num_heads && shared; ++h) {
    shared = at::equal(observation.heads[h].positions, observation.heads[0].positions);
  }
  if (shared) {
    const at::Tensor mean = at::stack(rows).mean(0);  // [H, T] -> [T]
    for (at::Tensor& row : rows) row = mean;
  }
  return rows;
}

int64_t TovaPolicy::protected_recent(const LayerObservation&) const { return 0; }

LayerDecision RandomPolicy::update(const LayerObservation& observation) {
  const int64_t budget = resolve_layer_budget("random", budget_, observation);
  LayerDecision decision;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    const at::Tensor& positions = observation.heads[h].positions;
    const int64_t t = check_head_observation("random", observation, h, false, false);
    // one generator per draw, seeded by (seed, draw number): reproducible
    // without carrying generator state across resets.
    const uint64_t draw = draws_++;
    std::seed_seq seq{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32),
                      static_cast<uint32_t>(draw), static_cast<uint32_t>(draw >> 32)};
    std::mt19937_64 rng(seq);
    if (t <= budget) {
      decision.heads.push_back({keep_range(0, t, positions), at::Tensor()});
      continue;
    }
    // partial Fisher-Yates: the first B - 1 of the older tokens, plus the newest.
    std::vector<int64_t> pool(static_cast<size_t>(t - 1));
    std::iota(pool.begin(), pool.end(), 0);
    for (int64_t i = 0; i < budget - 1; ++i) {
      std::uniform_int_distribution<int64_t> pick(i, t - 2);
      std::swap(pool[i], pool[pick(rng)]);
    }
    pool.resize(static_cast<size_t>(budget - 1));
    pool.push_back(t - 1);
    decision.heads.push_back({to_keep(pool, positions), at::Tensor()});
  }
  return decision;
}

}  // namespace namm
