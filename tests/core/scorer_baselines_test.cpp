// Pins core/scorer_policy.h and core/scorer_baselines.h: the shared
// selection, and the rule of SnapKV, PyramidKV, AdaKV and KeyDiff, each
// recomputed by hand on small observations.
#include "core/policy_registry.h"
#include "core/scorer_baselines.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace namm {
namespace {

std::vector<int64_t> as_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

at::Tensor floats(const std::vector<float>& values) { return at::tensor(values, at::kFloat); }

HeadObservation head_with(int64_t tokens, at::Tensor attention = {}, at::Tensor keys = {}) {
  return HeadObservation{attention, at::arange(tokens, at::kLong), keys};
}

LayerObservation layer_with(std::vector<HeadObservation> heads, int64_t new_tokens, int layer = 0, int layers = 1) {
  LayerObservation observation;
  observation.layer = layer;
  observation.num_layers = layers;
  observation.num_new_tokens = new_tokens;
  observation.tokens_seen = 0;
  for (const HeadObservation& head : heads) observation.tokens_seen = std::max(observation.tokens_seen, head.positions.size(0));
  observation.heads = std::move(heads);
  return observation;
}

TEST(KeepByScore, KeepsTheProtectedNewestThenTheBestScoresTiesToTheNewer) {
  const at::Tensor scores = floats({5, 1, 3, 3, 0, 9, -1});
  // budget 4, newest 2 protected: {5, 6} plus the top 2 of {5,1,3,3,0}: 0 and 3 (tie 2/3 -> newer)
  EXPECT_EQ(as_vector(keep_by_score(scores, 4, 2)), (std::vector<int64_t>{0, 3, 5, 6}));
  EXPECT_EQ(as_vector(keep_by_score(scores, 7, 1)), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(as_vector(keep_by_score(scores, 2, 5)), (std::vector<int64_t>{5, 6}));  // the window is cut to the budget
  EXPECT_EQ(as_vector(keep_by_score(floats({NAN, 0, 0}), 2, 1)), (std::vector<int64_t>{1, 2}));  // NaN ranks lowest
}

TEST(SnapKv, ScoresAreTheWindowMeanAveragePooledWithZeroPadding) {
  // 4 queries over 6 tokens; window 2 -> mean of the last two rows
  const at::Tensor attention = at::tensor({0.f, 0.f, 0.f, 0.f, 0.f, 0.f,  //
                                           1.f, 0.f, 0.f, 0.f, 0.f, 0.f,  //
                                           0.f, 0.f, 6.f, 0.f, 0.f, 0.f,  //
                                           0.f, 0.f, 0.f, 0.f, 0.f, 3.f})
                                   .view({4, 6});
  const at::Tensor mean = snapkv_scores(attention, WindowOptions{2, 1});
  EXPECT_TRUE(at::allclose(mean, floats({0, 0, 3, 0, 0, 1.5})));
  const at::Tensor pooled = snapkv_scores(attention, WindowOptions{2, 3});
  // (left + self + right) / 3 with zeros beyond the ends
  EXPECT_TRUE(at::allclose(pooled, floats({0, 1, 1, 1, 0.5, 0.5})));
}

TEST(SnapKv, KeepsTheWindowAndTheTokensTheWindowAttendedTo) {
  SnapKvPolicy policy(Budget{4, 0.0}, WindowOptions{2, 1});
  // 8 tokens, 3 new queries: the window is the 2 newest; of the rest, 1 and 4 draw the window's attention
  at::Tensor attention = at::zeros({3, 8});
  attention[0][0] = 1.0f;  // outside the window: ignored
  attention[1][1] = 0.5f;
  attention[2][4] = 0.4f;
  attention[2][2] = 0.1f;
  const LayerDecision decision = policy.update(layer_with({head_with(8, attention)}, 3));
  EXPECT_EQ(as_vector(decision.heads[0].keep), (std::vector<int64_t>{1, 4, 6, 7}));
}

TEST(PyramidKv, LayerBudgetsFallLinearlyAndKeepTheirTotal) {
  // B = 20 with a window of 4: b = 16, smallest 16/4 = 4, largest 28; 4 layers: 28, 20, 12, 4 (+4 each)
  std::vector<int64_t> budgets;
  for (int l = 0; l < 4; ++l) budgets.push_back(pyramid_layer_budget(20, 4, 1000, l, 4, 4.0));
  EXPECT_EQ(budgets, (std::vector<int64_t>{32, 24, 16, 8}));
  EXPECT_EQ(budgets[0] + budgets[1] + budgets[2] + budgets[3], 4 * 20);
  EXPECT_EQ(pyramid_layer_budget(20, 4, 1000, 0, 1, 4.0), 20);  // one layer: the plain budget
  // too few tokens for the largest: capped at T - window, the smallest raised to keep the sum
  EXPECT_EQ(pyramid_layer_budget(20, 4, 24, 0, 2, 4.0), 24);
  EXPECT_EQ(pyramid_layer_budget(20, 4, 24, 1, 2, 4.0), 16);
}

TEST(PyramidKv, TheFirstLayerKeepsMoreThanTheLast) {
  PyramidKvPolicy policy(Budget{6, 0.0}, WindowOptions{1, 1}, 20.0);
  const at::Tensor attention = at::rand({1, 40});
  const auto kept = [&](int layer) {
    return policy.update(layer_with({head_with(40, attention)}, 1, layer, 3)).heads[0].keep.size(0);
  };
  EXPECT_GT(kept(0), 6);
  EXPECT_EQ(kept(1), 6);
  EXPECT_LT(kept(2), 6);
}

TEST(PyramidKv, AnUpperLayerHoldingFewerTokensStillGetsTheSmallBudget) {
  PyramidKvPolicy policy(Budget{200, 0.0}, WindowOptions{1, 1}, 4.0);
  // b = 199: layer 0 may keep round(348.25) + 1, layer 1 round(49.75) + 1, whatever each holds
  LayerObservation lower = layer_with({head_with(1000, at::rand({1, 1000}))}, 1, 0, 2);
  LayerObservation upper = layer_with({head_with(100, at::rand({1, 100}))}, 1, 1, 2);
  upper.tokens_seen = 1000;
  EXPECT_EQ(policy.update(lower).heads[0].keep.size(0), 349);
  EXPECT_EQ(policy.update(upper).heads[0].keep.size(0), 51);
}

TEST(AdaKv, HeadBudgetsFollowTheScoresOverTheLayerWithAFloorPerHead) {
  // two heads of 6 tokens, budget 3 each (6 in all), window 1, floor round(0.34 * 3) = 1
  const std::vector<at::Tensor> scores = {floats({9, 8, 7, 6, 0, 0}), floats({0.1f, 0, 0, 0, 0, 0})};
  // protected: one per head; floors: head 0 token 0, head 1 token 0; the 2 left go to head 0 (8, 7)
  EXPECT_EQ(adakv_head_budgets(scores, 3, 1, 0.34), (std::vector<int64_t>{4, 2}));
  // no floor: head 0 takes all 4 unprotected places
  EXPECT_EQ(adakv_head_budgets(scores, 3, 1, 0.0), (std::vector<int64_t>{5, 1}));
  // a layer within its total keeps everything
  EXPECT_EQ(adakv_head_budgets({floats({1, 2}), floats({3})}, 2, 1, 0.2), (std::vector<int64_t>{2, 1}));
}

TEST(AdaKv, KeepsTheLayerTotalButNotTheSameCountPerHead) {
  AdaKvPolicy policy(Budget{3, 0.0}, WindowOptions{1, 1}, 0.0);
  const at::Tensor busy = at::tensor({0.f, 0.3f, 0.3f, 0.3f, 0.1f, 0.f}).view({1, 6});
  const at::Tensor quiet = at::tensor({0.f, 0.f, 0.f, 0.f, 0.f, 1.f}).view({1, 6});
  const LayerDecision decision = policy.update(layer_with({head_with(6, busy), head_with(6, quiet)}, 1));
  EXPECT_EQ(as_vector(decision.heads[0].keep), (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(as_vector(decision.heads[1].keep), (std::vector<int64_t>{5}));
}

TEST(KeyDiff, ScoresAreMinusTheCosineToTheMeanKeyDirection) {
  // three keys along x, one along y: the mean direction leans to x, so y is the most distinct
  const at::Tensor keys = at::tensor({2.f, 0.f, 1.f, 0.f, 5.f, 0.f, 0.f, 3.f}).view({4, 2});
  const at::Tensor scores = keydiff_scores(keys);
  const float norm = std::sqrt(0.75f * 0.75f + 0.25f * 0.25f);
  EXPECT_TRUE(at::allclose(scores, floats({-0.75f / norm, -0.75f / norm, -0.75f / norm, -0.25f / norm})));
  KeyDiffPolicy policy(Budget{2, 0.0});
  const at::Tensor more = at::tensor({0.f, 1.f, 1.f, 0.f, 1.f, 0.f, 1.f, 0.f}).view({4, 2});
  // newest (3) stays; of the rest, token 0 (along y) is the most distinct
  EXPECT_EQ(as_vector(policy.update(layer_with({head_with(4, {}, more)}, 1)).heads[0].keep),
            (std::vector<int64_t>{0, 3}));
}

TEST(PolicyRegistry, EveryEntryIsMadeByItsNameAndListed) {
  PolicySpec spec;
  spec.budget = Budget{8, 0.0};
  for (const PolicyEntry& entry : policy_entries()) {
    if (entry.name == "namm") continue;  // needs a model file
    spec.name = entry.name;
    EXPECT_EQ(make_policy(spec)->name(), entry.name);
    EXPECT_FALSE(entry.help.empty());
    EXPECT_NE(policy_help().find(entry.name + ": "), std::string::npos);
  }
  EXPECT_EQ(policy_names().size(), policy_entries().size());
  spec.window.kernel = 4;
  spec.name = "snapkv";
  EXPECT_THROW(make_policy(spec), std::invalid_argument);
}

}  // namespace
}  // namespace namm
