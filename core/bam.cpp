// BAM scoring network: blocked backward-masked attention over one head's
// cached tokens, the r/m modulation and the linear score head.
//
// Not here: feature extraction (spectrogram.cpp, recency.cpp) and the
// keep/evict rule (selection.cpp).
//
// Versus the reference code (stateless_parallel_modules/attention.py with
// GeneralizedScoring, mult=true, residual=true): the attention output goes
// through an output projection to 2 x input_dim before the r/m split, as
// there; m has no non-linearity (the reference's bam config leaves
// mult_nonlinearity empty). The reference's base_bam run config uses hidden
// 16 and no attention bias; we follow namm-reference.md (hidden 32, biases,
// 4,172 parameters).
#include "core/bam.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <limits>

namespace namm {

namespace {

// Query rows per attention block when the caller does not choose: big enough
// for BLAS to run near peak, small enough that the [block, T] score buffer
// stays cache-friendly (128 x 8k floats = 4 MB); measured best of 64..1024.
constexpr int64_t kDefaultQueryBlock = 128;

// The attention weights are the one elementwise pass over the [b, T] block,
// so its exp is hand-written to vectorise (ATen's exp_ plus a separate sum
// cost twice as much). GCC compiles it once per ISA level and picks at load
// time; "no-trapping-math" lets it turn the clamps into vector min/max.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NAMM_BAM_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), \
                 optimize("no-trapping-math")))
#else
#define NAMM_BAM_VECTOR_CLONES
#endif

// e = exp(v - offset) with Cephes' expf polynomial (relative error ~1e-7),
// v - offset clamped to [-87, 88]: exp(-87) ~ 1.6e-38 stands in for 0.
// Written as a macro so that it inlines into every clone.
#define NAMM_BAM_EXP_SHIFTED(v, offset, e)                                      \
  do {                                                                          \
    float x_ = (v) - (offset);                                                  \
    x_ = x_ < -87.0f ? -87.0f : x_;                                             \
    x_ = x_ > 88.0f ? 88.0f : x_;                                               \
    /* round to nearest with the 1.5 * 2^23 trick: no call, vectorises */       \
    const float n_ = (x_ * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   \
    float r_ = x_ - n_ * 0.693359375f;                                          \
    r_ = r_ - n_ * -2.12194440e-4f;                                             \
    float p_ = 1.9875691500e-4f;                                                \
    p_ = p_ * r_ + 1.3981999507e-3f;                                            \
    p_ = p_ * r_ + 8.3334519073e-3f;                                            \
    p_ = p_ * r_ + 4.1665795894e-2f;                                            \
    p_ = p_ * r_ + 1.6666665459e-1f;                                            \
    p_ = p_ * r_ + 5.0000001201e-1f;                                            \
    p_ = p_ * (r_ * r_) + r_ + 1.0f;                                            \
    const int32_t bits_ = (static_cast<int32_t>(n_) + 127) << 23;               \
    (e) = p_ * __builtin_bit_cast(float, bits_);                                \
  } while (0)

// row[0, n) <- exp(row - offset); returns the row's sum. Lanes of partial
// sums keep the reduction vectorisable without reassociating floats.
NAMM_BAM_VECTOR_CLONES float exp_shifted_row(float* __restrict row, int64_t n, float offset) {
  constexpr int64_t kLanes = 16;
  float lanes[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      float e;
      NAMM_BAM_EXP_SHIFTED(row[c + l], offset, e);
      row[c + l] = e;
      lanes[l] += e;
    }
  }
  float total = 0.0f;
  for (; c < n; ++c) {
    float e;
    NAMM_BAM_EXP_SHIFTED(row[c], offset, e);
    row[c] = e;
    total += e;
  }
  for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

}  // namespace

int64_t BamOptions::param_count() const {
  const int64_t qkv = input_dim * 3 * hidden_dim + 3 * hidden_dim;
  const int64_t out = hidden_dim * 2 * input_dim + 2 * input_dim;
  const int64_t head = input_dim + 1;
  return qkv + out + head;
}

