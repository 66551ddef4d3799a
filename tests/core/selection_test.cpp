// Pins the keep/evict rules: zero threshold, newest always kept, cap,
// per-head versus rectangular layout, tie order and layout names.
#include "core/selection.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>
#include <vector>

namespace namm {
namespace {

std::vector<int64_t> to_vector(const at::Tensor& indices) {
  EXPECT_EQ(indices.scalar_type(), at::kLong);
  const at::Tensor c = indices.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

at::Tensor scores_of(std::vector<float> values) {
  return at::tensor(values, at::kFloat);
}

using Indices = std::vector<int64_t>;

TEST(Selection, KeepsNonNegativeScoresInOrder) {
  const auto keep = select_tokens({scores_of({0.5f, -1.0f, 0.0f, -0.1f, 2.0f})}, {});
  ASSERT_EQ(keep.size(), 1u);
  EXPECT_EQ(to_vector(keep[0]), (Indices{0, 2, 4}));
}

TEST(Selection, AllNegativeKeepsOnlyNewest) {
  const auto keep = select_tokens({scores_of({-1.0f, -2.0f, -3.0f, -0.5f})}, {});
  EXPECT_EQ(to_vector(keep[0]), (Indices{3}));
}

TEST(Selection, NewestKeptEvenWhenCapWouldDropIt) {
  SelectionOptions options;
  options.cap = 2;
  const auto keep = select_tokens({scores_of({5.0f, 4.0f, 3.0f, -9.0f})}, options);
  EXPECT_EQ(to_vector(keep[0]), (Indices{0, 3}));
}

TEST(Selection, CapKeepsTopScores) {
  SelectionOptions options;
  options.cap = 3;
  const auto keep = select_tokens({scores_of({1.0f, 9.0f, 2.0f, 8.0f, 7.0f, 0.5f})}, options);
  // newest (index 5) is forced; then the two best of the rest.
  EXPECT_EQ(to_vector(keep[0]), (Indices{1, 3, 5}));
}

TEST(Selection, CapAboveCountChangesNothing) {
  SelectionOptions options;
  options.cap = 10;
  const auto keep = select_tokens({scores_of({1.0f, -1.0f, 2.0f})}, options);
  EXPECT_EQ(to_vector(keep[0]), (Indices{0, 2}));
}

TEST(Selection, EmptyHeadKeepsNothingAndOthersStillSelect) {
  const auto keep = select_tokens({at::zeros({0}), scores_of({-1.0f, 1.0f, -1.0f})}, {});
  ASSERT_EQ(keep.size(), 2u);
  EXPECT_EQ(keep[0].numel(), 0);
  EXPECT_EQ(keep[0].scalar_type(), at::kLong);
  EXPECT_EQ(to_vector(keep[1]), (Indices{1, 2}));
}

TEST(Selection, NoHeadsGiveNoDecisions) {
  EXPECT_TRUE(select_tokens({}, {}).empty());
}

TEST(Selection, NanScoresAreEvicted) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto keep = select_tokens({scores_of({nan, 1.0f, nan, 0.0f})}, {});
  EXPECT_EQ(to_vector(keep[0]), (Indices{1, 3}));
}

TEST(Selection, PerHeadKeepsEachHeadsOwnCount) {
  const auto keep = select_tokens(
      {scores_of({1.0f, 1.0f, 1.0f, 1.0f}), scores_of({-1.0f, 3.0f, -2.0f, -1.0f})}, {});
  EXPECT_EQ(to_vector(keep[0]), (Indices{0, 1, 2, 3}));
  EXPECT_EQ(to_vector(keep[1]), (Indices{1, 3}));
}

TEST(Selection, RectangularPadsEveryHeadToTheWidestWithItsBest) {
  SelectionOptions options;
  options.layout = CacheLayout::kRectangular;
  const auto keep = select_tokens({scores_of({1.0f, 1.0f, -1.0f, 1.0f}),
                                   scores_of({-1.0f, 3.0f, -2.0f, -1.0f})},
                                  options);
  EXPECT_EQ(to_vector(keep[0]), (Indices{0, 1, 3}));
  // head 1 wants 2 (index 1 and the newest) but must fill 3: its best
  // negative score (-1.0 at index 0) takes the third slot, not -2.0 at 2.
  EXPECT_EQ(to_vector(keep[1]), (Indices{0, 1, 3}));
}

TEST(Selection, RectangularNeverExceedsAShortHead) {
  SelectionOptions options;
  options.layout = CacheLayout::kRectangular;
  const auto keep =
      select_tokens({scores_of({1.0f, 1.0f, 1.0f, 1.0f, 1.0f}), scores_of({-1.0f, -1.0f})}, options);
  EXPECT_EQ(to_vector(keep[0]).size(), 5u);
  EXPECT_EQ(to_vector(keep[1]), (Indices{0, 1}));
}

TEST(Selection, RectangularRespectsCap) {
  SelectionOptions options;
  options.layout = CacheLayout::kRectangular;
  options.cap = 2;
  const auto keep = select_tokens({scores_of({4.0f, 3.0f, 2.0f, 1.0f}),
                                   scores_of({-4.0f, -3.0f, -2.0f, -1.0f})},
                                  options);
  EXPECT_EQ(to_vector(keep[0]), (Indices{0, 3}));
  EXPECT_EQ(to_vector(keep[1]), (Indices{2, 3}));
}

TEST(TopKAscending, TiesGoToNewerTokens) {
  const at::Tensor scores = scores_of({1.0f, 1.0f, 1.0f, 0.0f, 1.0f});
  EXPECT_EQ(to_vector(top_k_ascending(scores, 2)), (Indices{2, 4}));
  EXPECT_EQ(to_vector(top_k_ascending(scores, 4)), (Indices{0, 1, 2, 4}));
}

TEST(TopKAscending, ReturnsAscendingIndicesOfHighest) {
  const at::Tensor scores = scores_of({0.3f, 0.9f, 0.1f, 0.8f});
  EXPECT_EQ(to_vector(top_k_ascending(scores, 2)), (Indices{1, 3}));
  EXPECT_EQ(top_k_ascending(scores, 0).numel(), 0);
  EXPECT_EQ(to_vector(top_k_ascending(scores, 4)), (Indices{0, 1, 2, 3}));
}

TEST(TopKAscending, KOutOfRangeThrows) {
  EXPECT_THROW(top_k_ascending(scores_of({1.0f, 2.0f}), 3), c10::Error);
  EXPECT_THROW(top_k_ascending(scores_of({1.0f, 2.0f}), -1), c10::Error);
}

TEST(CacheLayoutText, RoundTrips) {
  for (CacheLayout layout : {CacheLayout::kPerHead, CacheLayout::kRectangular}) {
    EXPECT_EQ(parse_cache_layout(to_string(layout)), layout);
  }
  EXPECT_STREQ(to_string(CacheLayout::kPerHead), "per-head");
  EXPECT_STREQ(to_string(CacheLayout::kRectangular), "rectangular");
}

TEST(CacheLayoutText, UnknownTextThrowsWithTheText) {
  try {
    parse_cache_layout("square");
    FAIL() << "expected a throw";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("square"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace namm
