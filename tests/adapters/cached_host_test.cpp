// Pins adapters/cached_host.h: the one prefill/decode loop honours the
// controller protocol for any host, returns the rows asked for, and refuses
// what a host must never be fed.
#include "adapters/cached_host.h"
#include "adapters/memory_controller.h"
#include "adapters/prunable_attention.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace namm {
namespace {

constexpr int64_t kLayers = 2, kHeads = 2, kDim = 4, kWidth = kHeads * kDim, kVocab = 5;

// A host without weights: every layer attends with q = k = v = the residual
// stream split into heads, so its output depends on what its cache holds.
// As a CausalLm, token t embeds to a fixed random row and the head is a
// fixed projection.
class TinyHost : public CausalLm {
 public:
  TinyHost() : table_(at::randn({kVocab, kWidth})), head_(at::randn({kVocab, kWidth})) {}

  int64_t num_layers() const override { return kLayers; }
  int64_t embedding_width() const override { return kWidth; }
  int64_t vocab_size() const override { return kVocab; }
  SequenceState new_state() const override {
    return SequenceState::with_layers(kLayers, KvCacheOptions{kHeads, kDim});
  }
  at::Tensor forward_layers(SequenceState& state, const at::Tensor& embeddings, const at::Tensor& positions,
                            const std::vector<AttentionRecorder*>& recorders) const override {
    chunk_sizes.push_back(embeddings.size(0));
    at::Tensor x = embeddings;  // [n, W]
    for (int64_t l = 0; l < kLayers; ++l) {
      const at::Tensor heads = x.view({x.size(0), kHeads, kDim}).transpose(0, 1);  // [H, n, D]
      const at::Tensor out = prunable_attention(heads, heads, heads, positions, state.caches[static_cast<size_t>(l)],
                                                recorders.empty() ? nullptr : recorders[static_cast<size_t>(l)]);
      x = x + out.transpose(0, 1).reshape({x.size(0), kWidth});
    }
    return x;
  }
  at::Tensor embed(const at::Tensor& ids) const override { return at::embedding(table_, ids); }
  at::Tensor logits(const at::Tensor& hidden) const override { return at::linear(hidden, head_); }
  std::string summary() const override { return "tiny host"; }
  std::vector<std::pair<std::string, at::Tensor>> hf_named_parameters() const override { return {}; }

  mutable std::vector<int64_t> chunk_sizes;  // what forward_layers was fed, in order

 private:
  at::Tensor table_, head_;
};

// Keeps the newest `keep` tokens of every head and counts the queries each update saw.
class KeepNewest : public MemoryPolicy {
 public:
  KeepNewest(int64_t keep, std::vector<int64_t>* queries) : keep_(keep), queries_(queries) {}
  std::string name() const override { return "keep-newest"; }
  PolicyNeeds needs() const override { return {true, false}; }
  void reset() override {}
  LayerDecision update(const LayerObservation& observation) override {
    if (observation.layer == 0) queries_->push_back(observation.num_new_tokens);
    LayerDecision decision;
    for (const HeadObservation& head : observation.heads) {
      const int64_t tokens = head.positions.size(0);
      EXPECT_EQ(head.attention.size(0), observation.num_new_tokens);  // the rows were recorded
      const int64_t kept = std::min(tokens, keep_);
      decision.heads.push_back({at::arange(tokens - kept, tokens, at::kLong), at::Tensor()});
    }
    return decision;
  }

