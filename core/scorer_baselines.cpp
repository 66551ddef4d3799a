// scorer_baselines: see scorer_baselines.h
#include "core/scorer_baselines.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <tuple>

namespace namm {
namespace {

void check_window(const char* policy, const WindowOptions& options) {
  if (options.window < 1) {
    throw std::invalid_argument(std::string(policy) + ": window must be >= 1, got " + std::to_string(options.window));
  }
  if (options.kernel < 1 || options.kernel % 2 == 0) {
    throw std::invalid_argument(std::string(policy) + ": kernel must be odd and >= 1, got " +
                                std::to_string(options.kernel));
  }
}

}  // namespace

at::Tensor snapkv_scores(const at::Tensor& attention, const WindowOptions& options) {
  TORCH_CHECK(attention.dim() == 2 && attention.size(0) >= 1, "snapkv: attention must be [Q, T] with Q >= 1, got ",
              attention.sizes());
  const int64_t q = attention.size(0);
  const int64_t w = std::min(options.window, q);
  at::Tensor scores = attention.narrow(0, q - w, w).to(at::kFloat).mean(0);  // [T]
  if (options.kernel > 1 && scores.size(0) > 0) {
    // zero-padded moving average, as avg_pool1d(kernel, stride 1, padding kernel / 2)
    scores = at::avg_pool1d(scores.view({1, 1, -1}), {options.kernel}, {1}, {options.kernel / 2},
                            /*ceil_mode=*/false, /*count_include_pad=*/true)
                 .view({-1});
  }
  return scores;
}

SnapKvPolicy::SnapKvPolicy(Budget budget, WindowOptions options) : ScorerPolicy(budget), options_(options) {
  check_window("snapkv", options_);
}

std::vector<at::Tensor> SnapKvPolicy::score_layer(const LayerObservation& observation) {
  std::vector<at::Tensor> scores;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    check_head_observation(name().c_str(), observation, h, /*need_attention=*/true, /*need_keys=*/false);
    scores.push_back(snapkv_scores(observation.heads[h].attention, options_));
  }
  return scores;
}

int64_t SnapKvPolicy::protected_recent(const LayerObservation& observation) const {
  // the window's queries are the newest tokens: never evict what the window is
  return std::max<int64_t>(1, std::min(options_.window, observation.num_new_tokens));
}

int64_t pyramid_layer_budget(int64_t budget, int64_t window, int64_t tokens, int layer, int num_layers, double beta) {
  if (num_layers <= 1 || budget <= window) return budget;
  const double beyond = static_cast<double>(budget - window);  // b
  double smallest = beyond / beta;
  double largest = 2.0 * beyond - smallest;
  const double room = static_cast<double>(std::max<int64_t>(tokens - window, 0));
  if (largest >= room) {
    largest = room;
    smallest = 2.0 * beyond - largest;
  }
  const double step = (largest - smallest) / static_cast<double>(num_layers - 1);
  return static_cast<int64_t>(std::llround(largest - static_cast<double>(layer) * step)) + window;
}

PyramidKvPolicy::PyramidKvPolicy(Budget budget, WindowOptions options, double beta)
    : SnapKvPolicy(budget, options), beta_(beta) {
  if (!(beta >= 1.0) || !std::isfinite(beta)) {
    throw std::invalid_argument("pyramidkv: beta must be >= 1, got " + std::to_string(beta));
  }
}

std::vector<int64_t> PyramidKvPolicy::head_budgets(const LayerObservation& observation,
                                                   const std::vector<at::Tensor>& scores, int64_t budget) {
  // the cap uses tokens_seen, the same for every layer: a layer's own cache
  // length would raise the upper layers' budgets past the pyramid's total
  const int64_t layer_budget = pyramid_layer_budget(budget, protected_recent(observation), observation.tokens_seen,
                                                    observation.layer, observation.num_layers, beta_);
  return std::vector<int64_t>(scores.size(), std::max<int64_t>(layer_budget, 1));
}

