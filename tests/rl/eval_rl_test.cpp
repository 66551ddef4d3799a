// Pins rl/eval_rl: the rows and their order, results independent of the
// worker count, baselines at the NAMM's measured retained fraction, the
// fallback budget without a NAMM, the reports, and one-line errors.
#include "core/namm_model.h"
#include "rl/decision_transformer.h"
#include "rl/dt_checkpoint.h"
#include "rl/eval_rl.h"
#include "tests/rl/tiny_hopper.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace namm {
namespace {

using test_support::hopper_sidecar;
using test_support::tiny_hopper_model;

namespace fs = std::filesystem;

// random parameters: a NAMM that keeps part of the cache
std::shared_ptr<const NammModel> random_namm() {
  NammConfig config;
  config.delay = 16;
  NammModel model = NammModel::zeros(config);
  at::manual_seed(11);
  model.params = at::randn({config.bam.param_count()}, at::kFloat) * 0.5;
  return std::make_shared<const NammModel>(std::move(model));
}

EvalRlOptions small_options(int threads) {
  EvalRlOptions o;
  o.seeds = 2;
  o.episodes = 2;
  o.max_steps = 24;
  o.threads = threads;
  o.namm = random_namm();
  return o;
}

// one evaluation per thread count, shared by the tests below
const EvalRlEnvResult& evaluated(int threads) {
  static std::map<int, EvalRlEnvResult> cache;
  auto it = cache.find(threads);
  if (it == cache.end()) {
    it = cache.emplace(threads, evaluate_rl_env(tiny_hopper_model(), hopper_sidecar(), "hopper", small_options(threads)))
             .first;
  }
  return it->second;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(EvalRl, RowsComeInTheDocumentedOrderOverEverySeedAndEpisode) {
  const EvalRlEnvResult& r = evaluated(1);
  std::vector<std::string> names;
  for (const EvalRlRow& row : r.rows) names.push_back(row.name);
  EXPECT_EQ(names, (std::vector<std::string>{"window-20", "full", "namm", "h2o", "l2", "streaming", "recency", "snapkv",
                                             "pyramidkv", "adakv", "keydiff"}));
  for (const EvalRlRow& row : r.rows) {
    ASSERT_EQ(row.report.episodes.size(), 4u) << row.name;
    ASSERT_EQ(row.seed_mean_scores.size(), 2u) << row.name;
    // seed s, episode e: env seed 1000 s + e; every row sees the same episodes
    EXPECT_EQ(row.report.episodes[0].seed, 0u);
    EXPECT_EQ(row.report.episodes[1].seed, 1u);
    EXPECT_EQ(row.report.episodes[2].seed, 1000u);
    EXPECT_EQ(row.report.episodes[3].seed, 1001u);
    EXPECT_NEAR(row.seed_mean_scores[1],
                (row.report.episodes[2].normalized_score + row.report.episodes[3].normalized_score) / 2, 1e-9);
  }
  EXPECT_DOUBLE_EQ(r.rows[1].report.retained_fraction(), 1.0) << "the full cache keeps everything";
  EXPECT_LE(r.rows[0].report.retained_fraction(), 1.0) << "the window re-encodes at most 20 steps";
  EXPECT_EQ(r.delay, 16) << "the NAMM's own delay";
  EXPECT_FALSE(r.plot_kinds.empty());
  EXPECT_EQ(r.plot_policy, "namm");
  EXPECT_EQ(static_cast<int64_t>(r.plot_kinds.size()), r.rows[2].report.episodes[0].steps);
}

TEST(EvalRl, RowsDoNotDependOnTheThreadCount) {
  const EvalRlEnvResult& one = evaluated(1);
  const EvalRlEnvResult& two = evaluated(2);
  ASSERT_EQ(one.rows.size(), two.rows.size());
  for (size_t i = 0; i < one.rows.size(); ++i) {
    const RolloutReport& a = one.rows[i].report;
    const RolloutReport& b = two.rows[i].report;
    ASSERT_EQ(a.episodes.size(), b.episodes.size());
    for (size_t e = 0; e < a.episodes.size(); ++e) {
      EXPECT_EQ(a.episodes[e].steps, b.episodes[e].steps) << one.rows[i].name << " episode " << e;
      EXPECT_EQ(a.episodes[e].episode_return, b.episodes[e].episode_return) << one.rows[i].name << " episode " << e;
      EXPECT_EQ(a.episodes[e].mean_cached_tokens, b.episodes[e].mean_cached_tokens) << one.rows[i].name;
    }
    EXPECT_EQ(one.rows[i].budget, two.rows[i].budget);
  }
  EXPECT_EQ(one.namm_retained, two.namm_retained);
}

TEST(EvalRl, BaselinesRunAtTheNammsMeasuredRetainedFraction) {
  const EvalRlEnvResult& r = evaluated(1);
  const EvalRlRow& namm_row = r.rows[2];
  ASSERT_EQ(namm_row.name, "namm");
  const double kept = namm_row.report.retained_fraction();
  EXPECT_DOUBLE_EQ(r.namm_retained, kept);
  ASSERT_LT(kept, 0.95) << "the random NAMM should prune";
  EXPECT_DOUBLE_EQ(r.baseline_budget.fraction, kept);
  for (size_t i = 3; i < r.rows.size(); ++i) {
    EXPECT_EQ(r.rows[i].budget, (Budget{0, kept}.to_string())) << r.rows[i].name;
    const double retained = r.rows[i].report.retained_fraction();
    EXPECT_LT(retained, 1.0) << r.rows[i].name;
    // enforced at updates; between updates the cache grows by at most a delay's worth
    EXPECT_GT(retained, kept - 0.02) << r.rows[i].name;
    EXPECT_LT(retained, kept + 0.35) << r.rows[i].name;
  }
}

TEST(EvalRl, WithoutANammTheBaselinesUseTheFallbackBudget) {
  EvalRlOptions o = small_options(2);
  o.namm = nullptr;
  o.seeds = 1;
  o.max_steps = 12;
  o.fallback_budget = Budget::parse("30%");
  o.baselines = {"recency", "tova"};
  const EvalRlEnvResult r = evaluate_rl_env(tiny_hopper_model(), hopper_sidecar(), "hopper", o);
  std::vector<std::string> names;
  for (const EvalRlRow& row : r.rows) names.push_back(row.name);
  EXPECT_EQ(names, (std::vector<std::string>{"window-20", "full", "recency", "tova"}));
  EXPECT_LT(r.namm_retained, 0.0);
  EXPECT_EQ(r.rows[2].budget, "30%");
  EXPECT_EQ(r.delay, 64);
  EXPECT_EQ(r.plot_policy, "recency at 30.0%");
}

TEST(EvalRl, ReportsNameTheCommandAndEveryRow) {
  const EvalRlEnvResult& r = evaluated(1);
  const EvalRlOptions o = small_options(1);
  const std::string command = "namm eval-rl --env hopper --seeds 2";
  const std::string md = eval_rl_markdown({r}, o, command, {"walker2d: models/dt-walker2d: no Decision Transformer here"});
  EXPECT_NE(md.find(command), std::string::npos);
  EXPECT_NE(md.find("## hopper"), std::string::npos);
  EXPECT_NE(md.find("Skipped: walker2d"), std::string::npos);
  for (const EvalRlRow& row : r.rows) EXPECT_NE(md.find("| " + row.name + " |"), std::string::npos) << row.name;
  const nlohmann::json j = nlohmann::json::parse(eval_rl_json({r}, o, command));
  ASSERT_EQ(j["envs"].size(), 1u);
  EXPECT_EQ(j["envs"][0]["rows"].size(), r.rows.size());
  EXPECT_EQ(j["envs"][0]["rows"][2]["name"], "namm");
  EXPECT_EQ(j["envs"][0]["rows"][2]["episodes"].size(), 4u);
  EXPECT_EQ(j["envs"][0]["rows"][0]["kept_fraction_by_kind"], nullptr) << "the window keeps no cache";
}

TEST(EvalRl, MissingModelDirIsAOneLineErrorNamingIt) {
  const fs::path dir = fs::temp_directory_path() / ("namm_eval_rl_test_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string missing = (dir / "dt-walker2d").string();
  std::string message = error_of([&] { check_dt_dir(missing); });
  EXPECT_NE(message.find(missing), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
  fs::create_directories(missing);
  std::ofstream(fs::path(missing) / "config.json") << "{}";
  message = error_of([&] { check_dt_dir(missing); });
  EXPECT_NE(message.find("model.safetensors missing"), std::string::npos) << message;
  fs::remove_all(dir);
}

TEST(EvalRl, RefusesBadOptionsAndRecognisesRlNamms) {
  EvalRlOptions o = small_options(1);
  o.baselines = {"h2o", "full"};
  EXPECT_NE(error_of([&] { o.validate(); }).find("baseline 'full'"), std::string::npos);
  o.baselines = {"h2o", "h2o"};
  EXPECT_NE(error_of([&] { o.validate(); }).find("listed twice"), std::string::npos);
  o = small_options(1);
  o.delay = 24;  // the NAMM's hop is 16
  EXPECT_NE(error_of([&] { o.validate(); }).find("delay 24 is not a multiple"), std::string::npos);
  o = small_options(0);
  EXPECT_NE(error_of([&] { o.validate(); }).find("threads must be >= 1, got 0"), std::string::npos);
  EXPECT_TRUE(namm_evolved_on_rl(R"({"tasks": ["kv_retrieval", "hopper-medium"]})"));
  EXPECT_TRUE(namm_evolved_on_rl(R"({"domain": "RL"})"));
  EXPECT_FALSE(namm_evolved_on_rl(R"({"tasks": ["kv_retrieval", "passage_count"], "domain": "language"})"));
  EXPECT_FALSE(namm_evolved_on_rl("not json"));
}

TEST(EvalRl, ModelThatDoesNotFitTheEnvIsRefusedBeforeAnyWork) {
  EvalRlOptions o = small_options(2);
  const std::string message =
      error_of([&] { evaluate_rl_env(tiny_hopper_model(), hopper_sidecar(), "walker2d", o); });
  EXPECT_NE(message.find("walker2d"), std::string::npos) << message;
}

}  // namespace
}  // namespace namm
