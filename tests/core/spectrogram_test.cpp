#include "core/spectrogram.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>
#include <string>

#include "core/npy.h"

namespace namm {
namespace {

// Golden comparisons: |actual - expected| <= kAbsTol + kRelTol * |expected|.
// The relative part is the 1e-5 target; the absolute floor covers near-zero
// bins, whose float32 FFT error scales with the frame's energy, not with the
// bin: ~1e-8 for softmax attention (the fixtures), so 1e-7 there; tests on
// uniform [0, 1) series (magnitudes up to ~16) use kAbsTolUniform.
constexpr double kRelTol = 1e-5;
constexpr double kAbsTol = 1e-7;
constexpr double kAbsTolUniform = 1e-6;

at::Tensor fixture(const std::string& name) {
  return read_npy(std::string(NAMM_FIXTURES_DIR) + "/spectrogram/" + name + ".npy");
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, const std::string& what,
                  double rel = kRelTol, double abs = kAbsTol) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const at::Tensor a = actual.to(at::kDouble);
  const at::Tensor e = expected.to(at::kDouble);
  const at::Tensor excess = (a - e).abs() - (abs + rel * e.abs());
  const double worst = excess.max().item<double>();
  EXPECT_LE(worst, 0.0) << what << ": max |diff| " << (a - e).abs().max().item<double>()
                        << " exceeds tolerance by " << worst;
}

// Reference EMA by tensor ops over at::stft (float64): series [N, L] ->
// sum_j w_j mask[n, j] |X[n, :, j]|. first_frame: [N] int64, frames before it
// are masked out.
at::Tensor reference_ema(const at::Tensor& series, const at::Tensor& first_frame, double gamma,
                         int64_t hop = 16, int64_t n_fft = 32) {
  const at::Tensor window = at::hann_window(n_fft, /*periodic=*/true, at::kDouble);
  const at::Tensor mags = at::stft(series.to(at::kDouble), n_fft, hop, n_fft, window,
                                   /*center=*/false, "constant", /*normalized=*/false,
                                   /*onesided=*/true, /*return_complex=*/true)
                              .abs();  // [N, F, J]
  const int64_t J = mags.size(2);
  const double g = std::pow(gamma, static_cast<double>(hop));
  const at::Tensor j = at::arange(J, at::kLong);
  const at::Tensor weights = (1 - g) * at::pow(g, (J - 1 - j).to(at::kDouble));  // [J]
  const at::Tensor mask = (j.unsqueeze(0) >= first_frame.unsqueeze(1)).to(at::kDouble);  // [N, J]
  return (mags * (weights * mask).unsqueeze(1)).sum(-1);  // [N, F]
}

class Spectrogram : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(2); }
  SpectrogramFeaturizer featurizer;
};

TEST_F(Spectrogram, RawMagnitudesMatchTorchStft) {
  const at::Tensor mags = featurizer.magnitudes(fixture("raw_series"));
  expect_close(mags, fixture("raw_mags"), "raw magnitudes");
}

TEST_F(Spectrogram, FirstUpdateWithOldTokensMatchesTorchStft) {
  const at::Tensor attention = fixture("b1_attention");  // [48, 64]: 16 old, 48 new
  HeadSpectrogramState state;
  const at::Tensor ema = featurizer.update(attention, 48, state);
  expect_close(ema, fixture("b1_ema"), "b1 ema");
  EXPECT_TRUE(at::equal(state.ema, ema));
}

TEST_F(Spectrogram, FirstUpdateAllNewTokensMatchesTorchStft) {
  HeadSpectrogramState state;
  const at::Tensor ema = featurizer.update(fixture("b2_attention"), 32, state);
  expect_close(ema, fixture("b2_ema"), "b2 ema");
}

TEST_F(Spectrogram, TwoUpdatesWithEvictionBetweenMatchTorchStft) {
  HeadSpectrogramState state;
  const at::Tensor ema1 = featurizer.update(fixture("c1_attention"), 32, state);
  expect_close(ema1, fixture("c1_ema"), "c1 ema");
  state.keep_rows(fixture("c_keep"));
  const at::Tensor ema2 = featurizer.update(fixture("c2_attention"), 48, state);
  expect_close(ema2, fixture("c2_ema"), "c2 ema");
  expect_close(state.carry, fixture("c2_carry"), "c2 carry", 0, 0);
}

