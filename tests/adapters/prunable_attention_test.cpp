#include "adapters/prunable_attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace namm {
namespace {

constexpr int64_t kWidth = 16;
constexpr int64_t kQueryHeads = 4;
constexpr int64_t kKvHeads = 2;
constexpr int64_t kGroup = kQueryHeads / kKvHeads;
constexpr int64_t kDim = 4;
constexpr int kLayers = 2;
constexpr double kTolerance = 1e-5;

// A stack of plain GQA attention layers with residuals and random weights;
// layer 2's keys depend on layer 1's outputs, so a wrong cache shows up twice.
struct Stack {
  struct Layer {
    at::Tensor wq, wk, wv, wo;  // [W, Hq*D], [W, Hkv*D], [W, Hkv*D], [Hq*D, W]
  };
  std::vector<Layer> layers;

  explicit Stack(uint64_t seed) {
    at::manual_seed(seed);
    for (int l = 0; l < kLayers; ++l) {
      layers.push_back({at::randn({kWidth, kQueryHeads * kDim}) * 0.25, at::randn({kWidth, kKvHeads * kDim}) * 0.25,
                        at::randn({kWidth, kKvHeads * kDim}) * 0.25, at::randn({kQueryHeads * kDim, kWidth}) * 0.25});
    }
  }

  static at::Tensor heads_first(const at::Tensor& x, int64_t heads) {
    return x.view({x.size(0), heads, kDim}).transpose(0, 1).contiguous();  // [n, H*D] -> [H, n, D]
  }

  // Feeds a chunk x [n, W] at positions [n] through the caches; returns [n, W].
  at::Tensor forward(at::Tensor x, const at::Tensor& positions, std::vector<LayerKvCache>& caches,
                     std::vector<AttentionRecorder>* recorders = nullptr,
                     const std::vector<AttentionOptions>* options = nullptr) const {
    for (int l = 0; l < kLayers; ++l) {
      const Layer& w = layers[static_cast<size_t>(l)];
      const at::Tensor q = heads_first(at::mm(x, w.wq), kQueryHeads);  // [Hq, n, D]
      const at::Tensor k = heads_first(at::mm(x, w.wk), kKvHeads);     // [Hkv, n, D]
      const at::Tensor v = heads_first(at::mm(x, w.wv), kKvHeads);
      const at::Tensor out = prunable_attention(q, k, v, positions, caches[static_cast<size_t>(l)],
                                                recorders ? &(*recorders)[static_cast<size_t>(l)] : nullptr,
                                                options ? (*options)[static_cast<size_t>(l)] : AttentionOptions{});
      x = x + at::mm(out.transpose(0, 1).reshape({x.size(0), kQueryHeads * kDim}), w.wo);  // [n, W]
    }
    return x;
  }

