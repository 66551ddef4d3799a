#include "adapters/memory_controller.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <vector>

namespace namm {
namespace {

constexpr int kLayers = 2;
constexpr int64_t kQueryHeads = 4;
constexpr int64_t kKvHeads = 2;
constexpr int64_t kDim = 4;

// What the test policy saw of one layer at one update.
struct Seen {
  int layer;
  int64_t num_new_tokens, tokens_seen;
  std::vector<int64_t> attention_rows, attention_cols, cache_lengths;
  std::vector<at::Tensor> attention, keys, positions;
};

// Keeps the newest keep_newest[h] tokens of head h and scores kept tokens +1,
// evicted -1; logs every observation. Independent of core's policies.
class NewestPolicy : public MemoryPolicy {
 public:
  NewestPolicy(std::vector<int64_t> keep_newest, PolicyNeeds needs, std::vector<Seen>* log)
      : keep_newest_(std::move(keep_newest)), needs_(needs), log_(log) {}
  std::string name() const override { return "test-newest"; }
  PolicyNeeds needs() const override { return needs_; }
  void reset() override {}
  LayerDecision update(const LayerObservation& observation) override {
    Seen seen{observation.layer, observation.num_new_tokens, observation.tokens_seen, {}, {}, {}, {}, {}, {}};
    LayerDecision decision;
    for (size_t h = 0; h < observation.heads.size(); ++h) {
      const HeadObservation& head = observation.heads[h];
      const int64_t tokens = head.positions.size(0);
      seen.cache_lengths.push_back(tokens);
      seen.attention_rows.push_back(head.attention.defined() ? head.attention.size(0) : -1);
      seen.attention_cols.push_back(head.attention.defined() ? head.attention.size(1) : -1);
      seen.attention.push_back(head.attention.defined() ? head.attention.clone() : at::Tensor());
      seen.keys.push_back(head.keys.defined() ? head.keys.clone() : at::Tensor());
      seen.positions.push_back(head.positions.clone());
      const int64_t kept = std::min(tokens, keep_newest_[h]);
      at::Tensor scores = at::full({tokens}, -1.0f);
      scores.narrow(0, tokens - kept, kept).fill_(1.0f);
      decision.heads.push_back({at::arange(tokens - kept, tokens, at::kLong), scores});
    }
    if (log_) log_->push_back(seen);
    return decision;
  }

