#include "core/policy_registry.h"

#include "core/namm_model.h"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace namm {
namespace {

TEST(PolicyRegistry, EveryListedNameBuildsThePolicyOfThatName) {
  PolicySpec spec;
  spec.namm_model = std::make_shared<const NammModel>(NammModel::zeros(NammConfig{}));
  for (const std::string& name : policy_names()) {
    spec.name = name;
    std::unique_ptr<MemoryPolicy> policy = make_policy(spec);
    ASSERT_NE(policy, nullptr) << name;
    EXPECT_EQ(policy->name(), name);
  }
}

TEST(PolicyRegistry, ListsEveryBaselineAndNamm) {
  EXPECT_EQ(policy_names(), (std::vector<std::string>{"full", "namm", "h2o", "l2", "streaming", "tova", "recency",
                                                      "random", "snapkv", "pyramidkv", "adakv", "keydiff"}));
}

TEST(PolicyRegistry, UnknownNameThrowsWithTheChoices) {
  PolicySpec spec;
  spec.name = "lru";
  try {
    make_policy(spec);
    FAIL() << "no exception for 'lru'";
  } catch (const std::invalid_argument& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("'lru'"), std::string::npos) << message;
    for (const std::string& name : policy_names()) {
      EXPECT_NE(message.find(name), std::string::npos) << message;
    }
  }
}

TEST(PolicyRegistry, NammWithoutModelThrows) {
  PolicySpec spec;
  spec.name = "namm";
  EXPECT_THROW(make_policy(spec), std::invalid_argument);
}

TEST(PolicyRegistry, SpecOptionsReachThePolicy) {
  PolicySpec spec;
  spec.name = "h2o";
  spec.h2o_recent_share = 2.0;  // out of range: proves the value was passed on
  EXPECT_THROW(make_policy(spec), std::invalid_argument);
  spec.name = "streaming";
  spec.sinks = -1;
  EXPECT_THROW(make_policy(spec), std::invalid_argument);
}

}  // namespace
}  // namespace namm