 private:
  int64_t keep_;
  std::vector<int64_t>* queries_;
};

MemoryController make_controller(int64_t delay, int64_t keep, std::vector<int64_t>* queries) {
  ControllerOptions options;
  options.delay = delay;
  return MemoryController(std::make_unique<KeepNewest>(keep, queries), kLayers, options);
}

TEST(CachedHost, FeedSequenceNeverCutsAnUpdateAndEveryUpdateSeesDelayQueries) {
  at::manual_seed(0);
  const TinyHost host;
  std::vector<int64_t> queries;
  MemoryController controller = make_controller(/*delay=*/6, /*keep=*/4, &queries);
  SequenceState state = host.new_state();
  feed_sequence(host, state, at::randn({25, kWidth}), /*max_chunk=*/4, &controller);
  // chunks of at most 4, cut at every multiple of the delay
  EXPECT_EQ(host.chunk_sizes, (std::vector<int64_t>{4, 2, 4, 2, 4, 2, 4, 2, 1}));
  EXPECT_EQ(queries, (std::vector<int64_t>{6, 6, 6, 6}));
  EXPECT_EQ(state.next_position, 25);
  EXPECT_EQ(state.caches[1].length(0), 5);  // 4 kept at the last update, then 1 more
  EXPECT_EQ(controller.tokens_seen(), 25);
}

TEST(CachedHost, LastRowIsTheLastRowOfAllRows) {
  at::manual_seed(1);
  const TinyHost host;
  const at::Tensor embeddings = at::randn({13, kWidth});
  SequenceState all_state = host.new_state(), last_state = host.new_state();
  const at::Tensor all = feed_sequence(host, all_state, embeddings, 5);
  const at::Tensor last = feed_sequence(host, last_state, embeddings, 5, nullptr, HiddenRows::kLast);
  ASSERT_EQ(all.sizes(), (at::IntArrayRef{13, kWidth}));
  ASSERT_EQ(last.sizes(), (at::IntArrayRef{1, kWidth}));
  EXPECT_TRUE(at::equal(all.narrow(0, 12, 1), last));
}

TEST(CachedHost, ChunkingDoesNotChangeTheResultWithoutEviction) {
  at::manual_seed(2);
  const TinyHost host;
  const at::Tensor embeddings = at::randn({17, kWidth});
  SequenceState whole = host.new_state(), chunked = host.new_state();
  const at::Tensor a = feed_sequence(host, whole, embeddings, 0);
  const at::Tensor b = feed_sequence(host, chunked, embeddings, 3);
  EXPECT_TRUE(at::allclose(a, b, 1e-5, 1e-6));
}

TEST(CachedHost, PrefillThenDecodeMatchesOnePassOverTheWholeSequence) {
  at::manual_seed(3);
  const TinyHost host;
  const at::Tensor ids = at::tensor(std::vector<int64_t>{1, 4, 2, 0, 3, 3}, at::kLong);
  SequenceState stepwise = host.new_state(), whole = host.new_state();
  prefill_tokens(host, stepwise, ids.narrow(0, 0, 5), 2);
  const at::Tensor next = decode_token(host, stepwise, 3);  // [V]
  const at::Tensor all = prefill_embeddings(host, whole, host.embed(ids), 0, nullptr, /*all_logits=*/true);  // [6, V]
  ASSERT_EQ(next.sizes(), (at::IntArrayRef{kVocab}));
  EXPECT_TRUE(at::allclose(next, all[5], 1e-5, 1e-6));
  EXPECT_EQ(stepwise.next_position, 6);
}

TEST(CachedHost, FeedChunkRefusesMoreThanTheControllerAllowsBeforeTouchingTheCaches) {
  const TinyHost host;
  std::vector<int64_t> queries;
  MemoryController controller = make_controller(/*delay=*/4, /*keep=*/2, &queries);
  SequenceState state = host.new_state();
  EXPECT_THROW(feed_chunk(host, state, at::zeros({5, kWidth}), &controller), c10::Error);
  EXPECT_EQ(state.caches[0].length(0), 0);
  EXPECT_EQ(state.next_position, 0);
  EXPECT_TRUE(host.chunk_sizes.empty());
}

TEST(CachedHost, FeedRefusesAStateOrEmbeddingsOfTheWrongShape) {
  const TinyHost host;
  SequenceState wrong = SequenceState::with_layers(kLayers + 1, KvCacheOptions{kHeads, kDim});
  EXPECT_THROW(feed_chunk(host, wrong, at::zeros({1, kWidth})), c10::Error);
  SequenceState state = host.new_state();
  EXPECT_THROW(feed_chunk(host, state, at::zeros({1, kWidth + 1})), c10::Error);
  EXPECT_THROW(feed_chunk(host, state, at::zeros({0, kWidth})), c10::Error);
  EXPECT_THROW(feed_sequence(host, state, at::zeros({3, kWidth}), -1), c10::Error);
}

TEST(SequenceState, CountsTokensAndBytesOverLayersAndClears) {
  SequenceState state = SequenceState::with_layers(2, KvCacheOptions{2, 4});
  state.caches[0].append(at::zeros({2, 3, 4}), at::zeros({2, 3, 4}), at::arange(3, at::kLong));
  state.caches[1].append(at::zeros({2, 1, 4}), at::zeros({2, 1, 4}), at::arange(1, at::kLong));
  state.caches[1].keep(0, at::empty({0}, at::kLong));
  EXPECT_DOUBLE_EQ(state.mean_cached_tokens(0), 3.0);
  EXPECT_DOUBLE_EQ(state.mean_cached_tokens(1), 0.5);
  EXPECT_DOUBLE_EQ(state.mean_cached_tokens(), 1.75);
  EXPECT_EQ(state.cached_tokens_per_layer(), (std::vector<double>{3.0, 0.5}));
  EXPECT_EQ(state.used_bytes(), (3 * 2 + 1) * 4 * 2 * 4);
  EXPECT_THROW(state.mean_cached_tokens(2), std::out_of_range);
  state.next_position = 9;
  state.clear();
  EXPECT_EQ(state.next_position, 0);
  EXPECT_EQ(state.used_bytes(), 0);
}

}  // namespace
}  // namespace namm