 private:
  std::vector<int64_t> keep_newest_;
  PolicyNeeds needs_;
  std::vector<Seen>* log_;
};

std::vector<LayerKvCache> make_caches() {
  KvCacheOptions options;
  options.num_heads = kKvHeads;
  options.head_dim = kDim;
  return std::vector<LayerKvCache>(kLayers, LayerKvCache(options));
}

// A minimal host: random q/k/v per layer, fed in chunks of at most `chunk`
// tokens following the controller protocol. Returns the tokens at which
// after_tokens reported an update.
std::vector<int64_t> run_host(MemoryController& controller, std::vector<LayerKvCache>& caches, int64_t total,
                              int64_t chunk, bool flush_at_end = false) {
  std::vector<int64_t> updates;
  int64_t fed = 0;
  while (fed < total) {
    const int64_t n = std::min({chunk, controller.tokens_until_update(), total - fed});
    const at::Tensor positions = at::arange(fed, fed + n, at::kLong);
    for (int l = 0; l < kLayers; ++l) {
      prunable_attention(at::randn({kQueryHeads, n, kDim}), at::randn({kKvHeads, n, kDim}),
                         at::randn({kKvHeads, n, kDim}), positions, caches[static_cast<size_t>(l)],
                         controller.recorder(l));
    }
    fed += n;
    if (controller.after_tokens(n, caches)) updates.push_back(fed);
  }
  if (flush_at_end && controller.flush(caches)) updates.push_back(fed);
  return updates;
}

ControllerOptions delay_of(int64_t delay) {
  ControllerOptions options;
  options.delay = delay;
  return options;
}

TEST(MemoryController, UpdatesHappenExactlyEveryDelayTokens) {
  at::manual_seed(0);
  std::vector<Seen> log;
  MemoryController controller(std::make_unique<NewestPolicy>(std::vector<int64_t>{100, 100}, PolicyNeeds{true, false}, &log),
                              kLayers, delay_of(8));
  auto caches = make_caches();
  const std::vector<int64_t> updates = run_host(controller, caches, 30, 3);
  EXPECT_EQ(updates, (std::vector<int64_t>{8, 16, 24}));
  EXPECT_EQ(controller.num_updates(), 3);
  EXPECT_EQ(controller.buffered_tokens(), 6);
  EXPECT_EQ(controller.tokens_until_update(), 2);
  ASSERT_EQ(log.size(), 3u * kLayers);
  for (size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log[i].layer, static_cast<int>(i % kLayers));
    EXPECT_EQ(log[i].num_new_tokens, 8);
    EXPECT_EQ(log[i].tokens_seen, 8 * static_cast<int64_t>(i / kLayers + 1));
    for (int64_t h = 0; h < kKvHeads; ++h) {
      EXPECT_EQ(log[i].attention_rows[h], 8);                          // Q == delay
      EXPECT_EQ(log[i].attention_cols[h], log[i].cache_lengths[h]);    // T_h == cache length
      EXPECT_TRUE(at::allclose(log[i].attention[h].sum(1), at::ones({8}), 0, 1e-5));
    }
  }
}

TEST(MemoryController, EvictionShrinksTheCachesAndKeepsTheChosenTokens) {
  at::manual_seed(1);
  MemoryController controller(std::make_unique<NewestPolicy>(std::vector<int64_t>{5, 2}, PolicyNeeds{true, false}, nullptr),
                              kLayers, delay_of(64));
  auto caches = make_caches();
  run_host(controller, caches, 63, 16);
  const int64_t bytes_before = caches[0].bytes();
  EXPECT_EQ(caches[0].length(0), 63);
  // the 64th token
  const at::Tensor position = at::tensor({63}, at::kLong);
  for (int l = 0; l < kLayers; ++l) {
    prunable_attention(at::randn({kQueryHeads, 1, kDim}), at::randn({kKvHeads, 1, kDim}),
                       at::randn({kKvHeads, 1, kDim}), position, caches[l], controller.recorder(l));
  }
  EXPECT_TRUE(controller.after_tokens(1, caches));
  for (int l = 0; l < kLayers; ++l) {
    EXPECT_EQ(caches[l].length(0), 5);
    EXPECT_EQ(caches[l].length(1), 2);
    EXPECT_TRUE(at::equal(caches[l].positions(0), at::arange(59, 64, at::kLong)));
    EXPECT_TRUE(at::equal(caches[l].positions(1), at::arange(62, 64, at::kLong)));
  }
  EXPECT_EQ(caches[0].bytes(), (5 + 2) * kDim * 2 * 4);
  EXPECT_LT(caches[0].bytes() * 8, bytes_before);
}

TEST(MemoryController, StatisticsAddUp) {
  at::manual_seed(2);
  MemoryController controller(std::make_unique<NewestPolicy>(std::vector<int64_t>{4, 2}, PolicyNeeds{true, false}, nullptr),
                              kLayers, delay_of(8));
  auto caches = make_caches();
  run_host(controller, caches, 16, 8);
  const auto& stats = controller.statistics();
  ASSERT_EQ(stats.size(), 2u * kLayers * kKvHeads);
  for (const UpdateHeadStats& s : stats) {
    EXPECT_LE(s.tokens_after, s.tokens_before);
    EXPECT_EQ(s.num_new_tokens, 8);
    EXPECT_TRUE(s.has_scores);
    EXPECT_DOUBLE_EQ(s.score_nonneg_fraction, static_cast<double>(s.tokens_after) / s.tokens_before);
  }
  // update 0, layer 0, head 0: 8 tokens -> positions 4..7, newest 7
  const UpdateHeadStats& first = stats[0];
  EXPECT_EQ(first.update, 0);
  EXPECT_EQ(first.tokens_seen, 8);
  EXPECT_EQ(first.tokens_before, 8);
  EXPECT_EQ(first.tokens_after, 4);
  EXPECT_DOUBLE_EQ(first.mean_age, 1.5);
  EXPECT_DOUBLE_EQ(first.max_age, 3.0);
  EXPECT_DOUBLE_EQ(first.score_mean, 0.0);  // four +1, four -1
  // update 1, layer 1, head 1: 2 kept + 8 new = 10 before, 2 after
  const UpdateHeadStats& last = stats.back();
  EXPECT_EQ(last.update, 1);
  EXPECT_EQ(last.layer, 1);
  EXPECT_EQ(last.head, 1);
  EXPECT_EQ(last.tokens_before, 10);
  EXPECT_EQ(last.tokens_after, 2);
  // kept (4 + 2) per update over tokens seen (8 + 8, then 16 + 16)
  EXPECT_DOUBLE_EQ(controller.mean_retained_fraction(), 12.0 / 48.0);
  EXPECT_DOUBLE_EQ(controller.mean_retained_fraction(1), 12.0 / 48.0);
}

TEST(MemoryController, PolicyWithoutAttentionNeedsCausesNoRecording) {
  at::manual_seed(3);
  std::vector<Seen> log;
  MemoryController controller(std::make_unique<NewestPolicy>(std::vector<int64_t>{3, 3}, PolicyNeeds{false, true}, &log),
                              kLayers, delay_of(4));
  for (int l = 0; l < kLayers; ++l) EXPECT_EQ(controller.recorder(l), nullptr);
  auto caches = make_caches();
  run_host(controller, caches, 4, 4);
  ASSERT_EQ(log.size(), static_cast<size_t>(kLayers));
  for (const Seen& seen : log) {
    for (int64_t h = 0; h < kKvHeads; ++h) {
      EXPECT_EQ(seen.attention_rows[h], -1);  // no rows handed over
      ASSERT_TRUE(seen.keys[h].defined());
      EXPECT_EQ(seen.keys[h].size(0), 4);
    }
  }
}

TEST(MemoryController, KeysHandedOverAreTheCachedKeys) {
  at::manual_seed(4);
  std::vector<Seen> log;
  MemoryController controller(std::make_unique<NewestPolicy>(std::vector<int64_t>{8, 8}, PolicyNeeds{false, true}, &log),
                              1, delay_of(4));
  std::vector<LayerKvCache> caches(1, LayerKvCache(KvCacheOptions{kKvHeads, kDim}));
  const at::Tensor k = at::randn({kKvHeads, 4, kDim});
  prunable_attention(at::randn({kQueryHeads, 4, kDim}), k, at::randn({kKvHeads, 4, kDim}), at::arange(4, at::kLong),
                     caches[0], controller.recorder(0));
  controller.after_tokens(4, caches);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_TRUE(at::equal(log[0].keys[0], k[0]));
  EXPECT_TRUE(at::equal(log[0].keys[1], k[1]));
  EXPECT_TRUE(at::equal(log[0].positions[1], at::arange(4, at::kLong)));
}

TEST(MemoryController, FlushUpdatesWithTheBufferedTokens) {
  at::manual_seed(5);
  std::vector<Seen> log;
  MemoryController controller(std::make_unique<NewestPolicy>(std::vector<int64_t>{2, 2}, PolicyNeeds{true, false}, &log),
                              kLayers, delay_of(8));
  auto caches = make_caches();
  const std::vector<int64_t> updates = run_host(controller, caches, 12, 8, /*flush_at_end=*/true);
  EXPECT_EQ(updates, (std::vector<int64_t>{8, 12}));
  ASSERT_EQ(log.size(), 2u * kLayers);
  EXPECT_EQ(log.back().num_new_tokens, 4);
  EXPECT_EQ(log.back().attention_rows[0], 4);
  EXPECT_EQ(log.back().attention_cols[0], 2 + 4);
  EXPECT_EQ(controller.buffered_tokens(), 0);
  EXPECT_FALSE(controller.flush(caches));  // nothing buffered
}

TEST(MemoryController, RejectsHostsThatBreakTheProtocol) {
  MemoryController controller(std::make_unique<NewestPolicy>(std::vector<int64_t>{2, 2}, PolicyNeeds{true, false}, nullptr),
                              kLayers, delay_of(8));
  auto caches = make_caches();
  EXPECT_THROW(controller.after_tokens(9, caches), std::invalid_argument);  // more than the delay
  // tokens fed without recording attention
  for (int l = 0; l < kLayers; ++l) {
    prunable_attention(at::randn({kQueryHeads, 8, kDim}), at::randn({kKvHeads, 8, kDim}),
                       at::randn({kKvHeads, 8, kDim}), at::arange(8, at::kLong), caches[l], nullptr);
  }
  EXPECT_THROW(controller.after_tokens(8, caches), c10::Error);
  std::vector<LayerKvCache> one_cache(1, LayerKvCache(KvCacheOptions{kKvHeads, kDim}));
  EXPECT_THROW(controller.flush(one_cache), std::invalid_argument);
}

TEST(MemoryController, ResetForgetsTheSequence) {
  MemoryController controller(std::make_unique<NewestPolicy>(std::vector<int64_t>{2, 2}, PolicyNeeds{true, false}, nullptr),
                              kLayers, delay_of(4));
  auto caches = make_caches();
  run_host(controller, caches, 6, 4);
  controller.reset();
  EXPECT_EQ(controller.tokens_seen(), 0);
  EXPECT_EQ(controller.num_updates(), 0);
  EXPECT_TRUE(controller.statistics().empty());
  EXPECT_DOUBLE_EQ(controller.mean_retained_fraction(), 1.0);
  EXPECT_EQ(controller.tokens_until_update(), 4);
}

}  // namespace
}  // namespace namm