BamWeights BamWeights::view(const at::Tensor& params, const BamOptions& options) {
  TORCH_CHECK(options.input_dim > 0 && options.hidden_dim > 0,
              "BAM sizes must be positive: input_dim ", options.input_dim,
              ", hidden_dim ", options.hidden_dim);
  TORCH_CHECK(params.dim() == 1 && params.numel() == options.param_count(),
              "BAM params must be a flat vector of ", options.param_count(),
              " values (input_dim ", options.input_dim, ", hidden_dim ", options.hidden_dim,
              "), got shape ", params.sizes());
  TORCH_CHECK(params.scalar_type() == at::kFloat, "BAM params must be float32, got ",
              params.scalar_type());
  const at::Tensor flat = params.contiguous();
  const int64_t in = options.input_dim;
  const int64_t hid = options.hidden_dim;
  int64_t offset = 0;
  // slices the next rows*cols values of the flat vector as a row-major matrix.
  const auto take = [&](int64_t rows, int64_t cols) {
    at::Tensor part = flat.narrow(0, offset, rows * cols).view({rows, cols});
    offset += rows * cols;
    return part;
  };
  BamWeights weights;
  weights.w_qkv = take(3 * hid, in);      // [3*hidden, input]
  weights.b_qkv = take(1, 3 * hid)[0];    // [3*hidden]
  weights.w_out = take(2 * in, hid);      // [2*input, hidden]
  weights.b_out = take(1, 2 * in)[0];     // [2*input]
  weights.w_head = take(1, in);           // [1, input]
  weights.b_head = take(1, 1)[0];         // [1]
  return weights;
}

