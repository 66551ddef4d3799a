#include "core/recency.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace namm {
namespace {

TEST(RecencyEmbedding, SinBlockThenCosBlockOfAgeTimesFrequency) {
  const at::Tensor positions = at::tensor(std::vector<int64_t>{0, 7, 100});
  const at::Tensor e = recency_embedding(positions, 100, 8, 50000.0);
  ASSERT_EQ(e.sizes(), at::IntArrayRef({3, 8}));
  EXPECT_EQ(e.scalar_type(), at::kFloat);
  const int64_t ages[] = {100, 93, 0};
  for (int t = 0; t < 3; ++t) {
    for (int k = 0; k < 4; ++k) {
      const double f = 1.0 / std::pow(50000.0, k / 4.0);
      EXPECT_NEAR(e[t][k].item<float>(), std::sin(ages[t] * f), 1e-6) << t << "," << k;
      EXPECT_NEAR(e[t][4 + k].item<float>(), std::cos(ages[t] * f), 1e-6) << t << "," << k;
    }
  }
}

TEST(RecencyEmbedding, NewestTokenHasZeroSinAndUnitCos) {
  const at::Tensor e = recency_embedding(at::tensor(std::vector<int64_t>{42}), 42);
  EXPECT_TRUE(at::equal(e.slice(1, 0, 4), at::zeros({1, 4})));
  EXPECT_TRUE(at::equal(e.slice(1, 4, 8), at::ones({1, 4})));
}

TEST(RecencyEmbedding, DependsOnlyOnAge) {
  const at::Tensor a = recency_embedding(at::tensor(std::vector<int64_t>{10, 20}), 30);
  const at::Tensor b = recency_embedding(at::tensor(std::vector<int64_t>{1010, 1020}), 1030);
  EXPECT_TRUE(at::allclose(a, b));
}

TEST(RecencyEmbedding, RejectsOddDim) {
  EXPECT_THROW(recency_embedding(at::tensor(std::vector<int64_t>{1}), 1, 7), c10::Error);
}

}  // namespace
}  // namespace namm
