// Pins the BAM scoring network: backward mask, zero init, parameter layout
// and the blocked attention against a plain dense reference.
#include "core/bam.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace namm {
namespace {

// Dense masked reference written with plain tensor ops: the whole [T, T]
// attention matrix with the backward mask, no blocking.
// Runs in x's dtype (float64 for a high-precision reference).
at::Tensor dense_reference(const at::Tensor& x, const at::Tensor& params, const BamOptions& options) {
  BamWeights w = BamWeights::view(params, options);
  for (at::Tensor* part : {&w.w_qkv, &w.b_qkv, &w.w_out, &w.b_out, &w.w_head, &w.b_head}) {
    *part = part->to(x.scalar_type());
  }
  const int64_t hid = options.hidden_dim;
  const int64_t in = options.input_dim;
  const int64_t t = x.size(0);
  at::Tensor qkv = at::matmul(x, w.w_qkv.t()) + w.b_qkv;  // [T, 3*hid]
  at::Tensor q = qkv.slice(1, 0, hid);
  at::Tensor k = qkv.slice(1, hid, 2 * hid);
  at::Tensor v = qkv.slice(1, 2 * hid, 3 * hid);
  at::Tensor logits = at::matmul(q, k.t()) / std::sqrt(static_cast<double>(hid));  // [T, T]
  at::Tensor masked = at::ones({t, t}, at::kBool).tril(-1);  // key j < query i
  logits = logits.masked_fill(masked, -std::numeric_limits<double>::infinity());
  at::Tensor o = at::matmul(at::softmax(logits, 1), v);     // [T, hid]
  at::Tensor y = at::matmul(o, w.w_out.t()) + w.b_out;      // [T, 2*in]
  at::Tensor r = y.slice(1, 0, in);
  at::Tensor m = y.slice(1, in, 2 * in);
  at::Tensor xp = x * (1 + m) + r;
  return at::matmul(xp, w.w_head.t()).squeeze(1) + w.b_head;
}

at::Tensor random_params(const BamOptions& options, double scale, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn({options.param_count()}) * scale;
}

TEST(BamParams, CountIs4172AtReferenceSizes) {
  EXPECT_EQ(BamOptions{}.param_count(), 4172);
}

TEST(BamParams, CountFollowsGeneralFormula) {
  for (int64_t in : {1, 7, 25}) {
    for (int64_t hid : {1, 16, 33}) {
      BamOptions options;
      options.input_dim = in;
      options.hidden_dim = hid;
      const int64_t expected = (in * 3 * hid + 3 * hid) + (hid * 2 * in + 2 * in) + (in + 1);
      EXPECT_EQ(options.param_count(), expected) << "in " << in << " hid " << hid;
    }
  }
}

TEST(BamParams, ViewsCoverTheFlatVectorInStorageOrder) {
  BamOptions options;
  const at::Tensor params = at::arange(options.param_count(), at::kFloat);
  const BamWeights w = BamWeights::view(params, options);
  EXPECT_EQ(w.w_qkv.sizes(), (std::vector<int64_t>{96, 25}));
  EXPECT_EQ(w.b_qkv.sizes(), (std::vector<int64_t>{96}));
  EXPECT_EQ(w.w_out.sizes(), (std::vector<int64_t>{50, 32}));
  EXPECT_EQ(w.b_out.sizes(), (std::vector<int64_t>{50}));
  EXPECT_EQ(w.w_head.sizes(), (std::vector<int64_t>{1, 25}));
  EXPECT_EQ(w.b_head.sizes(), (std::vector<int64_t>{1}));
  EXPECT_EQ(w.w_qkv[0][1].item<float>(), 1.0f);   // row-major
  EXPECT_EQ(w.b_qkv[0].item<float>(), 2400.0f);   // right after 96 x 25
  EXPECT_EQ(w.w_out[0][0].item<float>(), 2496.0f);
  EXPECT_EQ(w.b_out[0].item<float>(), 4096.0f);
  EXPECT_EQ(w.w_head[0][0].item<float>(), 4146.0f);
  EXPECT_EQ(w.b_head[0].item<float>(), 4171.0f);
}

TEST(BamParams, WrongLengthThrowsWithSizes) {
  try {
    BamWeights::view(at::zeros({100}), BamOptions{});
    FAIL() << "expected a throw";
  } catch (const c10::Error& error) {
    EXPECT_NE(std::string(error.what()).find("4172"), std::string::npos) << error.what();
  }
}

TEST(BamScores, ZeroParamsScoreExactlyZero) {
  at::set_num_threads(2);
  BamOptions options;
  at::manual_seed(1);
  const at::Tensor x = at::randn({700, 25}) * 10;
  const at::Tensor scores = bam_scores(x, at::zeros({options.param_count()}), options, 256);
  ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{700}));
  EXPECT_EQ(scores.abs().max().item<float>(), 0.0f);
}

