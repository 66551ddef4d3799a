// BAM: the NAMM's backward-attention scoring network.
//
// One single-head self-attention layer over the cached tokens of one KV head,
// with a BACKWARD mask (token i attends to itself and to newer tokens j >= i,
// so newer tokens can tell an older one it is redundant), produces r and m;
// x' = x * (1 + m) + r; a linear head gives one score per token.
// All parameters come from one flat float vector so evolution can own them;
// an all-zero vector scores every token 0, which keeps everything.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace namm {

/// Sizes of the scoring network; the defaults are the published method's.
struct BamOptions {
  int64_t input_dim = 25;   ///< features per token: recency (8) + spectrogram (17).
  int64_t hidden_dim = 32;  ///< attention width (one head).

  /// Length of the flat parameter vector: 4,172 at the defaults.
  int64_t param_count() const;
};

/// Views of the flat parameter vector, in storage order.
/// w_qkv [3*hidden, input] | b_qkv [3*hidden] | w_out [2*input, hidden] |
/// b_out [2*input] | w_head [1, input] | b_head [1]. Output columns
/// [0, input) are r (added), [input, 2*input) are m (multiplied).
struct BamWeights {
  at::Tensor w_qkv, b_qkv, w_out, b_out, w_head, b_head;
  static BamWeights view(const at::Tensor& params, const BamOptions& options);
};

/// Scores tokens: features [T, input_dim] float32 (oldest first),
/// params [param_count] float32 -> scores [T] float32.
/// Attention runs in blocks of query_block rows (0 = a tuned default) against
/// only the keys each block can see, so memory stays O(T * block) however
/// long T is; the block size changes speed, not results.
at::Tensor bam_scores(const at::Tensor& features, const at::Tensor& params,
                      const BamOptions& options, int64_t query_block = 0);

/// FLOPs (2 x multiply-adds) of the useful work of bam_scores on T tokens:
/// qkv projection, q k^T and attention x v over the unmasked pairs j >= i
/// only, output projection and score head. For benchmarks.
double bam_flops(int64_t num_tokens, const BamOptions& options);

}  // namespace namm
