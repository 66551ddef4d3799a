// Pins NammPolicy: zero model keeps all, bias-only model keeps the newest,
// state follows evictions across updates, per-head versus rectangular
// layouts, reset and observation checks.
#include "core/namm_policy.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace namm {
namespace {

std::vector<int64_t> to_vector(const at::Tensor& indices) {
  const at::Tensor c = indices.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<int64_t> range(int64_t from, int64_t to) {
  std::vector<int64_t> out;
  for (int64_t i = from; i < to; ++i) out.push_back(i);
  return out;
}

// A tiny stand-in for a host: per-head cached positions, new tokens appended
// at each update, random attention rows, and decisions applied to the cache.
struct FakeHost {
  std::vector<at::Tensor> positions;  // per head [T_h] int64
  int64_t next_position = 0;
  int64_t tokens_seen = 0;

  explicit FakeHost(int num_heads) : positions(num_heads, at::empty({0}, at::kLong)) {}

  LayerObservation step(int layer, int64_t num_new, int64_t num_queries) {
    const at::Tensor fresh = at::arange(next_position, next_position + num_new, at::kLong);
    next_position += num_new;
    tokens_seen += num_new;
    LayerObservation observation;
    observation.layer = layer;
    observation.num_new_tokens = num_new;
    observation.tokens_seen = tokens_seen;
    for (at::Tensor& head_positions : positions) {
      head_positions = at::cat({head_positions, fresh});
      const int64_t t = head_positions.size(0);
      HeadObservation head;
      head.positions = head_positions;
      head.attention = at::softmax(at::randn({num_queries, t}), 1);  // [Q, T]
      observation.heads.push_back(head);
    }
    return observation;
  }

  void apply(const LayerDecision& decision) {
    ASSERT_EQ(decision.heads.size(), positions.size());
    for (size_t h = 0; h < positions.size(); ++h) {
      positions[h] = positions[h].index_select(0, decision.heads[h].keep);
    }
  }
};

// A model whose parameters are zero apart from the entries set by edit.
template <typename Edit>
std::shared_ptr<const NammModel> model_with(Edit edit, CacheLayout layout = CacheLayout::kPerHead) {
  NammConfig config;
  config.selection.layout = layout;
  NammModel model = NammModel::zeros(config);
  BamWeights weights = BamWeights::view(model.params, config.bam);
  edit(weights);
  return std::make_shared<const NammModel>(std::move(model));
}

std::shared_ptr<const NammModel> zero_model() {
  return model_with([](BamWeights&) {});
}

TEST(NammPolicy, ZeroModelKeepsEveryTokenOverSeveralUpdates) {
  at::manual_seed(0);
  NammPolicy policy(zero_model());
  FakeHost host(2);
  for (int update = 0; update < 4; ++update) {
    const LayerDecision decision = policy.update(host.step(0, 40, 32));
    const int64_t t = host.positions[0].size(0);
    ASSERT_EQ(decision.heads.size(), 2u);
    for (const HeadDecision& head : decision.heads) {
      EXPECT_EQ(to_vector(head.keep), range(0, t));
      ASSERT_EQ(head.scores.sizes(), (std::vector<int64_t>{t}));
      EXPECT_EQ(head.scores.abs().max().item<float>(), 0.0f);
    }
    host.apply(decision);
  }
  EXPECT_EQ(host.positions[1].size(0), 160);
}

TEST(NammPolicy, NegativeHeadBiasEvictsAllButNewest) {
  at::manual_seed(1);
  NammPolicy policy(model_with([](BamWeights& w) { w.b_head.fill_(-1.0f); }));
  FakeHost host(3);
  for (int update = 0; update < 3; ++update) {
    const LayerDecision decision = policy.update(host.step(0, 48, 16));
    const int64_t t = host.positions[0].size(0);
    for (const HeadDecision& head : decision.heads) {
      EXPECT_EQ(to_vector(head.keep), (std::vector<int64_t>{t - 1}));
      EXPECT_TRUE(at::allclose(head.scores, at::full({t}, -1.0f)));
    }
    host.apply(decision);
    EXPECT_EQ(host.positions[2].size(0), 1);
    EXPECT_EQ(host.positions[2][0].item<int64_t>(), host.next_position - 1);
  }
}

TEST(NammPolicy, StateRowsFollowEvictions) {
  at::manual_seed(2);
  // random parameters: a mix of kept and evicted tokens that differs by head.
  NammConfig config;
  NammModel model = NammModel::zeros(config);
  model.params = at::randn({config.bam.param_count()}) * 0.3;
  NammPolicy policy(std::make_shared<const NammModel>(std::move(model)));
  FakeHost host(2);
  int64_t evicted = 0;
  for (int update = 0; update < 5; ++update) {
    LayerObservation observation = host.step(3, 64, 32);
    const LayerDecision decision = policy.update(observation);
    for (size_t h = 0; h < 2; ++h) {
      evicted += observation.heads[h].positions.size(0) - decision.heads[h].keep.size(0);
    }
    host.apply(decision);  // the next update only works if state rows == kept count
  }
  EXPECT_GT(evicted, 0) << "the random model should evict something";
  EXPECT_LT(host.positions[0].size(0), 5 * 64);
}

TEST(NammPolicy, UnappliedDecisionThrowsWithCounts) {
  at::manual_seed(6);
  NammPolicy policy(model_with([](BamWeights& w) { w.b_head.fill_(-1.0f); }));
  FakeHost host(1);
  policy.update(host.step(0, 32, 16));  // keeps 1 of 32; the host ignores it
  try {
    policy.update(host.step(0, 16, 16));  // 48 cached tokens, 16 new: 32 old != 1
    FAIL() << "expected a throw for a stale cache";
  } catch (const c10::Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("state holds 1 tokens"), std::string::npos) << message;
    EXPECT_NE(message.find("= 32"), std::string::npos) << message;
  }
}

// With only w_head on sin(age * f_3), f_3 = 50000^(-3/4), and a positive
// b_head, the score falls with age: tokens up to age 25 are kept.
std::shared_ptr<const NammModel> age_limit_model(CacheLayout layout) {
  return model_with(
      [](BamWeights& w) {
        const double f3 = std::pow(50000.0, -0.75);
        w.w_head[0][3] = -1000.0f;
        w.b_head[0] = static_cast<float>(1000.0 * std::sin(25.5 * f3));
      },
      layout);
}

// head 0 holds ages 0..39 (wants 26); head 1 holds ages 0, 10, ..., 390 (wants 3).
LayerObservation two_age_profiles() {
  LayerObservation observation;
  observation.num_new_tokens = 40;
  observation.tokens_seen = 391;
  const at::Tensor dense = at::arange(351, 391, at::kLong);
  const at::Tensor sparse = at::arange(0, 391, 10, at::kLong);
  for (const at::Tensor& positions : {dense, sparse}) {
    HeadObservation head;
    head.positions = positions;
    head.attention = at::full({32, 40}, 1.0f / 40);
    observation.heads.push_back(head);
  }
  return observation;
}

TEST(NammPolicy, PerHeadLayoutKeepsEachHeadsOwnYoungTokens) {
  NammPolicy policy(age_limit_model(CacheLayout::kPerHead));
  const LayerDecision decision = policy.update(two_age_profiles());
  EXPECT_EQ(to_vector(decision.heads[0].keep), range(14, 40));
  EXPECT_EQ(to_vector(decision.heads[1].keep), range(37, 40));
}

TEST(NammPolicy, RectangularLayoutPadsHeadsToTheWidest) {
  NammPolicy policy(age_limit_model(CacheLayout::kRectangular));
  const LayerDecision decision = policy.update(two_age_profiles());
  EXPECT_EQ(to_vector(decision.heads[0].keep), range(14, 40));
  // head 1 keeps as many as head 0: its 26 youngest, some with negative scores.
  EXPECT_EQ(to_vector(decision.heads[1].keep), range(14, 40));
  EXPECT_LT(decision.heads[1].scores[14].item<float>(), 0.0f);
}

TEST(NammPolicy, ResetForgetsState) {
  at::manual_seed(3);
  NammPolicy policy(model_with([](BamWeights& w) { w.b_head.fill_(-1.0f); }));
  FakeHost first(1);
  policy.update(first.step(0, 32, 16));  // state now holds 1 token
  // a new sequence: all 32 tokens are new, so no old state may exist.
  FakeHost second(1);
  const LayerObservation fresh = second.step(0, 32, 16);
  EXPECT_THROW(policy.update(fresh), c10::Error);
  policy.reset();
  const LayerDecision decision = policy.update(fresh);
  EXPECT_EQ(to_vector(decision.heads[0].keep), (std::vector<int64_t>{31}));
}

TEST(NammPolicy, UnfrozenNormalizerLearnsFromAllHeads) {
  at::manual_seed(4);
  NammPolicy policy(zero_model());
  ASSERT_FALSE(policy.normalizer().frozen());
  FakeHost host(3);
  const LayerDecision decision = policy.update(host.step(0, 20, 16));
  EXPECT_DOUBLE_EQ(policy.normalizer().count(), 60.0);  // 3 heads x 20 tokens
  host.apply(decision);
  policy.update(host.step(0, 20, 16));
  EXPECT_DOUBLE_EQ(policy.normalizer().count(), 60.0 + 3 * 40.0);
}

TEST(NammPolicy, FrozenNormalizerStaysPut) {
  NammConfig config;
  NammModel model = NammModel::zeros(config);
  model.normalizer.set(at::zeros({17}, at::kDouble), at::ones({17}, at::kDouble), 100.0);
  NammPolicy policy(std::make_shared<const NammModel>(std::move(model)));
  FakeHost host(2);
  policy.update(host.step(0, 20, 16));
  EXPECT_DOUBLE_EQ(policy.normalizer().count(), 100.0);
}

TEST(NammPolicy, HeadFeaturesAreRecencyThenSpectrogram) {
  at::manual_seed(5);
  NammPolicy policy(zero_model());
  FakeHost host(1);
  const LayerObservation observation = host.step(0, 24, 32);
  const at::Tensor features = policy.head_features(0, 0, observation.heads[0], 24);
  ASSERT_EQ(features.sizes(), (std::vector<int64_t>{24, 25}));
  // the newest token has age 0: sin = 0, cos = 1.
  EXPECT_TRUE(at::allclose(features[23].slice(0, 0, 4), at::zeros({4})));
  EXPECT_TRUE(at::allclose(features[23].slice(0, 4, 8), at::ones({4})));
}

// The spectrogram features of a head [T, 17] after scaling, for attention * factor.
at::Tensor scaled_spectrogram(FeatureScaling scaling, double factor) {
  NammConfig config;
  config.feature_scaling = scaling;
  NammModel model = NammModel::zeros(config);
  model.normalizer.set(at::full({17}, 0.02, at::kDouble), at::full({17}, 1e-3, at::kDouble), 100.0);
  NammPolicy policy(std::make_shared<const NammModel>(std::move(model)));
  at::manual_seed(6);
  FakeHost host(1);
  HeadObservation head = host.step(0, 48, 32).heads[0];
  head.attention = head.attention * factor;
  return policy.head_features(0, 0, head, 48).slice(1, config.recency_dim);
}

TEST(NammPolicy, PerHeadScalingIgnoresTheHostsAttentionScale) {
  const at::Tensor base = scaled_spectrogram(FeatureScaling::kPerHead, 1.0);
  const at::Tensor flatter = scaled_spectrogram(FeatureScaling::kPerHead, 0.2);
  EXPECT_TRUE(at::allclose(base, flatter, 1e-4, 1e-4));
  // standardised over the head's tokens: every feature has mean 0, variance 1
  EXPECT_LT(base.mean(0).abs().max().item<double>(), 1e-4);
  EXPECT_NEAR(base.var(0, /*unbiased=*/false).mean().item<double>(), 1.0, 1e-3);
}

TEST(NammPolicy, FrozenStatsScalingSeesTheHostsAttentionScale) {
  const at::Tensor base = scaled_spectrogram(FeatureScaling::kFrozenStats, 1.0);
  const at::Tensor flatter = scaled_spectrogram(FeatureScaling::kFrozenStats, 0.2);
  EXPECT_FALSE(at::allclose(base, flatter, 1e-2, 1e-2));
  // a flatter host's tokens all look like weakly attended ones
  EXPECT_LT(flatter.mean().item<double>(), base.mean().item<double>());
}

TEST(NammPolicy, MismatchedAttentionAndPositionsThrowWithSizes) {
  NammPolicy policy(zero_model());
  LayerObservation observation;
  observation.num_new_tokens = 10;
  HeadObservation head;
  head.positions = at::arange(10, at::kLong);
  head.attention = at::zeros({16, 11});
  observation.heads.push_back(head);
  try {
    policy.update(observation);
    FAIL() << "expected a throw";
  } catch (const c10::Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("[16, 11]"), std::string::npos) << message;
    EXPECT_NE(message.find("[10]"), std::string::npos) << message;
  }
}

TEST(NammPolicy, QueriesNotAMultipleOfHopThrow) {
  NammPolicy policy(zero_model());
  LayerObservation observation;
  observation.num_new_tokens = 10;
  HeadObservation head;
  head.positions = at::arange(10, at::kLong);
  head.attention = at::zeros({15, 10});
  observation.heads.push_back(head);
  try {
    policy.update(observation);
    FAIL() << "expected a throw";
  } catch (const c10::Error& error) {
    EXPECT_NE(std::string(error.what()).find("Q=15"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace namm
