#include "core/baselines.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <vector>

namespace namm {
namespace {

at::Tensor longs(const std::vector<int64_t>& values) {
  return at::tensor(values, at::TensorOptions().dtype(at::kLong));
}

// rows: Q lists of T floats -> [Q, T].
at::Tensor rows(const std::vector<std::vector<float>>& values) {
  std::vector<at::Tensor> out;
  for (const auto& row : values) out.push_back(at::tensor(row, at::TensorOptions().dtype(at::kFloat)));
  return at::stack(out);
}

std::vector<int64_t> range(int64_t begin, int64_t end) {
  std::vector<int64_t> out;
  for (int64_t i = begin; i < end; ++i) out.push_back(i);
  return out;
}

HeadObservation head_at(const std::vector<int64_t>& positions, at::Tensor attention = {},
                        at::Tensor keys = {}) {
  return HeadObservation{attention, longs(positions), keys};
}

LayerObservation layer_of(std::vector<HeadObservation> heads, int64_t tokens_seen, int64_t num_new) {
  LayerObservation observation;
  observation.tokens_seen = tokens_seen;
  observation.num_new_tokens = num_new;
  observation.heads = std::move(heads);
  return observation;
}

std::vector<int64_t> kept(const HeadDecision& decision) {
  EXPECT_EQ(decision.keep.scalar_type(), at::kLong);
  at::Tensor keep = decision.keep.contiguous();
  return std::vector<int64_t>(keep.data_ptr<int64_t>(), keep.data_ptr<int64_t>() + keep.numel());
}

Budget tokens(int64_t n) { return Budget{n, 0.0}; }

// a layer of 2 heads, 20 cached tokens, 3 query rows, keys of width 4.
LayerObservation random_layer(int64_t t) {
  at::manual_seed(3);
  std::vector<HeadObservation> heads;
  for (int h = 0; h < 2; ++h) {
    heads.push_back(head_at(range(0, t), at::softmax(at::randn({3, t}), 1), at::randn({t, 4})));
  }
  return layer_of(heads, t, t);
}

std::vector<std::pair<std::string, std::function<std::unique_ptr<MemoryPolicy>(Budget)>>> budgeted() {
  return {
      {"recency", [](Budget b) { return std::make_unique<RecencyPolicy>(b); }},
      {"streaming", [](Budget b) { return std::make_unique<StreamingLlmPolicy>(b, 4); }},
      {"h2o", [](Budget b) { return std::make_unique<H2oPolicy>(b, 0.5); }},
      {"l2", [](Budget b) { return std::make_unique<L2NormPolicy>(b); }},
      {"tova", [](Budget b) { return std::make_unique<TovaPolicy>(b); }},
      {"random", [](Budget b) { return std::make_unique<RandomPolicy>(b, 11); }},
  };
}

TEST(Baselines, EveryBudgetedPolicyKeepsExactlyItsBudget) {
  for (const auto& [name, make] : budgeted()) {
    LayerDecision decision = make(tokens(7))->update(random_layer(20));
    ASSERT_EQ(decision.heads.size(), 2u) << name;
    for (const HeadDecision& head : decision.heads) {
      std::vector<int64_t> keep = kept(head);
      ASSERT_EQ(keep.size(), 7u) << name;
      for (size_t i = 1; i < keep.size(); ++i) EXPECT_LT(keep[i - 1], keep[i]) << name;
      EXPECT_GE(keep.front(), 0) << name;
      EXPECT_LE(keep.back(), 19) << name;
      if (head.scores.defined()) {
        EXPECT_EQ(head.scores.sizes(), at::IntArrayRef({20})) << name;
      }
    }
  }
}

TEST(Baselines, EveryPolicyKeepsEverythingUnderBudget) {
  auto policies = budgeted();
  policies.push_back({"full", [](Budget) { return std::make_unique<FullCachePolicy>(); }});
  for (const auto& [name, make] : policies) {
    for (int64_t budget : {20, 30}) {
      LayerDecision decision = make(tokens(budget))->update(random_layer(20));
      for (const HeadDecision& head : decision.heads) EXPECT_EQ(kept(head), range(0, 20)) << name;
    }
  }
}

TEST(Baselines, FractionalBudgetResolvesAgainstTokensSeen) {
  // 10 cached tokens of a 40-token sequence: 25% means 10, 20% means 8.
  std::vector<int64_t> positions = {0, 1, 2, 3, 30, 35, 36, 37, 38, 39};
  RecencyPolicy quarter(Budget{0, 0.25});
  EXPECT_EQ(kept(quarter.update(layer_of({head_at(positions)}, 40, 1)).heads[0]), range(0, 10));
  RecencyPolicy fifth(Budget{0, 0.2});
  EXPECT_EQ(kept(fifth.update(layer_of({head_at(positions)}, 40, 1)).heads[0]), range(2, 10));
}

TEST(Baselines, TokensSeenBelowCacheSizeIsRejected) {
  RecencyPolicy policy(tokens(4));
  EXPECT_THROW(policy.update(layer_of({head_at(range(0, 6))}, 5, 6)), c10::Error);
}

TEST(FullCache, KeepsEveryTokenWhateverTheSize) {
  FullCachePolicy policy;
  LayerDecision decision = policy.update(layer_of({head_at(range(0, 9)), head_at({3, 8})}, 9, 9));
  EXPECT_EQ(kept(decision.heads[0]), range(0, 9));
  EXPECT_EQ(kept(decision.heads[1]), (std::vector<int64_t>{0, 1}));
}

TEST(Recency, KeepsTheLastBudgetTokensPerHead) {
  RecencyPolicy policy(tokens(4));
  LayerDecision decision =
      policy.update(layer_of({head_at(range(0, 10)), head_at({0, 4, 5, 9, 10, 11})}, 12, 2));
  EXPECT_EQ(kept(decision.heads[0]), range(6, 10));
  EXPECT_EQ(kept(decision.heads[1]), range(2, 6));
  EXPECT_FLOAT_EQ(decision.heads[1].scores[3].item<float>(), 9.0f);  // score = position
}

TEST(StreamingLlm, KeepsSinksPlusRecentWindow) {
  StreamingLlmPolicy policy(tokens(6), 4);
  LayerDecision decision = policy.update(layer_of({head_at(range(0, 12))}, 12, 12));
  EXPECT_EQ(kept(decision.heads[0]), (std::vector<int64_t>{0, 1, 2, 3, 10, 11}));
}

TEST(StreamingLlm, SinksAreSequencePositionsEvenAfterEarlierEvictions) {
  StreamingLlmPolicy policy(tokens(4), 4);
  // position 1 and 3 were evicted earlier: sinks still cached are positions 0
  // and 2 (indices 0, 1); index 2 holds position 5, which is no sink.
  LayerDecision decision = policy.update(layer_of({head_at({0, 2, 5, 6, 7, 8, 9})}, 10, 1));
  EXPECT_EQ(kept(decision.heads[0]), (std::vector<int64_t>{0, 1, 5, 6}));
}

TEST(StreamingLlm, NewestTokenOutranksSinksWhenBudgetIsTiny) {
  StreamingLlmPolicy policy(tokens(2), 4);
  LayerDecision decision = policy.update(layer_of({head_at(range(0, 10))}, 10, 10));
  EXPECT_EQ(kept(decision.heads[0]), (std::vector<int64_t>{0, 9}));
}

TEST(StreamingLlm, RejectsNegativeSinks) {
  EXPECT_THROW(StreamingLlmPolicy(tokens(4), -1), std::invalid_argument);
}

TEST(H2o, AccumulatedHeavyHitterAndRecentWindowSurviveAcrossUpdates) {
  H2oPolicy policy(tokens(4), 0.5);  // recent window of 2
  // update 1: 4 tokens, under budget; token 1 is the heavy hitter.
  LayerDecision first = policy.update(layer_of(
      {head_at(range(0, 4), rows({{0.1f, 0.7f, 0.1f, 0.1f}, {0.1f, 0.6f, 0.2f, 0.1f}}))}, 4, 4));
  EXPECT_EQ(kept(first.heads[0]), range(0, 4));
  // update 2: 3 new tokens. On this update alone token 0 (0.45) beats token 1
  // (0.15); accumulated, token 1 (1.45) beats token 0 (0.65) and token 4 (0.9)
  // beats both the low ones (token 2: 0.6, token 3: 0.2).
  std::vector<float> row = {0.15f, 0.05f, 0.1f, 0.0f, 0.3f, 0.2f, 0.2f};
  LayerDecision second = policy.update(layer_of({head_at(range(0, 7), rows({row, row, row}))}, 7, 3));
  EXPECT_EQ(kept(second.heads[0]), (std::vector<int64_t>{1, 4, 5, 6}));
  EXPECT_NEAR(second.heads[0].scores[1].item<float>(), 1.45f, 1e-5);
  EXPECT_TRUE(at::allclose(policy.accumulated(0, 0), at::tensor({1.45f, 0.9f, 0.6f, 0.6f}), 1e-5, 1e-6));
  // update 3: 2 new tokens on the kept cache (positions 1, 4, 5, 6, 7, 8).
  // Aligned sums [1.45, 0.9, 0.6+0.1, 0.6+0.5] keep indices 0 and 3; sums
  // misaligned to the first 4 pre-eviction tokens ([0.65, 1.45, 0.6, 0.2]) or
  // not accumulated at all would keep indices 1 or 2 instead.
  LayerDecision third = policy.update(layer_of(
      {head_at({1, 4, 5, 6, 7, 8},
               rows({{0.0f, 0.0f, 0.05f, 0.25f, 0.3f, 0.4f}, {0.0f, 0.0f, 0.05f, 0.25f, 0.3f, 0.4f}}))},
      9, 2));
  EXPECT_EQ(kept(third.heads[0]), (std::vector<int64_t>{0, 3, 4, 5}));
}

TEST(H2o, RejectsNewTokenCountThatBreaksAlignment) {
  H2oPolicy policy(tokens(3), 0.5);
  policy.update(layer_of({head_at(range(0, 5), at::ones({1, 5}))}, 5, 5));  // keeps 3
  // 3 kept + 1 new = 4, but the cache claims 5 tokens.
  EXPECT_THROW(policy.update(layer_of({head_at({0, 3, 4, 5, 6}, at::ones({1, 5}))}, 7, 1)), c10::Error);
}

TEST(H2o, ResetForgetsAccumulatedAttention) {
  H2oPolicy policy(tokens(3), 0.5);
  policy.update(layer_of({head_at(range(0, 5), at::ones({1, 5}))}, 5, 5));
  ASSERT_TRUE(policy.accumulated(0, 0).defined());
  policy.reset();
  EXPECT_FALSE(policy.accumulated(0, 0).defined());
  // a fresh sequence of another length is accepted as a first update.
  EXPECT_EQ(kept(policy.update(layer_of({head_at(range(0, 2), at::ones({1, 2}))}, 2, 2)).heads[0]),
            range(0, 2));
}

TEST(H2o, RequiresAttention) {
  H2oPolicy policy(tokens(3), 0.5);
  EXPECT_THROW(policy.update(layer_of({head_at(range(0, 5))}, 5, 5)), c10::Error);
  EXPECT_THROW(policy.update(layer_of({head_at(range(0, 5), at::ones({1, 4}))}, 5, 5)), c10::Error);
  EXPECT_THROW(H2oPolicy(tokens(3), 1.5), std::invalid_argument);
}

TEST(L2Norm, KeepsLowestNormKeysAndTheNewest) {
  L2NormPolicy policy(tokens(3));
  // norms 5, 1, 4, 2, 3, 9: the two lowest are indices 1 and 3; the newest
  // (norm 9) stays anyway.
  at::Tensor keys = rows({{3, 4}, {1, 0}, {0, 4}, {0, 2}, {3, 0}, {0, 9}});
  LayerDecision decision = policy.update(layer_of({head_at(range(0, 6), {}, keys)}, 6, 6));
  EXPECT_EQ(kept(decision.heads[0]), (std::vector<int64_t>{1, 3, 5}));
  EXPECT_FLOAT_EQ(decision.heads[0].scores[0].item<float>(), -5.0f);
}

TEST(L2Norm, RequiresKeysMatchingPositions) {
  L2NormPolicy policy(tokens(3));
  EXPECT_THROW(policy.update(layer_of({head_at(range(0, 6))}, 6, 6)), c10::Error);
  EXPECT_THROW(policy.update(layer_of({head_at(range(0, 6), {}, at::ones({5, 2}))}, 6, 6)), c10::Error);
}

TEST(Tova, AveragesTheLastQueryRowOverHeadsHoldingTheSameTokens) {
  TovaPolicy policy(tokens(3));
  // the first rows (earlier queries) point at index 3 and must be ignored.
  at::Tensor a0 = rows({{0, 0, 0, 1, 0}, {0.5f, 0.1f, 0.1f, 0.1f, 0.2f}});
  at::Tensor a1 = rows({{0, 0, 0, 1, 0}, {0.0f, 0.4f, 0.35f, 0.05f, 0.2f}});
  // alone, head 0 would keep {0, 3, 4} and head 1 {1, 2, 4}; the average
  // [0.25, 0.25, 0.225, 0.075, 0.2] keeps {0, 1, 2} in both.
  LayerDecision decision =
      policy.update(layer_of({head_at(range(0, 5), a0), head_at(range(0, 5), a1)}, 5, 5));
  EXPECT_EQ(kept(decision.heads[0]), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(kept(decision.heads[1]), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_NEAR(decision.heads[1].scores[2].item<float>(), 0.225f, 1e-6);
}

TEST(Tova, RanksPerHeadWhenHeadsHoldDifferentTokens) {
  TovaPolicy policy(tokens(3));
  at::Tensor a0 = rows({{0.5f, 0.1f, 0.1f, 0.1f, 0.2f}});
  at::Tensor a1 = rows({{0.0f, 0.4f, 0.35f, 0.05f, 0.2f}});
  LayerDecision decision =
      policy.update(layer_of({head_at(range(0, 5), a0), head_at({0, 2, 3, 4, 5}, a1)}, 6, 1));
  // head 0's third place is a tie at 0.1 between indices 1, 2, 3: the newest wins.
  EXPECT_EQ(kept(decision.heads[0]), (std::vector<int64_t>{0, 3, 4}));
  EXPECT_EQ(kept(decision.heads[1]), (std::vector<int64_t>{1, 2, 4}));
}

TEST(Random, DeterministicPerSeedAndDifferentAcrossSeedsAndDraws) {
  const auto draw = [](RandomPolicy& policy) {
    return kept(policy.update(layer_of({head_at(range(0, 50))}, 50, 50)).heads[0]);
  };
  RandomPolicy a(tokens(10), 7), b(tokens(10), 7), c(tokens(10), 8);
  std::vector<int64_t> first = draw(a);
  ASSERT_EQ(first.size(), 10u);
  EXPECT_EQ(first.back(), 49);  // the newest always stays
  EXPECT_EQ(draw(b), first);
  EXPECT_NE(draw(c), first);
  std::vector<int64_t> second = draw(a);
  EXPECT_NE(second, first);  // a later draw is a new subset
  a.reset();
  EXPECT_EQ(draw(a), first);
  EXPECT_EQ(draw(a), second);
}

TEST(Random, CoversOlderTokensUniformly) {
  // keeping 5 of 11 (newest + 4 of the 10 older) 2,000 times: each older
  // token is kept with probability 0.4.
  RandomPolicy policy(tokens(5), 1);
  std::vector<int> counts(11, 0);
  for (int i = 0; i < 2000; ++i) {
    for (int64_t k : kept(policy.update(layer_of({head_at(range(0, 11))}, 11, 1)).heads[0])) ++counts[k];
  }
  EXPECT_EQ(counts[10], 2000);
  for (int k = 0; k < 10; ++k) EXPECT_NEAR(counts[k] / 2000.0, 0.4, 0.05) << k;
}

}  // namespace
}  // namespace namm