  // One-shot reference over the whole sequence x [N, W] with plain tensor ops:
  // causal mask plus hidden[l][h] [N, N] (true hides key j from query i).
  // Returns outputs [N, W]; probs[l] receives the attention [Hq, N, N].
  at::Tensor reference(at::Tensor x, const std::vector<std::vector<at::Tensor>>& hidden,
                       std::vector<at::Tensor>* probs = nullptr) const {
    const int64_t tokens = x.size(0);
    const at::Tensor causal = at::ones({tokens, tokens}, at::kBool).triu(1);  // [N, N] true above the diagonal
    for (int l = 0; l < kLayers; ++l) {
      const Layer& w = layers[static_cast<size_t>(l)];
      const at::Tensor q = heads_first(at::mm(x, w.wq), kQueryHeads);                            // [Hq, N, D]
      const at::Tensor k = heads_first(at::mm(x, w.wk), kKvHeads).repeat_interleave(kGroup, 0);  // [Hq, N, D]
      const at::Tensor v = heads_first(at::mm(x, w.wv), kKvHeads).repeat_interleave(kGroup, 0);
      at::Tensor scores = at::matmul(q, k.transpose(1, 2)) / std::sqrt(static_cast<double>(kDim));  // [Hq, N, N]
      for (int64_t hq = 0; hq < kQueryHeads; ++hq) {
        at::Tensor mask = causal;
        if (!hidden.empty()) mask = mask.logical_or(hidden[static_cast<size_t>(l)][static_cast<size_t>(hq / kGroup)]);
        scores[hq].masked_fill_(mask, -std::numeric_limits<double>::infinity());
      }
      const at::Tensor p = scores.softmax(-1);
      if (probs) probs->push_back(p);
      const at::Tensor out = at::matmul(p, v);  // [Hq, N, D]
      x = x + at::mm(out.transpose(0, 1).reshape({tokens, kQueryHeads * kDim}), w.wo);
    }
    return x;
  }
};

std::vector<LayerKvCache> make_caches() {
  KvCacheOptions options;
  options.num_heads = kKvHeads;
  options.head_dim = kDim;
  return std::vector<LayerKvCache>(kLayers, LayerKvCache(options));
}

// Feeds x [N, W] in chunks of the given sizes (cycled); returns outputs [N, W].
at::Tensor feed_chunked(const Stack& stack, const at::Tensor& x, int64_t first_position, std::vector<int64_t> sizes,
                        std::vector<LayerKvCache>& caches, std::vector<AttentionRecorder>* recorders = nullptr) {
  std::vector<at::Tensor> outputs;
  int64_t done = 0;
  for (size_t i = 0; done < x.size(0); ++i) {
    const int64_t n = std::min(sizes[i % sizes.size()], x.size(0) - done);
    const at::Tensor positions = at::arange(first_position + done, first_position + done + n, at::kLong);
    outputs.push_back(stack.forward(x.narrow(0, done, n), positions, caches, recorders));
    done += n;
  }
  return at::cat(outputs, 0);
}

TEST(PrunableAttention, OneShotPrefillEqualsFullCausalAttention) {
  at::set_num_threads(2);
  const Stack stack(1);
  const at::Tensor x = at::randn({24, kWidth});
  auto caches = make_caches();
  const at::Tensor got = stack.forward(x, at::arange(24, at::kLong), caches);
  EXPECT_TRUE(at::allclose(got, stack.reference(x, {}), kTolerance, kTolerance));
  EXPECT_EQ(caches[1].length(1), 24);
}

TEST(PrunableAttention, ChunkedAndOneAtATimeFeedingEqualFullCausalAttention) {
  const Stack stack(2);
  const at::Tensor x = at::randn({23, kWidth});
  const at::Tensor expected = stack.reference(x, {});
  auto chunked = make_caches();
  EXPECT_TRUE(at::allclose(feed_chunked(stack, x, 0, {5, 1, 3, 7}, chunked), expected, kTolerance, kTolerance));
  auto single = make_caches();
  EXPECT_TRUE(at::allclose(feed_chunked(stack, x, 0, {1}, single), expected, kTolerance, kTolerance));
}

// Evicted tokens per layer and KV head (as positions of a 12-token prefix);
// the heads evict different sets, so their caches differ in length.
std::vector<std::vector<std::vector<int64_t>>> evicted_sets() {
  return {{{0, 3, 4, 9}, {1, 2, 5, 6, 7, 8, 10}}, {{11}, {0, 1, 2, 3, 4, 5}}};
}

TEST(PrunableAttention, EvictionEqualsMaskingTheEvictedTokens) {
  const Stack stack(3);
  const int64_t prefix = 12;
  const int64_t total = 20;
  const at::Tensor x = at::randn({total, kWidth});
  const auto evicted = evicted_sets();

  // the reference: one shot over the full sequence, later queries blind to evicted keys
  std::vector<std::vector<at::Tensor>> hidden(kLayers);
  for (int l = 0; l < kLayers; ++l) {
    for (int64_t h = 0; h < kKvHeads; ++h) {
      at::Tensor mask = at::zeros({total, total}, at::kBool);
      for (int64_t position : evicted[l][h]) mask.narrow(0, prefix, total - prefix).select(1, position).fill_(true);
      hidden[l].push_back(mask);
    }
  }
  const at::Tensor expected = stack.reference(x, hidden).narrow(0, prefix, total - prefix);

  for (const std::vector<int64_t>& sizes : {std::vector<int64_t>{8}, std::vector<int64_t>{3, 2}, std::vector<int64_t>{1}}) {
    auto caches = make_caches();
    feed_chunked(stack, x.narrow(0, 0, prefix), 0, {5, 7}, caches);
    for (int l = 0; l < kLayers; ++l) {
      std::vector<at::Tensor> keep;
      for (int64_t h = 0; h < kKvHeads; ++h) {
        at::Tensor flags = at::ones({prefix}, at::kBool);
        for (int64_t position : evicted[l][h]) flags[position] = false;
        keep.push_back(at::nonzero(flags).view(-1));
      }
      caches[l].keep_all_heads(keep);
    }
    EXPECT_NE(caches[1].length(0), caches[1].length(1));
    const at::Tensor got = feed_chunked(stack, x.narrow(0, prefix, total - prefix), prefix, sizes, caches);
    EXPECT_TRUE(at::allclose(got, expected, kTolerance, kTolerance)) << "chunk size " << sizes[0] << " max diff "
                                                           << (got - expected).abs().max().item<double>() << " max abs " << expected.abs().max().item<double>();
  }

  // the same through the extra-mask hook of an un-evicted cache, one token at a time
  auto caches = make_caches();
  feed_chunked(stack, x.narrow(0, 0, prefix), 0, {prefix}, caches);
  std::vector<at::Tensor> outputs;
  for (int64_t t = prefix; t < total; ++t) {
    std::vector<AttentionOptions> options(kLayers);
    for (int l = 0; l < kLayers; ++l) {
      for (int64_t h = 0; h < kKvHeads; ++h) {
        at::Tensor mask = at::zeros({1, t + 1});
        for (int64_t position : evicted[l][h]) mask[0][position] = -std::numeric_limits<float>::infinity();
        options[l].extra_mask.push_back(mask);
      }
    }
    outputs.push_back(stack.forward(x.narrow(0, t, 1), at::tensor({t}, at::kLong), caches, nullptr, &options));
  }
  EXPECT_TRUE(at::allclose(at::cat(outputs, 0), expected, kTolerance, kTolerance));
}

TEST(PrunableAttention, RecordedRowsAreGroupAveragedSoftmaxRows) {
  const Stack stack(4);
  const int64_t total = 17;
  const at::Tensor x = at::randn({total, kWidth});
  std::vector<at::Tensor> probs;  // [l] -> [Hq, N, N]
  stack.reference(x, {}, &probs);
  for (const std::vector<int64_t>& sizes : {std::vector<int64_t>{total}, std::vector<int64_t>{4, 1, 6}}) {
    auto caches = make_caches();
    std::vector<AttentionRecorder> recorders(kLayers);
    feed_chunked(stack, x, 0, sizes, caches, &recorders);
    for (int l = 0; l < kLayers; ++l) {
      EXPECT_EQ(recorders[l].num_rows(), total);
      for (int64_t h = 0; h < kKvHeads; ++h) {
        const at::Tensor rows = recorders[l].rows(h, caches[l]);                         // [Q, T]
        const at::Tensor expected = probs[l].narrow(0, h * kGroup, kGroup).mean(0);     // [N, N]
        ASSERT_EQ(rows.sizes(), expected.sizes());
        EXPECT_TRUE(at::allclose(rows, expected, kTolerance, kTolerance)) << "layer " << l << " head " << h;
        EXPECT_TRUE(at::allclose(rows.sum(1), at::ones({total}), kTolerance, kTolerance));
        // a query never attends to a later key: zeros above the diagonal
        EXPECT_EQ(rows.triu(1).abs().max().item<float>(), 0.0f);
      }
    }
  }
}

TEST(PrunableAttention, RecordedRowsAfterEvictionAlignWithTheKeptTokens) {
  const Stack stack(5);
  const int64_t prefix = 12;
  const int64_t total = 18;
  const at::Tensor x = at::randn({total, kWidth});
  const auto evicted = evicted_sets();
  std::vector<std::vector<at::Tensor>> hidden(kLayers);
  for (int l = 0; l < kLayers; ++l) {
    for (int64_t h = 0; h < kKvHeads; ++h) {
      at::Tensor mask = at::zeros({total, total}, at::kBool);
      for (int64_t position : evicted[l][h]) mask.narrow(0, prefix, total - prefix).select(1, position).fill_(true);
      hidden[l].push_back(mask);
    }
  }
  std::vector<at::Tensor> probs;
  stack.reference(x, hidden, &probs);

  auto caches = make_caches();
  feed_chunked(stack, x.narrow(0, 0, prefix), 0, {prefix}, caches);
  for (int l = 0; l < kLayers; ++l) {
    std::vector<at::Tensor> keep;
    for (int64_t h = 0; h < kKvHeads; ++h) {
      at::Tensor flags = at::ones({prefix}, at::kBool);
      for (int64_t position : evicted[l][h]) flags[position] = false;
      keep.push_back(at::nonzero(flags).view(-1));
    }
    caches[l].keep_all_heads(keep);
  }
  std::vector<AttentionRecorder> recorders(kLayers);
  feed_chunked(stack, x.narrow(0, prefix, total - prefix), prefix, {2, 1}, caches, &recorders);
  for (int l = 0; l < kLayers; ++l) {
    for (int64_t h = 0; h < kKvHeads; ++h) {
      const at::Tensor rows = recorders[l].rows(h, caches[l]);  // [Q, T_h]
      const at::Tensor expected = probs[l]
                                      .narrow(0, h * kGroup, kGroup)
                                      .mean(0)
                                      .narrow(0, prefix, total - prefix)
                                      .index_select(1, caches[l].positions(h));  // [Q, T_h]
      ASSERT_EQ(rows.sizes(), expected.sizes());
      EXPECT_TRUE(at::allclose(rows, expected, kTolerance, kTolerance)) << "layer " << l << " head " << h;
      EXPECT_TRUE(at::allclose(rows.sum(1), at::ones({total - prefix}), kTolerance, kTolerance));
    }
  }
  // once the cache evicts again the buffered rows no longer line up
  caches[0].keep(0, at::tensor({0}, at::kLong));
  EXPECT_THROW(recorders[0].rows(0, caches[0]), c10::Error);
}

TEST(PrunableAttention, RejectsMismatchedShapes) {
  auto caches = make_caches();
  const at::Tensor positions = at::arange(3, at::kLong);
  EXPECT_THROW(prunable_attention(at::randn({3, 3, kDim}), at::randn({kKvHeads, 3, kDim}),
                                  at::randn({kKvHeads, 3, kDim}), positions, caches[0]),
               c10::Error);  // 3 query heads over 2 KV heads
  EXPECT_THROW(prunable_attention(at::randn({4, 3, kDim}), at::randn({kKvHeads, 2, kDim}),
                                  at::randn({kKvHeads, 2, kDim}), positions, caches[0]),
               c10::Error);  // k has 2 tokens, q has 3
}

}  // namespace
}  // namespace namm
