// Sinusoidal embedding of a cached token's age (transformer-style positional
// encoding applied to age, so it is invariant to absolute position).
#include "core/recency.h"

#include <ATen/ATen.h>

namespace namm {

at::Tensor recency_embedding(const at::Tensor& positions, int64_t newest_position, int64_t dim,
                             double max_freq) {
  TORCH_CHECK(positions.dim() == 1, "recency_embedding: positions must be [T], got ",
              positions.sizes());
  TORCH_CHECK(dim > 0 && dim % 2 == 0, "recency_embedding: dim must be even and positive, got ",
              dim);
  TORCH_CHECK(max_freq > 0, "recency_embedding: max_freq must be positive, got ", max_freq);
  const int64_t half = dim / 2;
  // f_k = 1 / max_freq^(k / half), k = 0..half-1.
  const at::Tensor k = at::arange(half, at::kDouble);
  const at::Tensor freqs = at::pow(max_freq, -k / static_cast<double>(half));  // [dim/2]
  const at::Tensor age =
      (static_cast<double>(newest_position) - positions.to(at::kDouble)).unsqueeze(1);  // [T, 1]
  const at::Tensor angles = age * freqs;                                        // [T, dim/2]
  return at::cat({at::sin(angles), at::cos(angles)}, 1).to(at::kFloat);         // [T, dim]
}

}  // namespace namm
