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
#include <vector>

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

  // projections: qkv [T, 3*hid] -> q (scaled), k, v [T, hid] each.
  const at::Tensor qkv = at::addmm(w.b_qkv, x, w.w_qkv.t()).contiguous();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hid)));

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
  // The per-token vectors are plain loops over raw memory: at the small T of
  // an update (hundreds of tokens, one thread) a dozen ATen ops on [T] or
  // [T, hid] tensors cost as much as the attention itself.
  constexpr float kMaxOffsetAboveDiagonal = 60.0f;  // e^-60 ~ 1e-26, far from float underflow
  constexpr float kMaxExponent = 88.0f;             // exp(88) ~ 1.6e38 < float max
  at::Tensor q_scaled = at::empty({num_tokens, hid}, x.options());  // [T, hid]
  at::Tensor k_c = at::empty({num_tokens, hid}, x.options());       // [T, hid]
  at::Tensor v_c = at::empty({num_tokens, hid}, x.options());       // [T, hid]
  std::vector<float> offset(static_cast<size_t>(num_tokens));       // [T]
  std::vector<float> bound(static_cast<size_t>(num_tokens));        // [T]
  {
    const float* src = qkv.data_ptr<float>();
    float* qd = q_scaled.data_ptr<float>();
    float* kd = k_c.data_ptr<float>();
    float* vd = v_c.data_ptr<float>();
    float k_norm_suffix_max = 0.0f;
    // newest first, so the running max covers exactly the keys j >= i.
    for (int64_t i = num_tokens - 1; i >= 0; --i) {
      const float* row = src + i * 3 * hid;
      float* qi = qd + i * hid;
      float* ki = kd + i * hid;
      float* vi = vd + i * hid;
      double q_sq = 0.0, k_sq = 0.0, diagonal = 0.0;
      for (int64_t c = 0; c < hid; ++c) {
        const float qv = row[c] * scale;
        const float kv = row[hid + c];
        qi[c] = qv;
        ki[c] = kv;
        vi[c] = row[2 * hid + c];
        q_sq += static_cast<double>(qv) * qv;
        k_sq += static_cast<double>(kv) * kv;
        diagonal += static_cast<double>(qv) * kv;
      }
      k_norm_suffix_max = std::max(k_norm_suffix_max, static_cast<float>(std::sqrt(k_sq)));
      const float b = static_cast<float>(std::sqrt(q_sq)) * k_norm_suffix_max;
      bound[i] = b;
      offset[i] = std::min(b, static_cast<float>(diagonal) + kMaxOffsetAboveDiagonal);
    }
  }
  const float* offset_data = offset.data();

  // attention in query blocks: with the backward mask, the rows [s, e) only
  // see keys [s, T), so each block multiplies against a shrinking key suffix;
  // row r of a block starts at its own diagonal, column r.
  const int64_t block = std::min(query_block > 0 ? query_block : kDefaultQueryBlock, num_tokens);
  at::Tensor o = at::empty({num_tokens, hid}, x.options());  // [T, hid]
  std::vector<float> row_sums(static_cast<size_t>(num_tokens));  // [T]
  float* sums = row_sums.data();
  const at::Tensor k_t = k_c.t();  // [hid, T]
  // one block of rows [start, start + rows) against its key suffix, into a
  // scratch buffer of at least block * T floats.
  const auto attend_block = [&](int64_t start, float* buffer) {
    const int64_t rows = std::min(block, num_tokens - start);
    const int64_t keys = num_tokens - start;
    at::Tensor weights = at::from_blob(buffer, {rows, keys}, x.options());  // [b, T-s]
    at::mm_out(weights, q_scaled.narrow(0, start, rows), k_t.narrow(1, start, keys));
    for (int64_t r = 0; r < rows; ++r) {
      float* row = buffer + r * keys;
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
  const auto attend_pairs = [&](int64_t pair_begin, int64_t pair_end) {
    // per-thread scratch kept across calls: a fresh block * T buffer per
    // call (hundreds of KB) costs page faults on every update.
    thread_local std::vector<float> scratch;
    const size_t needed = static_cast<size_t>(block * num_tokens);
    if (scratch.size() < needed) scratch.resize(needed);
    for (int64_t pair = pair_begin; pair < pair_end; ++pair) {
      attend_block(pair * block, scratch.data());
      const int64_t mirror = num_blocks - 1 - pair;
      if (mirror != pair) attend_block(mirror * block, scratch.data());
    }
  };
  if (num_pairs == 1 || at::get_num_threads() == 1 || at::in_parallel_region()) {
    attend_pairs(0, num_pairs);
  } else {
    at::parallel_for(0, num_pairs, 1, attend_pairs);
  }
  // o [T, hid] /= row sums; rows whose logits may exceed offset + 87 (exp
  // clamps at kMaxExponent, one unit of margin for rounding) or that came
  // out non-finite get an exact softmax, one row at a time. They need huge
  // weights; real NAMMs rarely get here.
  std::vector<int64_t> overflowed;
  {
    float* od = o.data_ptr<float>();
    for (int64_t i = 0; i < num_tokens; ++i) {
      float* oi = od + i * hid;
      const float inv = sums[i];
      bool finite = true;
      for (int64_t c = 0; c < hid; ++c) {
        oi[c] /= inv;
        finite = finite && std::isfinite(oi[c]);
      }
      if (!finite || bound[i] - offset_data[i] > kMaxExponent - 1.0f) overflowed.push_back(i);
    }
  }
  for (const int64_t i : overflowed) {
    const at::Tensor logits = at::mv(k_c.narrow(0, i, num_tokens - i), q_scaled[i]);  // [T-i]
    const at::Tensor p = at::softmax(logits, 0);
    o[i].copy_(at::mv(v_c.narrow(0, i, num_tokens - i).t(), p));
  }

  // output projection y [T, 2*in] = [r | m]; x' = x * (1 + m) + r;
  // score [T] = x' w_head^T + b_head, fused into one pass over the rows.
  const at::Tensor y = at::addmm(w.b_out, o, w.w_out.t()).contiguous();
  const at::Tensor w_head = w.w_head.contiguous();
  at::Tensor scores = at::empty({num_tokens}, x.options());  // [T]
  {
    const float* yd = y.data_ptr<float>();
    const float* xd = x.data_ptr<float>();
    const float* wh = w_head.data_ptr<float>();
    const float b_head = w.b_head.item<float>();
    float* sd = scores.data_ptr<float>();
    for (int64_t i = 0; i < num_tokens; ++i) {
      const float* yi = yd + i * 2 * in;
      const float* xi = xd + i * in;
      float acc = 0.0f;
      for (int64_t c = 0; c < in; ++c) acc += (xi[c] * (yi[in + c] + 1.0f) + yi[c]) * wh[c];
      sd[i] = acc + b_head;
    }
  }
  return scores;
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