TEST_F(Spectrogram, CarryIsTheLastAttentionValuesEachTokenReceived) {
  at::manual_seed(3);
  const at::Tensor attention = at::rand({64, 50});
  HeadSpectrogramState state;
  featurizer.update(attention, 10, state);
  ASSERT_EQ(state.carry.sizes(), at::IntArrayRef({50, 16}));
  EXPECT_TRUE(at::equal(state.carry, attention.slice(0, 48, 64).t()));
}

TEST_F(Spectrogram, CarryOverMakesTwoUpdatesOneStftOverTheConcatenation) {
  at::manual_seed(4);
  const int64_t T = 37;
  const at::Tensor a1 = at::rand({64, T});
  const at::Tensor a2 = at::rand({32, T});
  HeadSpectrogramState state;
  featurizer.update(a1, 0, state);
  // the second update's frames, from its padded series [carry, column].
  const at::Tensor second = featurizer.magnitudes(at::cat({state.carry, a2.t()}, 1));  // [T, F, 2]
  const at::Tensor whole =
      featurizer.magnitudes(at::cat({at::zeros({T, 16}), a1.t(), a2.t()}, 1));  // [T, F, 6]
  ASSERT_EQ(whole.size(2), 6);
  expect_close(second, whole.slice(2, 4, 6), "second update frames", kRelTol, kAbsTolUniform);
}

TEST_F(Spectrogram, EmaOfTwoUpdatesEqualsOnePassOverConcatenatedFrames) {
  at::manual_seed(5);
  const int64_t old_tokens = 20, q1 = 64, q2 = 48;
  const int64_t T1 = old_tokens + q1;
  const at::Tensor a1 = at::rand({q1, T1});
  const at::Tensor a2 = at::rand({q2, T1});  // only tokens present since update 1
  HeadSpectrogramState state;
  featurizer.update(a1, q1, state);
  // update 2 adds q2 new tokens; compare the T1 tokens that saw both updates.
  const at::Tensor a2_full = at::cat({a2, at::rand({q2, q2})}, 1);  // [q2, T1 + q2]
  const at::Tensor ema2 = featurizer.update(a2_full, q2, state).slice(0, 0, T1);

  // one pass: all 7 frames of [zeros, col1, col2]; a token new in update 1
  // at new-index i ignores frames before i / hop.
  const at::Tensor series = at::cat({at::zeros({T1, 16}), a1.t(), a2.t()}, 1);  // [T1, 128]
  const at::Tensor first_frame =
      at::cat({at::zeros({old_tokens}, at::kLong), at::arange(q1, at::kLong).div(16, "floor")});
  expect_close(ema2, reference_ema(series, first_frame, 0.99), "ema over two updates", kRelTol, kAbsTolUniform);
}

TEST_F(Spectrogram, NewTokenIgnoresFramesBeforeItExisted) {
  at::manual_seed(6);
  const int64_t old_tokens = 8, q = 64;
  const at::Tensor a = at::rand({q, old_tokens + q});
  // token at new-index 40 keeps frames j >= 40/16 = 2, which read queries >= 16.
  const int64_t token = old_tokens + 40;
  at::Tensor perturbed = a.clone();
  perturbed.slice(0, 0, 16).fill_(5.0f);
  HeadSpectrogramState s1, s2;
  const at::Tensor e1 = featurizer.update(a, q, s1);
  const at::Tensor e2 = featurizer.update(perturbed, q, s2);
  EXPECT_TRUE(at::equal(e1[token], e2[token])) << "new token saw frames before it existed";
  EXPECT_FALSE(at::allclose(e1[0], e2[0])) << "old token must see every frame";
  EXPECT_FALSE(at::allclose(e1[old_tokens], e2[old_tokens]))
      << "new token 0 must see every frame";
}

