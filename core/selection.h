// Turning token scores into keep/evict decisions.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace namm {

/// How the physical cache of a layer is shaped after selection.
enum class CacheLayout {
  kPerHead,      ///< every head keeps exactly its own chosen tokens; memory shrinks per head.
  kRectangular,  ///< reference behaviour: every head keeps as many tokens as the head with the most.
};

struct SelectionOptions {
  int64_t cap = 0;  ///< keep at most this many tokens per head (top scores); 0 = no cap.
  CacheLayout layout = CacheLayout::kPerHead;
};

/// Keeps tokens with score >= 0 (and always the newest, the last one, even
/// under the cap), then keeps at most the top `cap`; per head:
/// scores [T_h] float32 -> keep [K_h] int64 ascending (T_h = 0 -> [0]).
/// In the rectangular layout every head keeps its top min(T_h, max_h K_h)
/// scores. NaN scores count as -inf.
std::vector<at::Tensor> select_tokens(const std::vector<at::Tensor>& head_scores,
                                      const SelectionOptions& options);

/// Indices of the k highest scores of scores [T], ascending (ties: newer first).
at::Tensor top_k_ascending(const at::Tensor& scores, int64_t k);

/// Parses "per-head" or "rectangular".
CacheLayout parse_cache_layout(const std::string& text);
const char* to_string(CacheLayout layout);

}  // namespace namm
