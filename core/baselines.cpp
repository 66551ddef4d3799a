// The baselines: full cache, recency, StreamingLLM, H2O, L2 key norm, TOVA and
// random, each a plain rule over one head's cached tokens at a budget.
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

// a float32 CPU copy of scores [T] as a vector; NaN ranks lowest.
std::vector<float> to_vector(const at::Tensor& scores) {
  at::Tensor s = scores.to(at::kCPU, at::kFloat).contiguous();
  std::vector<float> out(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
  for (float& v : out) {
    if (std::isnan(v)) v = -std::numeric_limits<float>::infinity();
  }
  return out;
}

// indices of the k highest scores among [0, end), ties toward newer (higher
// index), unsorted.
std::vector<int64_t> top_k(const std::vector<float>& scores, int64_t k, int64_t end) {
  std::vector<int64_t> order(static_cast<size_t>(end));
  std::iota(order.begin(), order.end(), 0);
  k = std::max<int64_t>(0, std::min(k, end));
  const auto better = [&](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a > b);
  };
  std::nth_element(order.begin(), order.begin() + k, order.end(), better);
  order.resize(static_cast<size_t>(k));
  return order;
}

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

LayerDecision RecencyPolicy::update(const LayerObservation& observation) {
  const int64_t budget = resolve_layer_budget("recency", budget_, observation);
  LayerDecision decision;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    const at::Tensor& positions = observation.heads[h].positions;
    const int64_t t = check_head_observation("recency", observation, h, false, false);
    // positions ascend, so the last B indices are the B most recent tokens.
    decision.heads.push_back(
        {keep_range(std::max<int64_t>(0, t - budget), t, positions), positions.to(at::kFloat)});
  }
  return decision;
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

H2oPolicy::H2oPolicy(Budget budget, double recent_share) : budget_(budget), recent_share_(recent_share) {
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

LayerDecision H2oPolicy::update(const LayerObservation& observation) {
  const int64_t budget = resolve_layer_budget("h2o", budget_, observation);
  std::vector<at::Tensor>& sums = accumulated_[observation.layer];
  if (sums.empty()) sums.resize(observation.heads.size());
  TORCH_CHECK(sums.size() == observation.heads.size(), "h2o: layer ", observation.layer, " has ",
              observation.heads.size(), " heads but had ", sums.size(), " at the previous update");
  LayerDecision decision;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    const HeadObservation& head = observation.heads[h];
    const int64_t t = check_head_observation("h2o", observation, h, true, false);
    // column sums over the new queries: [Q, T] -> [T].
    at::Tensor received = head.attention.to(at::kFloat).sum(0);
    at::Tensor total;
    if (!sums[h].defined()) {
      total = received;  // first update: every cached token is new.
    } else {
      const int64_t old = sums[h].size(0);
      TORCH_CHECK(old + observation.num_new_tokens == t, "h2o: layer ", observation.layer, " head ", h,
                  " kept ", old, " tokens last update plus num_new_tokens ", observation.num_new_tokens,
                  " != ", t, " cached tokens now");
      // new tokens start from zero; old ones add what the new queries gave them.
      total = at::cat({sums[h], at::zeros({observation.num_new_tokens}, received.options())}) + received;
    }
    std::vector<int64_t> keep;
    if (t <= budget) {
      append_range(keep, 0, t);
    } else {
      // the recent window holds at least the newest token.
      const int64_t recent = std::max<int64_t>(
          1, std::min<int64_t>(budget, std::llround(recent_share_ * static_cast<double>(budget))));
      keep = top_k(to_vector(total), budget - recent, t - recent);
      append_range(keep, t - recent, t);
    }
    at::Tensor kept = to_keep(keep, head.positions);
    sums[h] = total.index_select(0, kept.to(total.device()));  // [K], aligned with the kept cache
    decision.heads.push_back({kept, total});
  }
  return decision;
}

LayerDecision L2NormPolicy::update(const LayerObservation& observation) {
  const int64_t budget = resolve_layer_budget("l2", budget_, observation);
  LayerDecision decision;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    const HeadObservation& head = observation.heads[h];
    const int64_t t = check_head_observation("l2", observation, h, false, true);
    // [T, D] -> [T]; low key norms are the tokens attention tends to need.
    at::Tensor scores = -at::norm(head.keys.to(at::kFloat), 2, {1});
    std::vector<int64_t> keep;
    if (t <= budget) {
      append_range(keep, 0, t);
    } else {
      keep = top_k(to_vector(scores), budget - 1, t - 1);
      keep.push_back(t - 1);  // the newest token always stays.
    }
    decision.heads.push_back({to_keep(keep, head.positions), scores});
  }
  return decision;
}

LayerDecision TovaPolicy::update(const LayerObservation& observation) {
  const int64_t budget = resolve_layer_budget("tova", budget_, observation);
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
    at::Tensor mean = at::stack(rows).mean(0);  // [H, T] -> [T]
    for (at::Tensor& row : rows) row = mean;
  }
  LayerDecision decision;
  for (size_t h = 0; h < num_heads; ++h) {
    const int64_t t = rows[h].size(0);
    const at::Tensor& positions = observation.heads[h].positions;
    if (t <= budget) {
      decision.heads.push_back({keep_range(0, t, positions), rows[h]});
    } else if (shared && h > 0) {
      decision.heads.push_back({decision.heads[0].keep, rows[h]});
    } else {
      decision.heads.push_back({to_keep(top_k(to_vector(rows[h]), budget, t), positions), rows[h]});
    }
  }
  return decision;
}

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