TEST(BackwardMask, OlderTokenNeverChangesNewerScore) {
  BamOptions options;
  const at::Tensor params = random_params(options, 0.3, 2);
  const at::Tensor x = at::randn({300, 25});
  const at::Tensor base = bam_scores(x, params, options, 64);
  for (int64_t changed : {0, 63, 64, 150, 298}) {
    at::Tensor y = x.clone();
    y[changed] = at::randn({25}) * 5;
    const at::Tensor scores = bam_scores(y, params, options, 64);
    // tokens newer than the changed one see nothing of it.
    EXPECT_TRUE(at::equal(scores.slice(0, changed + 1), base.slice(0, changed + 1)))
        << "changed token " << changed;
    EXPECT_NE(scores[changed].item<float>(), base[changed].item<float>());
  }
}

TEST(BackwardMask, NewerTokenChangesOlderScores) {
  BamOptions options;
  const at::Tensor params = random_params(options, 0.3, 3);
  const at::Tensor x = at::randn({200, 25});
  const at::Tensor base = bam_scores(x, params, options, 64);
  at::Tensor y = x.clone();
  y[199] = at::randn({25}) * 5;
  const at::Tensor scores = bam_scores(y, params, options, 64);
  const at::Tensor moved = (scores.slice(0, 0, 199) - base.slice(0, 0, 199)).abs();
  // every older token attends to the newest one, so every older score moves.
  EXPECT_GT(moved.min().item<float>(), 0.0f);
}

TEST(BamScores, BlockedEqualsDenseReference) {
  at::set_num_threads(2);
  BamOptions options;
  const at::Tensor params = random_params(options, 0.2, 4);
  for (int64_t t : {1, 2, 31, 64, 65, 257, 700}) {
    const at::Tensor x = at::randn({t, 25});
    const at::Tensor expected = dense_reference(x, params, options);
    for (int64_t block : {0, 1, 7, 64, 256}) {
      if (block == 1 && t > 65) continue;  // one row per block: slow, covered by small T
      const at::Tensor scores = bam_scores(x, params, options, block);
      ASSERT_EQ(scores.sizes(), expected.sizes());
      const double error = (scores - expected).abs().max().item<double>();
      EXPECT_LT(error, 1e-5 * (1.0 + expected.abs().max().item<double>()))
          << "T " << t << " block " << block;
    }
  }
}

// Logits in the thousands overflow the fast softmax offset, so rows are
// recomputed exactly; compared with a float64 reference at a tolerance that
// float32 logits of that size allow (|logit| * 6e-8 ~ 1e-4 in the exponent).
TEST(BamScores, HugeLogitsMatchDenseReference) {
  BamOptions options;
  const at::Tensor params = random_params(options, 0.5, 7);
  at::Tensor x = at::randn({300, 25});
  x.slice(0, 0, 100).mul_(10.0);
  x.slice(0, 200, 300).mul_(10.0);
  const at::Tensor expected =
      dense_reference(x.to(at::kDouble), params, options);
  const at::Tensor scores = bam_scores(x, params, options, 50);
  ASSERT_TRUE(at::isfinite(scores).all().item<bool>());
  const double error =
      ((scores.to(at::kDouble) - expected).abs() / (1.0 + expected.abs())).max().item<double>();
  EXPECT_LT(error, 1e-3);
}

TEST(BamScores, OtherSizesMatchDenseReference) {
  BamOptions options;
  options.input_dim = 7;
  options.hidden_dim = 5;
  const at::Tensor params = random_params(options, 0.5, 5);
  const at::Tensor x = at::randn({133, 7});
  const at::Tensor expected = dense_reference(x, params, options);
  const at::Tensor scores = bam_scores(x, params, options, 32);
  EXPECT_LT((scores - expected).abs().max().item<double>(), 1e-5);
}

TEST(BamScores, SingleTokenIsHeadOfModulatedFeatures) {
  BamOptions options;
  const at::Tensor params = random_params(options, 0.3, 6);
  const at::Tensor x = at::randn({1, 25});
  const at::Tensor scores = bam_scores(x, params, options);
  ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{1}));
  EXPECT_NEAR(scores[0].item<float>(), dense_reference(x, params, options)[0].item<float>(), 1e-5);
}

TEST(BamScores, EmptyCacheGivesEmptyScores) {
  BamOptions options;
  const at::Tensor scores = bam_scores(at::zeros({0, 25}), at::zeros({options.param_count()}), options);
  EXPECT_EQ(scores.numel(), 0);
}

TEST(BamScores, WrongFeatureWidthThrows) {
  BamOptions options;
  EXPECT_THROW(bam_scores(at::zeros({4, 24}), at::zeros({options.param_count()}), options),
               c10::Error);
}

TEST(BamFlops, CountsOnlyUnmaskedAttentionPairs) {
  BamOptions options;
  const double t = 1000;
  const double expected =
      2.0 * (t * 25 * 96 + 2 * 32 * t * (t + 1) / 2 + t * 32 * 50 + t * 25);
  EXPECT_DOUBLE_EQ(bam_flops(1000, options), expected);
}

}  // namespace
}  // namespace namm