at::Tensor bam_scores(const at::Tensor& features, const at::Tensor& params,
                      const BamOptions& options, int64_t query_block) {
  const BamWeights w = BamWeights::view(params, options);
  TORCH_CHECK(features.dim() == 2 && features.size(1) == options.input_dim,
              "BAM features must be [T, ", options.input_dim, "], got ", features.sizes());
  TORCH_CHECK(features.scalar_type() == at::kFloat, "BAM features must be float32, got ",
              features.scalar_type());
  TORCH_CHECK(query_block >= 0, "BAM query_block must be >= 0 (0 = default), got ",
              query_block);
  const int64_t num_tokens = features.size(0);
  if (num_tokens == 0) return at::zeros({0}, features.options());
  const int64_t hid = options.hidden_dim;
  const int64_t in = options.input_dim;
  const at::Tensor x = features.contiguous();  // [T, in]

  // projections: qkv [T, 3*hid] -> q, k, v [T, hid] (views).
  const at::Tensor qkv = at::addmm(w.b_qkv, x, w.w_qkv.t());
  const double scale = 1.0 / std::sqrt(static_cast<double>(hid));
  const at::Tensor q = qkv.narrow(1, 0, hid);
  const at::Tensor k = qkv.narrow(1, hid, hid);
  const at::Tensor v = qkv.narrow(1, 2 * hid, hid);

  // Softmax without a row-max pass: row i is exponentiated as
  // exp(logit - offset_i) for an offset_i known before the matmul, fused
  // with the row sum in one pass; o = (p v) / sum. The offset must keep exp
  // from overflowing (logits at most offset + 88) and the row from
  // vanishing (largest logit above offset - 87). The diagonal logit
  // d_i = q_i.k_i is always unmasked, and by Cauchy-Schwarz no logit
  // exceeds bound_i = |q_i| max_{j>=i} |k_j|, so offset_i = min(bound_i,
  // d_i + 60) never vanishes and can only overflow when bound_i - offset_i
  // exceeds 87 (logits in the hundreds): such rows are recomputed exactly
  // afterwards, as are rows that came out non-finite. Every quantity
  // of row i depends on tokens j >= i only, which keeps the backward mask
  // exact bit for bit.
  constexpr double kMaxOffsetAboveDiagonal = 60.0;  // e^-60 ~ 1e-26, far from float underflow
  constexpr double kMaxExponent = 88.0;             // exp(88) ~ 1.6e38 < float max
  const at::Tensor q_scaled = q.mul(scale);  // [T, hid] contiguous
  const at::Tensor k_c = k.contiguous();     // [T, hid]
  const at::Tensor v_c = v.contiguous();     // [T, hid]
  const at::Tensor k_norm_suffix_max =
      std::get<0>(at::cummax(k_c.norm(2, {1}).flip({0}), 0)).flip({0});    // [T]
  const at::Tensor bound = q_scaled.norm(2, {1}).mul_(k_norm_suffix_max);  // [T]
  const at::Tensor diagonal = (q_scaled * k_c).sum(1);                     // [T]
  const at::Tensor offset =
      at::minimum(bound, diagonal.add(kMaxOffsetAboveDiagonal)).contiguous();  // [T]
  const float* offset_data = offset.data_ptr<float>();

  // attention in query blocks: with the backward mask, the rows [s, e) only
  // see keys [s, T), so each block multiplies against a shrinking key suffix;
  // row r of a block starts at its own diagonal, column r.
  const int64_t block = std::min(query_block > 0 ? query_block : kDefaultQueryBlock, num_tokens);
  at::Tensor o = at::empty({num_tokens, hid}, x.options());            // [T, hid]
  at::Tensor row_sums = at::empty({num_tokens}, x.options());          // [T]
  float* sums = row_sums.data_ptr<float>();
  const at::Tensor k_t = k_c.t();  // [hid, T]
  // one block of rows [start, start + rows) against its key suffix, into a
  // caller-owned scratch buffer of block * T floats.
  const auto attend_block = [&](int64_t start, at::Tensor& buffer) {
    const int64_t rows = std::min(block, num_tokens - start);
    const int64_t keys = num_tokens - start;
    at::Tensor weights = buffer.narrow(0, 0, rows * keys).view({rows, keys});  // [b, T-s]
    at::mm_out(weights, q_scaled.narrow(0, start, rows), k_t.narrow(1, start, keys));
    float* data = weights.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r) {
      float* row = data + r * keys;
      std::fill(row, row + r, 0.0f);  // keys older than the query: masked
      const int64_t i = start + r;
      sums[i] = exp_shifted_row(row + r, keys - r, offset_data[i]);
    }
    at::Tensor out_rows = o.narrow(0, start, rows);  // contiguous [b, hid]
    at::mm_out(out_rows, weights, v_c.narrow(0, start, keys));
  };
  // blocks run in parallel, each thread on single-threaded matmuls: small
  // per-block matmuls split over threads would spend their time in sync.
  // Block b has T - b*block keys, so blocks are dealt in pairs (b, last - b)
  // of equal total work to keep the threads balanced.
  const int64_t num_blocks = (num_tokens + block - 1) / block;
  const int64_t num_pairs = (num_blocks + 1) / 2;
  at::parallel_for(0, num_pairs, 1, [&](int64_t pair_begin, int64_t pair_end) {
    at::Tensor buffer = at::empty({block * num_tokens}, x.options());
    for (int64_t pair = pair_begin; pair < pair_end; ++pair) {
      attend_block(pair * block, buffer);
      const int64_t mirror = num_blocks - 1 - pair;
      if (mirror != pair) attend_block(mirror * block, buffer);
    }
  });
  // o [T, hid] /= row sums
  o.div_(row_sums.unsqueeze(1));
  // rows whose logits may exceed offset + 87 (exp clamps at kMaxExponent,
  // one unit of margin for rounding) or came out non-finite: exact softmax,
  // one row at a time. They need huge weights; real NAMMs rarely get here.
  const at::Tensor overflowed = at::nonzero(
      (bound - offset).gt(kMaxExponent - 1.0).logical_or_(at::isfinite(o).all(1).logical_not()));
  if (overflowed.size(0) > 0) {
    const auto rows = overflowed.accessor<int64_t, 2>();
    for (int64_t n = 0; n < overflowed.size(0); ++n) {
      const int64_t i = rows[n][0];
      const at::Tensor logits = at::mv(k_c.narrow(0, i, num_tokens - i), q_scaled[i]);  // [T-i]
      const at::Tensor p = at::softmax(logits, 0);
      o[i].copy_(at::mv(v_c.narrow(0, i, num_tokens - i).t(), p));
    }
  }

  // output projection y [T, 2*in] = [r | m]; x' = x * (1 + m) + r.
  at::Tensor y = at::addmm(w.b_out, o, w.w_out.t());
  at::Tensor modulated = y.narrow(1, in, in).add_(1.0).mul_(x).add_(y.narrow(1, 0, in));
  // score [T] = x' w_head^T + b_head.
  return at::mv(modulated, w.w_head[0]).add_(w.b_head);
}

double bam_flops(int64_t num_tokens, const BamOptions& options) {
  const double t = static_cast<double>(num_tokens);
  const double in = static_cast<double>(options.input_dim);
  const double hid = static_cast<double>(options.hidden_dim);
  const double pairs = t * (t + 1.0) / 2.0;  // unmasked (query, key) pairs: j >= i
  const double multiply_adds = t * in * 3.0 * hid   // qkv projection
                               + pairs * hid        // q k^T
                               + pairs * hid        // softmax(.) v
                               + t * hid * 2.0 * in  // output projection
                               + t * in;             // score head
  return 2.0 * multiply_adds;
}

}  // namespace namm
