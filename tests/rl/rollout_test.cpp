// Pins rl/rollout: the episode-long cache, pruning that really shrinks it,
// the sliding-window baseline, determinism, token-kind statistics, bad options.
#include "adapters/memory_controller.h"
#include "core/namm_model.h"
#include "rl/decision_transformer.h"
#include "rl/dt_checkpoint.h"
#include "rl/mujoco_env.h"
#include "rl/rollout.h"
#include "tests/rl/tiny_hopper.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace namm {
namespace {

using test_support::hopper_sidecar;
using test_support::tiny_hopper_model;

RolloutOptions short_options(const std::string& policy, int max_steps = 40) {
  RolloutOptions o;
  o.policy.name = policy;
  o.episodes = 1;
  o.max_steps = max_steps;
  o.seed = 11;
  return o;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(Rollout, FullCacheKeepsEveryTokenOfTheEpisode) {
  at::set_num_threads(1);
  const DecisionTransformer model = tiny_hopper_model();
  const RolloutReport report = run_rollouts(model, hopper_sidecar(), "hopper", short_options("full"));
  ASSERT_EQ(report.episodes.size(), 1u);
  const EpisodeResult& e = report.episodes[0];
  ASSERT_GE(e.steps, 1);
  EXPECT_DOUBLE_EQ(e.mean_cached_tokens, e.mean_full_tokens);
  EXPECT_DOUBLE_EQ(report.retained_fraction(), 1.0);
  ASSERT_EQ(static_cast<int64_t>(e.token_kinds.size()), e.steps);
  // after step t's tokens: t+1 returns, t+1 states, t actions, per head
  const StepTokenKinds& last = e.token_kinds.back();
  const int64_t t = e.steps - 1;
  EXPECT_EQ(last.tokens_seen, 3 * t + 2);
  for (const auto& kept : last.kept) {
    EXPECT_EQ(kept[0], 2 * (t + 1));
    EXPECT_EQ(kept[1], 2 * (t + 1));
    EXPECT_EQ(kept[2], 2 * t);
  }
  EXPECT_NEAR(e.normalized_score, d4rl_normalized_score("hopper", e.episode_return), 1e-9);
}

TEST(Rollout, PruningPolicyReallyShrinksTheCache) {
  at::set_num_threads(1);
  const DecisionTransformer model = tiny_hopper_model();
  for (const std::string policy : {"recency", "h2o", "tova", "l2", "streaming", "random"}) {
    RolloutOptions options = short_options(policy, 60);
    options.policy.budget = Budget::parse("24");
    options.delay = 12;
    const RolloutReport report = run_rollouts(model, hopper_sidecar(), "hopper", options);
    const EpisodeResult& e = report.episodes[0];
    ASSERT_GE(e.steps, 12) << policy << " (the random model should stay up for a few steps)";
    EXPECT_GT(e.policy_updates, 0) << policy;
    EXPECT_LT(e.mean_cached_tokens, e.mean_full_tokens) << policy;
    for (const StepTokenKinds& step : e.token_kinds) {
      for (const auto& kept : step.kept) {
        // two heads, each at most budget + delay tokens
        EXPECT_LE(kept[0] + kept[1] + kept[2], 2 * (24 + 12)) << policy;
      }
    }
  }
}

TEST(Rollout, SameSeedGivesTheSameEpisode) {
  at::set_num_threads(1);
  const DecisionTransformer model = tiny_hopper_model();
  auto actions_of = [&](uint64_t seed) {
    RolloutOptions options = short_options("h2o", 30);
    options.policy.budget = Budget::parse("20");
    options.delay = 9;
    options.seed = seed;
    std::vector<double> actions;
    options.on_step = [&](const MujocoEnv& env, int, int64_t, const std::vector<double>& action) {
      EXPECT_EQ(env.name(), "hopper");
      actions.insert(actions.end(), action.begin(), action.end());
    };
    const RolloutReport report = run_rollouts(model, hopper_sidecar(), "hopper", options);
    actions.push_back(report.episodes[0].episode_return);
    return actions;
  };
  const std::vector<double> a = actions_of(5);
  EXPECT_EQ(a, actions_of(5));
  EXPECT_NE(a, actions_of(6));
}

TEST(Rollout, WindowModeEqualsTheCacheWhileTheEpisodeFitsInTheWindow) {
  at::set_num_threads(1);
  const DecisionTransformer model = tiny_hopper_model();
  const int64_t k = 8;
  auto actions_of = [&](int64_t window) {
    RolloutOptions options = short_options("full", static_cast<int>(k));
    options.window = window;
    std::vector<double> actions;
    options.on_step = [&](const MujocoEnv&, int, int64_t, const std::vector<double>& action) {
      actions.insert(actions.end(), action.begin(), action.end());
    };
    run_rollouts(model, hopper_sidecar(), "hopper", options);
    return actions;
  };
  const std::vector<double> cached = actions_of(0);
  const std::vector<double> window = actions_of(k);
  ASSERT_EQ(cached.size(), window.size());
  for (size_t i = 0; i < cached.size(); ++i) EXPECT_NEAR(cached[i], window[i], 1e-5) << i;
  // beyond the window the re-encoded context is shorter than the cache
  RolloutOptions options = short_options("full", 30);
  options.window = 4;
  const RolloutReport report = run_rollouts(model, hopper_sidecar(), "hopper", options);
  EXPECT_LT(report.mean_cached_tokens(), report.mean_full_tokens());
  EXPECT_EQ(report.policy, "window");
}

TEST(Rollout, TokenKindsJsonHoldsPerStepCountsPerLayer) {
  at::set_num_threads(1);
  const DecisionTransformer model = tiny_hopper_model();
  RolloutOptions options = short_options("recency", 20);
  options.policy.budget = Budget::parse("10");
  options.delay = 5;
  options.episodes = 2;
  const RolloutReport report = run_rollouts(model, hopper_sidecar(), "hopper", options);
  const auto json = nlohmann::json::parse(report.token_kinds_json());
  ASSERT_EQ(json["episodes"].size(), 2u);
  const auto& episode = json["episodes"][0];
  EXPECT_EQ(episode["kept"].size(), 2u);  // layers
  EXPECT_EQ(episode["kept"][0].size(), episode["tokens_seen"].size());
  EXPECT_EQ(episode["kept"][0][0].size(), 3u);
  EXPECT_EQ(json["kept_fraction_by_kind"].size(), 2u);
  const double fraction = json["kept_fraction_by_kind"][0][1].get<double>();
  EXPECT_GT(fraction, 0.0);
  EXPECT_LT(fraction, 1.0);
  const auto summary = nlohmann::json::parse(report.to_json());
  EXPECT_EQ(summary["policy"], "recency");
  EXPECT_EQ(summary["episodes"].size(), 2u);
}

TEST(Rollout, BadOptionsFailWithOneLine) {
  const DecisionTransformer model = tiny_hopper_model();
  RolloutOptions options = short_options("h2o");
  options.window = 20;
  std::string message = error_of([&] { run_rollouts(model, hopper_sidecar(), "hopper", options); });
  EXPECT_NE(message.find("memory policy 'h2o' has nothing to prune"), std::string::npos) << message;
  options = short_options("full");
  options.episodes = 0;
  message = error_of([&] { run_rollouts(model, hopper_sidecar(), "hopper", options); });
  EXPECT_NE(message.find("episodes must be >= 1, got 0"), std::string::npos) << message;
  options = short_options("full");
  message = error_of([&] { run_rollouts(model, DtSidecar(), "walker2d", options); });
  EXPECT_NE(message.find("the model takes states of 11 and actions of 3 values, but walker2d has 17 and 6"),
            std::string::npos)
      << message;
  DtSidecar walker = hopper_sidecar();
  walker.env = "walker2d";
  message = error_of([&] { run_rollouts(model, walker, "hopper", options); });
  EXPECT_NE(message.find("trained on walker2d, not hopper"), std::string::npos) << message;
  options.policy.name = "lru";
  message = error_of([&] { run_rollouts(model, hopper_sidecar(), "hopper", options); });
  EXPECT_NE(message.find("unknown memory policy 'lru'"), std::string::npos) << message;
}

// Speed of one 1000-step episode's model work (no physics) at the default
// train-dt size, one thread: the cache kept across the episode under several
// policies, and the 20-step re-encode baseline. A measurement, not a check:
// run with --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_ModelMs*'.
TEST(Rollout, DISABLED_ModelMsPerStepAtDefaultSize) {
  at::set_num_threads(1);
  DtConfig c;
  c.state_dim = 11;
  c.act_dim = 3;
  c.hidden_size = 128;
  c.n_layer = 3;
  c.n_head = 1;
  c.max_ep_len = 1000;
  at::manual_seed(0);
  const DecisionTransformer model(c);
  const int64_t steps = 1000;
  at::manual_seed(1);
  const at::Tensor states = at::randn({steps, 11});
  const at::Tensor actions = at::tanh(at::randn({steps, 3}));
  const at::Tensor returns = at::rand({steps, 1});
  using Clock = std::chrono::steady_clock;
  // CPU time of this thread: the machine is shared, wall time overstates the cost
  auto cpu_seconds = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  auto cached = [&](const std::string& name, const std::string& budget, int64_t delay) {
    std::unique_ptr<MemoryController> controller;
    if (name != "full") {
      PolicySpec spec;
      spec.name = name;
      spec.budget = Budget::parse(budget);
      if (name == "namm") {
        NammConfig config;
        config.delay = delay;
        spec.namm_model = std::make_shared<const NammModel>(NammModel::zeros(config));
      }
      ControllerOptions options;
      options.delay = delay;
      options.record_statistics = false;
      controller = std::make_unique<MemoryController>(make_policy(spec), 3, options);
    }
    SequenceState state = model->new_state();
    double kept = 0;
    const auto start = Clock::now();
    const double cpu_start = cpu_seconds();
    for (int64_t t = 0; t < steps; ++t) {
      const at::Tensor step = at::full({1}, t, at::kLong);
      std::vector<at::Tensor> tokens;
      if (t > 0) tokens.push_back(model->embed(DtTokenKind::kAction, actions.narrow(0, t - 1, 1), step - 1));
      tokens.push_back(model->embed(DtTokenKind::kReturn, returns.narrow(0, t, 1), step));
      tokens.push_back(model->embed(DtTokenKind::kState, states.narrow(0, t, 1), step));
      const at::Tensor hidden = model->feed(state, at::cat(tokens, 0), controller.get());
      model->predict_action_from(hidden[hidden.size(0) - 1]);
      kept += state.mean_cached_tokens();
    }
    const double ms = 1e3 * std::chrono::duration<double>(Clock::now() - start).count() / steps;
    const double cpu_ms = 1e3 * (cpu_seconds() - cpu_start) / steps;
    std::printf("cached %-8s budget %-4s delay %lld: %.3f ms/step CPU (%.3f wall), mean kv %.0f of %.0f tokens\n",
                name.c_str(), budget.c_str(), static_cast<long long>(delay), cpu_ms, ms, kept / steps, 1.5 * steps);
  };
  cached("full", "1", 64);
  cached("recency", "60", 64);
  cached("h2o", "60", 64);
  cached("tova", "60", 64);
  cached("l2", "60", 64);
  cached("namm", "1", 64);
  cached("h2o", "25%", 64);
  {
    const at::Tensor timesteps = at::arange(steps, at::kLong);
    const auto start = Clock::now();
    const double cpu_start = cpu_seconds();
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t begin = std::max<int64_t>(0, t + 1 - 20);
      const int64_t len = t + 1 - begin;
      DtBatch batch;
      batch.states = states.narrow(0, begin, len).unsqueeze(0);
      batch.actions = actions.narrow(0, begin, len).unsqueeze(0);
      batch.returns_to_go = returns.narrow(0, begin, len).unsqueeze(0);
      batch.timesteps = timesteps.narrow(0, begin, len).unsqueeze(0);
      at::NoGradGuard no_grad;
      model->forward(batch);
    }
    const double ms = 1e3 * std::chrono::duration<double>(Clock::now() - start).count() / steps;
    std::printf("window-20 re-encode: %.3f ms/step CPU (%.3f wall)\n", 1e3 * (cpu_seconds() - cpu_start) / steps, ms);
  }
}

}  // namespace
}  // namespace namm
