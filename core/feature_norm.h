// Running standardisation of the spectrogram features.
//
// Mean and variance per feature, pooled over layers, heads and tokens, are
// accumulated while evolution's first generation runs, then frozen and stored
// with the model. Before any statistics exist the features pass unchanged.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace namm {

/// Per-feature running mean/variance (Chan's parallel merge), freezable.
class FeatureNormalizer {
 public:
  FeatureNormalizer() = default;
  explicit FeatureNormalizer(int64_t num_features);

  /// Folds rows [N, F] into the statistics unless frozen.
  void observe(const at::Tensor& rows);
  /// (rows - mean) / sqrt(var + eps): [N, F] -> [N, F]; identity while count == 0.
  at::Tensor apply(const at::Tensor& rows) const;

  void freeze() { frozen_ = true; }
  bool frozen() const { return frozen_; }
  double count() const { return count_; }
  const at::Tensor& mean() const { return mean_; }      ///< [F] float64
  const at::Tensor& variance() const { return var_; }   ///< [F] float64 (population)
  /// Restores stored statistics (frozen).
  void set(const at::Tensor& mean, const at::Tensor& variance, double count);

  double eps = 1e-5;

 private:
  at::Tensor mean_, var_;
  double count_ = 0;
  bool frozen_ = false;
};

}  // namespace namm
