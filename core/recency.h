// Sinusoidal recency embedding of cached tokens.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace namm {

/// age = newest_position - position; dims [sin(age*f_k)..., cos(age*f_k)...]
/// for f_k = 1/max_freq^(k/(dim/2)), k = 0..dim/2-1.
/// positions: [T] int64 -> [T, dim] float32.
at::Tensor recency_embedding(const at::Tensor& positions, int64_t newest_position,
                             int64_t dim = 8, double max_freq = 50000.0);

}  // namespace namm
