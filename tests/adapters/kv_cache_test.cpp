#include "adapters/kv_cache.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace namm {
namespace {

// k, v [H, n, D] whose entries encode (head, position, dim), so rows can be
// traced after compaction.
at::Tensor traced(int64_t heads, int64_t first, int64_t n, int64_t dim, double offset) {
  const at::Tensor h = at::arange(heads, at::kFloat).view({heads, 1, 1});
  const at::Tensor p = at::arange(first, first + n, at::kFloat).view({1, n, 1});
  const at::Tensor d = at::arange(dim, at::kFloat).view({1, 1, dim});
  return h * 100000 + p * 10 + d * 0.001 + offset;  // [H, n, D]
}

at::Tensor positions_of(int64_t first, int64_t n) { return at::arange(first, first + n, at::kLong); }

KvCacheOptions small_options(int64_t heads = 2, int64_t dim = 4) {
  KvCacheOptions options;
  options.num_heads = heads;
  options.head_dim = dim;
  return options;
}

TEST(LayerKvCache, AppendStoresRowsAndPositionsPerHead) {
  LayerKvCache cache(small_options());
  cache.append(traced(2, 0, 3, 4, 0), traced(2, 0, 3, 4, 0.5), positions_of(0, 3));
  cache.append(traced(2, 3, 2, 4, 0), traced(2, 3, 2, 4, 0.5), positions_of(3, 2));
  for (int64_t h = 0; h < 2; ++h) {
    EXPECT_EQ(cache.length(h), 5);
    EXPECT_TRUE(at::equal(cache.positions(h), positions_of(0, 5)));
    EXPECT_TRUE(at::equal(cache.keys(h), traced(2, 0, 5, 4, 0)[h]));
    EXPECT_TRUE(at::equal(cache.values(h), traced(2, 0, 5, 4, 0.5)[h]));
  }
  EXPECT_EQ(cache.tokens_appended(), 5);
  EXPECT_EQ(cache.newest_position(), 4);
}

TEST(LayerKvCache, KeepRetainsExactlyTheChosenRowsAndTheirPositions) {
  LayerKvCache cache(small_options());
  cache.append(traced(2, 0, 8, 4, 0), traced(2, 0, 8, 4, 0.5), positions_of(0, 8));
  const at::Tensor keep = at::tensor({1, 4, 7}, at::kLong);
  cache.keep(0, keep);
  EXPECT_EQ(cache.length(0), 3);
  EXPECT_EQ(cache.length(1), 8);
  EXPECT_TRUE(at::equal(cache.positions(0), keep));
  EXPECT_TRUE(at::equal(cache.keys(0), traced(2, 0, 8, 4, 0)[0].index_select(0, keep)));
  EXPECT_TRUE(at::equal(cache.values(0), traced(2, 0, 8, 4, 0.5)[0].index_select(0, keep)));
  // the other head is untouched
  EXPECT_TRUE(at::equal(cache.keys(1), traced(2, 0, 8, 4, 0)[1]));
}

TEST(LayerKvCache, PerHeadLengthsCanDiffer) {
  LayerKvCache cache(small_options(3));
  cache.append(traced(3, 0, 6, 4, 0), traced(3, 0, 6, 4, 0), positions_of(10, 6));
  cache.keep_all_heads({at::tensor({5}, at::kLong), at::arange(6, at::kLong), at::tensor({0, 2, 5}, at::kLong)});
  EXPECT_EQ(cache.length(0), 1);
  EXPECT_EQ(cache.length(1), 6);
  EXPECT_EQ(cache.length(2), 3);
  EXPECT_EQ(cache.max_length(), 6);
  EXPECT_TRUE(at::equal(cache.positions(2), at::tensor({10, 12, 15}, at::kLong)));
  const int64_t expected_used = (1 + 6 + 3) * 4 * 2 * 4;
  EXPECT_EQ(cache.used_bytes(), expected_used);
}

TEST(LayerKvCache, LargeEvictionReleasesStorage) {
  LayerKvCache cache(small_options(2, 64));
  cache.append(at::randn({2, 4096, 64}), at::randn({2, 4096, 64}), positions_of(0, 4096));
  const int64_t full = cache.bytes();
  EXPECT_GE(full, cache.used_bytes());
  EXPECT_GE(full, 2 * 4096 * 64 * 2 * 4);
  cache.keep_all_heads({at::arange(4000, 4096, at::kLong), at::arange(0, 4096, 64, at::kLong)});
  // shrink to fit: allocated bytes equal the bytes in use
  EXPECT_EQ(cache.bytes(), cache.used_bytes());
  EXPECT_EQ(cache.bytes(), (96 + 64) * 64 * 2 * 4);
  EXPECT_LT(cache.bytes() * 20, full);
}

TEST(LayerKvCache, SmallEvictionCompactsInPlace) {
  LayerKvCache cache(small_options());
  cache.append(traced(2, 0, 64, 4, 0), traced(2, 0, 64, 4, 0), positions_of(0, 64));
  const int64_t capacity = cache.capacity(0);
  const at::Tensor keep = at::arange(1, 64, at::kLong);  // drop only token 0
  cache.keep(0, keep);
  EXPECT_EQ(cache.capacity(0), capacity);
  EXPECT_TRUE(at::equal(cache.keys(0), traced(2, 0, 64, 4, 0)[0].narrow(0, 1, 63)));
}

TEST(LayerKvCache, AppendAfterEvictionExtendsTheKeptTokens) {
  LayerKvCache cache(small_options());
  cache.append(traced(2, 0, 40, 4, 0), traced(2, 0, 40, 4, 0.5), positions_of(0, 40));
  cache.keep_all_heads({at::tensor({3, 30}, at::kLong), at::tensor({39}, at::kLong)});
  cache.append(traced(2, 40, 5, 4, 0), traced(2, 40, 5, 4, 0.5), positions_of(40, 5));
  EXPECT_TRUE(at::equal(cache.positions(0), at::tensor({3, 30, 40, 41, 42, 43, 44}, at::kLong)));
  EXPECT_TRUE(at::equal(cache.positions(1), at::tensor({39, 40, 41, 42, 43, 44}, at::kLong)));
  const at::Tensor all_keys = traced(2, 0, 45, 4, 0);
  const at::Tensor all_values = traced(2, 0, 45, 4, 0.5);
  EXPECT_TRUE(at::equal(cache.keys(0), all_keys[0].index_select(0, cache.positions(0))));
  EXPECT_TRUE(at::equal(cache.values(1), all_values[1].index_select(0, cache.positions(1))));
}

TEST(LayerKvCache, EvictingEverythingThenAppendingWorks) {
  LayerKvCache cache(small_options());
  cache.append(traced(2, 0, 4, 4, 0), traced(2, 0, 4, 4, 0), positions_of(0, 4));
  cache.keep(1, at::empty({0}, at::kLong));
  EXPECT_EQ(cache.length(1), 0);
  EXPECT_EQ(cache.keys(1).size(0), 0);
  cache.append(traced(2, 4, 1, 4, 0), traced(2, 4, 1, 4, 0), positions_of(4, 1));
  EXPECT_TRUE(at::equal(cache.positions(1), at::tensor({4}, at::kLong)));
  EXPECT_TRUE(at::equal(cache.keys(1), traced(2, 4, 1, 4, 0)[1]));
}

TEST(LayerKvCache, ClearReleasesEverything) {
  LayerKvCache cache(small_options());
  cache.append(traced(2, 0, 10, 4, 0), traced(2, 0, 10, 4, 0), positions_of(0, 10));
  cache.clear();
  EXPECT_EQ(cache.bytes(), 0);
  EXPECT_EQ(cache.length(0), 0);
  EXPECT_EQ(cache.newest_position(), -1);
  cache.append(traced(2, 0, 2, 4, 0), traced(2, 0, 2, 4, 0), positions_of(0, 2));  // positions may restart
  EXPECT_EQ(cache.length(1), 2);
}

TEST(LayerKvCache, CopiesOwnTheirStorage) {
  LayerKvCache original(small_options());
  original.append(traced(2, 0, 40, 4, 0), traced(2, 0, 40, 4, 0), positions_of(0, 40));
  LayerKvCache copy = original;
  copy.keep(0, at::arange(1, 40, at::kLong));  // compacts in place in the copy
  copy.append(traced(2, 40, 3, 4, 7), traced(2, 40, 3, 4, 7), positions_of(40, 3));
  EXPECT_EQ(original.length(0), 40);
  EXPECT_TRUE(at::equal(original.keys(0), traced(2, 0, 40, 4, 0)[0]));
  EXPECT_EQ(copy.length(0), 42);
}

TEST(LayerKvCache, GrowthIsGeometric) {
  LayerKvCache cache(small_options(1, 2));
  int reallocations = 0;
  int64_t capacity = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    cache.append(at::ones({1, 1, 2}), at::ones({1, 1, 2}), positions_of(i, 1));
    if (cache.capacity(0) != capacity) ++reallocations;
    capacity = cache.capacity(0);
  }
  EXPECT_LE(reallocations, 8);
  EXPECT_LT(cache.capacity(0), 2 * 1000 + 1);
}

TEST(LayerKvCache, RejectsBadIndicesAndPositions) {
  LayerKvCache cache(small_options());
  cache.append(traced(2, 0, 4, 4, 0), traced(2, 0, 4, 4, 0), positions_of(0, 4));
  EXPECT_THROW(cache.keep(0, at::tensor({2, 1}, at::kLong)), c10::Error);   // not ascending
  EXPECT_THROW(cache.keep(0, at::tensor({0, 4}, at::kLong)), c10::Error);   // out of range
  EXPECT_THROW(cache.keep(2, at::tensor({0}, at::kLong)), c10::Error);      // no such head
  EXPECT_THROW(cache.append(traced(2, 3, 1, 4, 0), traced(2, 3, 1, 4, 0), positions_of(3, 1)), c10::Error);
  EXPECT_THROW(cache.append(at::ones({3, 1, 4}), at::ones({3, 1, 4}), positions_of(9, 1)), c10::Error);
  // a failed keep leaves the head intact
  EXPECT_EQ(cache.length(0), 4);
}

}  // namespace
}  // namespace namm