std::vector<int64_t> adakv_head_budgets(const std::vector<at::Tensor>& scores, int64_t budget, int64_t window,
                                        double floor_share) {
  const size_t heads = scores.size();
  std::vector<int64_t> out(heads, 0);
  const int64_t floor = std::llround(floor_share * static_cast<double>(budget));
  // (score, head, index): protected and floor tokens rank above every score
  std::vector<std::tuple<float, int64_t, int64_t>> ranked;
  int64_t total_tokens = 0;
  for (size_t h = 0; h < heads; ++h) {
    const at::Tensor s = scores[h].to(at::kCPU, at::kFloat).contiguous();
    const int64_t t = s.size(0);
    total_tokens += t;
    const float* data = s.data_ptr<float>();
    std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(t - window, 0)));
    std::iota(order.begin(), order.end(), 0);
    // the head's own top `floor` among its unprotected tokens (ties: newer first)
    const auto better = [&](int64_t a, int64_t b) {
      const float x = std::isnan(data[a]) ? -INFINITY : data[a], y = std::isnan(data[b]) ? -INFINITY : data[b];
      return x > y || (x == y && a > b);
    };
    std::sort(order.begin(), order.end(), better);
    for (size_t r = 0; r < order.size(); ++r) {
      const int64_t i = order[r];
      const float value = static_cast<int64_t>(r) < floor ? INFINITY : (std::isnan(data[i]) ? -INFINITY : data[i]);
      ranked.emplace_back(value, static_cast<int64_t>(h), i);
    }
    out[h] = t - static_cast<int64_t>(order.size());  // the protected window
  }
  const int64_t total_budget = budget * static_cast<int64_t>(heads);
  if (total_tokens <= total_budget) {
    for (size_t h = 0; h < heads; ++h) out[h] = scores[h].size(0);
    return out;
  }
  int64_t left = total_budget;
  for (int64_t kept : out) left -= kept;
  left = std::clamp<int64_t>(left, 0, static_cast<int64_t>(ranked.size()));
  std::partial_sort(ranked.begin(), ranked.begin() + left, ranked.end(), [](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
    if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) < std::get<1>(b);
    return std::get<2>(a) > std::get<2>(b);
  });
  for (int64_t r = 0; r < left; ++r) ++out[static_cast<size_t>(std::get<1>(ranked[static_cast<size_t>(r)]))];
  return out;
}

AdaKvPolicy::AdaKvPolicy(Budget budget, WindowOptions options, double floor_share)
    : SnapKvPolicy(budget, options), floor_share_(floor_share) {
  if (!(floor_share >= 0.0 && floor_share <= 1.0)) {
    throw std::invalid_argument("adakv: floor_share must be in [0, 1], got " + std::to_string(floor_share));
  }
}

std::vector<int64_t> AdaKvPolicy::head_budgets(const LayerObservation& observation,
                                               const std::vector<at::Tensor>& scores, int64_t budget) {
  return adakv_head_budgets(scores, budget, std::min(protected_recent(observation), budget), floor_share_);
}

at::Tensor keydiff_scores(const at::Tensor& keys) {
  TORCH_CHECK(keys.dim() == 2, "keydiff: keys must be [T, D], got ", keys.sizes());
  if (keys.size(0) == 0) return at::empty({0}, keys.options().dtype(at::kFloat));
  const at::Tensor k = keys.to(at::kFloat);
  const at::Tensor unit = k / k.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);  // [T, D]
  at::Tensor anchor = unit.mean(0);                                               // [D]
  anchor = anchor / anchor.norm().clamp_min(1e-12);
  return -at::mv(unit, anchor);  // [T]: minus the cosine similarity
}

std::vector<at::Tensor> KeyDiffPolicy::score_layer(const LayerObservation& observation) {
  std::vector<at::Tensor> scores;
  for (size_t h = 0; h < observation.heads.size(); ++h) {
    check_head_observation(name().c_str(), observation, h, /*need_attention=*/false, /*need_keys=*/true);
    scores.push_back(keydiff_scores(observation.heads[h].keys));
  }
  return scores;
}

}  // namespace namm
