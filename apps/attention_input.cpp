#include "apps/attention_input.h"

#include "core/npy.h"

#include <ATen/ATen.h>

#include <stdexcept>

namespace namm::app {

at::Tensor read_attention_stack(const std::string& path, int64_t hop) {
  const at::Tensor attention = read_npy(path);
  const auto fail = [&](const std::string& why) { return std::runtime_error(path + ": " + why); };
  if (attention.dim() != 3) {
    throw fail("expected [heads, queries, keys], got " + std::to_string(attention.dim()) + " dimensions");
  }
  if (attention.scalar_type() != at::kFloat) throw fail("expected float32 attention");
  const int64_t heads = attention.size(0), queries = attention.size(1), keys = attention.size(2);
  if (heads == 0 || queries == 0 || keys == 0) throw fail("empty attention stack");
  if (queries % hop != 0) {
    throw fail("queries (" + std::to_string(queries) + ") must be a multiple of the hop (" + std::to_string(hop) + ")");
  }
  if (keys < queries) {
    throw fail("keys (" + std::to_string(keys) + ") must be at least queries (" + std::to_string(queries) +
               "): the last `queries` keys are the queries' own tokens");
  }
  if (!at::isfinite(attention).all().item<bool>()) throw fail("attention holds NaN or infinite values");
  return attention;
}

}  // namespace namm::app
