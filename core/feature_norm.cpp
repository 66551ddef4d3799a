// Running per-feature mean and variance. Batches are merged with Chan et al.'s
// parallel formula so that the statistics do not depend on how the rows were
// split across calls (layers, heads, updates); accumulated in float64.
#include "core/feature_norm.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>

namespace namm {

FeatureNormalizer::FeatureNormalizer(int64_t num_features) {
  TORCH_CHECK(num_features > 0, "FeatureNormalizer: num_features must be positive, got ",
              num_features);
  mean_ = at::zeros({num_features}, at::kDouble);
  var_ = at::zeros({num_features}, at::kDouble);
}

void FeatureNormalizer::observe(const at::Tensor& rows) {
  if (frozen_) return;
  TORCH_CHECK(rows.dim() == 2, "FeatureNormalizer::observe: rows must be [N, F], got ",
              rows.sizes());
  if (!mean_.defined()) {
    mean_ = at::zeros({rows.size(1)}, at::kDouble);
    var_ = at::zeros({rows.size(1)}, at::kDouble);
  }
  TORCH_CHECK(rows.size(1) == mean_.size(0), "FeatureNormalizer::observe: rows have ",
              rows.size(1), " features, statistics have ", mean_.size(0));
  const int64_t n = rows.size(0);
  if (n == 0) return;
  const at::Tensor x = rows.to(at::kDouble);                        // [N, F]
  const at::Tensor batch_mean = x.mean(0);                          // [F]
  const at::Tensor batch_var = (x - batch_mean).pow(2).mean(0);     // [F] population
  const double na = count_;
  const double nb = static_cast<double>(n);
  const double total = na + nb;
  const at::Tensor delta = batch_mean - mean_;
  // M2 of the union = M2_a + M2_b + delta^2 * na * nb / (na + nb).
  const at::Tensor m2 = var_ * na + batch_var * nb + delta.pow(2) * (na * nb / total);
  mean_ = mean_ + delta * (nb / total);
  var_ = m2 / total;
  count_ = total;
}

at::Tensor FeatureNormalizer::apply(const at::Tensor& rows) const {
  if (count_ == 0) return rows;
  TORCH_CHECK(rows.dim() >= 1 && rows.size(-1) == mean_.size(0),
              "FeatureNormalizer::apply: rows ", rows.sizes(), " do not end in ", mean_.size(0),
              " features");
  const at::Tensor scale = at::rsqrt(var_ + eps);
  return ((rows.to(at::kDouble) - mean_) * scale).to(rows.scalar_type());
}

void FeatureNormalizer::set(const at::Tensor& mean, const at::Tensor& variance, double count) {
  TORCH_CHECK(mean.dim() == 1 && variance.dim() == 1 && mean.size(0) == variance.size(0),
              "FeatureNormalizer::set: mean ", mean.sizes(), " and variance ", variance.sizes(),
              " must be equal-length vectors");
  TORCH_CHECK(count >= 0, "FeatureNormalizer::set: count must be >= 0, got ", count);
  mean_ = mean.to(at::kDouble).contiguous().clone();
  var_ = variance.to(at::kDouble).contiguous().clone();
  count_ = count;
  frozen_ = true;
}

}  // namespace namm
