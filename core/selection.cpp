// Keep/evict from scores: threshold at zero, always the newest token, an
// optional cap, and the per-head or rectangular cache layout.
#include "core/selection.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace namm {

namespace {

// scores [T] with NaN turned to -inf (garbage never earns a place) and the
// newest token raised to +inf so that every rule below keeps it.
at::Tensor effective_scores(const at::Tensor& scores) {
  const double inf = std::numeric_limits<double>::infinity();
  at::Tensor effective = at::nan_to_num(scores.to(at::kFloat), -inf, inf, -inf);
  effective[-1] = inf;
  return effective;
}

}  // namespace

at::Tensor top_k_ascending(const at::Tensor& scores, int64_t k) {
  TORCH_CHECK(scores.dim() == 1, "top_k_ascending: scores must be [T], got ", scores.sizes());
  const int64_t num_tokens = scores.size(0);
  TORCH_CHECK(k >= 0 && k <= num_tokens, "top_k_ascending: k must be in [0, ", num_tokens,
              "], got ", k);
  const at::TensorOptions index_options = scores.options().dtype(at::kLong);
  if (k == 0) return at::empty({0}, index_options);
  if (k == num_tokens) return at::arange(num_tokens, index_options);
  // a stable descending sort of the reversed scores ranks equal scores newest first.
  const at::Tensor reversed = scores.flip({0});
  const at::Tensor order = std::get<1>(at::sort(reversed, /*stable=*/true, /*dim=*/0,
                                                /*descending=*/true));
  const at::Tensor chosen = (num_tokens - 1) - order.narrow(0, 0, k);  // back to original indices
  return std::get<0>(at::sort(chosen));
}

std::vector<at::Tensor> select_tokens(const std::vector<at::Tensor>& head_scores,
                                      const SelectionOptions& options) {
  TORCH_CHECK(options.cap >= 0, "selection cap must be >= 0 (0 = none), got ", options.cap);
  const size_t num_heads = head_scores.size();
  std::vector<at::Tensor> effective(num_heads);
  std::vector<int64_t> counts(num_heads, 0);  // K_h
  for (size_t h = 0; h < num_heads; ++h) {
    const at::Tensor& scores = head_scores[h];
    TORCH_CHECK(scores.dim() == 1, "selection: scores of head ", h, " must be [T], got ",
                scores.sizes());
    if (scores.size(0) == 0) continue;
    effective[h] = effective_scores(scores);
    int64_t count = effective[h].ge(0).sum().item<int64_t>();
    if (options.cap > 0) count = std::min(count, options.cap);
    counts[h] = count;
  }
  // rectangular: the layer's cache is as long as its longest head; each head
  // fills it with its own best tokens (never more than it has).
  if (options.layout == CacheLayout::kRectangular && num_heads > 0) {
    const int64_t widest = *std::max_element(counts.begin(), counts.end());
    for (size_t h = 0; h < num_heads; ++h) {
      if (effective[h].defined()) counts[h] = std::min(widest, effective[h].size(0));
    }
  }
  std::vector<at::Tensor> keep(num_heads);
  for (size_t h = 0; h < num_heads; ++h) {
    if (!effective[h].defined()) {
      keep[h] = at::empty({0}, head_scores[h].options().dtype(at::kLong));
    } else if (counts[h] == effective[h].size(0)) {
      keep[h] = at::arange(counts[h], effective[h].options().dtype(at::kLong));
    } else {
      keep[h] = top_k_ascending(effective[h], counts[h]);
    }
  }
  return keep;
}

CacheLayout parse_cache_layout(const std::string& text) {
  if (text == "per-head") return CacheLayout::kPerHead;
  if (text == "rectangular") return CacheLayout::kRectangular;
  throw std::invalid_argument("cache layout '" + text +
                              "': expected 'per-head' or 'rectangular'");
}

const char* to_string(CacheLayout layout) {
  switch (layout) {
    case CacheLayout::kPerHead:
      return "per-head";
    case CacheLayout::kRectangular:
      return "rectangular";
  }
  return "unknown";
}

}  // namespace namm