TEST_F(Spectrogram, NewTokenFeaturesUseOnlyUnmaskedFrames) {
  at::manual_seed(7);
  const int64_t q = 64;
  const at::Tensor a = at::rand({q, q});
  HeadSpectrogramState state;
  const at::Tensor ema = featurizer.update(a, q, state);
  const at::Tensor series = at::cat({at::zeros({q, 16}), a.t()}, 1);
  const at::Tensor first_frame = at::arange(q, at::kLong).div(16, "floor");
  expect_close(ema, reference_ema(series, first_frame, 0.99), "masked ema", kRelTol, kAbsTolUniform);
  // and the mask matters: without it the result differs for later tokens.
  const at::Tensor unmasked = reference_ema(series, at::zeros({q}, at::kLong), 0.99);
  EXPECT_GT((unmasked[q - 1] - ema[q - 1].to(at::kDouble)).abs().max().item<double>(), 1e-3);
}

TEST_F(Spectrogram, ResultsDoNotDependOnThreadCount) {
  at::manual_seed(8);
  // enough tokens for two parallel tasks, and not a multiple of the block size.
  const int64_t T = 603;
  const at::Tensor a = at::rand({64, T});
  HeadSpectrogramState s1, s2;
  at::set_num_threads(1);
  const at::Tensor e1 = featurizer.update(a, 64, s1);
  at::set_num_threads(2);
  const at::Tensor e2 = featurizer.update(a, 64, s2);
  EXPECT_TRUE(at::equal(e1, e2));
  EXPECT_TRUE(at::equal(s1.carry, s2.carry));
  const at::Tensor series = at::cat({at::zeros({T, 16}), a.t()}, 1);
  const at::Tensor first_frame = at::cat({at::zeros({T - 64}, at::kLong),
                                          at::arange(64, at::kLong).div(16, "floor")});
  expect_close(e2, reference_ema(series, first_frame, 0.99), "large update", kRelTol, kAbsTolUniform);
}

TEST_F(Spectrogram, KeepRowsFiltersCarryAndEma) {
  HeadSpectrogramState state;
  state.carry = at::arange(5 * 16, at::kFloat).view({5, 16});
  state.ema = at::arange(5 * 17, at::kFloat).view({5, 17});
  state.keep_rows(at::tensor(std::vector<int64_t>{0, 3, 4}));
  EXPECT_TRUE(at::equal(state.carry[1], at::arange(48, 64, at::kFloat)));
  EXPECT_TRUE(at::equal(state.ema[2], at::arange(68, 85, at::kFloat)));
  EXPECT_EQ(state.ema.size(0), 3);
}

TEST_F(Spectrogram, RejectsQueriesNotAMultipleOfHopNamingTheValues) {
  HeadSpectrogramState state;
  try {
    featurizer.update(at::rand({20, 30}), 20, state);
    FAIL() << "no error for Q=20";
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    EXPECT_NE(message.find("Q=20"), std::string::npos) << message;
    EXPECT_NE(message.find("hop=16"), std::string::npos) << message;
  }
}

TEST_F(Spectrogram, RejectsStateWithWrongRowCount) {
  HeadSpectrogramState state;
  featurizer.update(at::rand({16, 10}), 10, state);
  // 10 cached tokens before, but 12 - 1 = 11 old tokens claimed now.
  EXPECT_THROW(featurizer.update(at::rand({16, 12}), 1, state), c10::Error);
}

TEST_F(Spectrogram, LongerWindowCarriesMoreThanOneHop) {
  // n_fft 64, hop 16: 48 values carry over, more than one update's 32 queries.
  SpectrogramFeaturizer wide(SpectrogramOptions{64, 16, 0.99});
  at::manual_seed(9);
  const int64_t T = 9;
  const at::Tensor a1 = at::rand({32, T});
  const at::Tensor a2 = at::rand({32, T});
  HeadSpectrogramState state;
  wide.update(a1, 0, state);
  ASSERT_EQ(state.carry.sizes(), at::IntArrayRef({T, 48}));
  const at::Tensor padded = at::cat({at::zeros({T, 48}), a1.t()}, 1);
  EXPECT_TRUE(at::equal(state.carry, padded.slice(1, 32, 80)));
  const at::Tensor second = wide.magnitudes(at::cat({state.carry, a2.t()}, 1));
  const at::Tensor whole = wide.magnitudes(at::cat({at::zeros({T, 48}), a1.t(), a2.t()}, 1));
  expect_close(second, whole.slice(2, 2, 4), "wide second update frames", kRelTol, kAbsTolUniform);
}

}  // namespace
}  // namespace namm
