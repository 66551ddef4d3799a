#include "core/feature_norm.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace namm {
namespace {

TEST(FeatureNormalizer, IsIdentityBeforeAnyObservation) {
  FeatureNormalizer norm(3);
  const at::Tensor x = at::randn({4, 3});
  EXPECT_TRUE(at::equal(norm.apply(x), x));
}

TEST(FeatureNormalizer, MergedBatchesEqualOnePassStatistics) {
  at::manual_seed(1);
  const at::Tensor all = at::randn({100, 5}, at::kDouble) * 3 + 7;
  FeatureNormalizer norm(5);
  norm.observe(all.slice(0, 0, 13));
  norm.observe(all.slice(0, 13, 14));
  norm.observe(all.slice(0, 14, 14));  // empty batch is a no-op
  norm.observe(all.slice(0, 14, 100));
  EXPECT_EQ(norm.count(), 100);
  EXPECT_TRUE(at::allclose(norm.mean(), all.mean(0), 1e-12, 1e-12));
  EXPECT_TRUE(at::allclose(norm.variance(), all.var(0, /*unbiased=*/false), 1e-12, 1e-12));
}

TEST(FeatureNormalizer, ApplyStandardisesObservedRows) {
  at::manual_seed(2);
  const at::Tensor x = at::randn({500, 4}) * 5 - 2;
  FeatureNormalizer norm(4);
  norm.observe(x);
  const at::Tensor y = norm.apply(x);
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(y.mean(0), at::zeros({4}), 0, 1e-5));
  EXPECT_TRUE(at::allclose(y.var(0, false), at::ones({4}), 0, 1e-4));
}

TEST(FeatureNormalizer, FrozenStatisticsIgnoreNewRows) {
  FeatureNormalizer norm(2);
  norm.observe(at::randn({10, 2}));
  norm.freeze();
  const at::Tensor mean = norm.mean().clone();
  norm.observe(at::randn({10, 2}) + 100);
  EXPECT_EQ(norm.count(), 10);
  EXPECT_TRUE(at::equal(norm.mean(), mean));
}

TEST(FeatureNormalizer, SetRestoresStatisticsFrozen) {
  FeatureNormalizer norm;
  norm.set(at::tensor(std::vector<double>{1.0, 2.0}), at::tensor(std::vector<double>{4.0, 9.0}), 50);
  EXPECT_TRUE(norm.frozen());
  const at::Tensor y = norm.apply(at::tensor(std::vector<float>{3.0f, 2.0f}).view({1, 2}));
  EXPECT_NEAR(y[0][0].item<float>(), 2.0 / std::sqrt(4.0 + norm.eps), 1e-6);
  EXPECT_NEAR(y[0][1].item<float>(), 0.0, 1e-6);
}

TEST(FeatureNormalizer, RejectsWrongFeatureCount) {
  FeatureNormalizer norm(3);
  EXPECT_THROW(norm.observe(at::randn({2, 4})), c10::Error);
}

}  // namespace
}  // namespace namm
