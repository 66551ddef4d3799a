// The linear behaviour policy, ARS (improvement, determinism, resume) and
// the gen-data pipeline on a tiny configuration (valid datasets whose
// rewards replay from the env, resume, option mismatch).
#include "rl/behaviour_policy.h"

#include "rl/gen_data.h"
#include "rl/mujoco_env.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace namm {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / "namm_behaviour_policy_test" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

/// A fast ARS configuration: short episodes, few directions.
ArsOptions tiny_ars(uint64_t seed = 3) {
  ArsOptions o = ArsOptions::defaults_for("hopper");
  o.directions = 4;
  o.top_directions = 2;
  o.step_size = 0.02;
  o.noise = 0.03;
  o.episode_steps = 100;
  o.eval_episodes = 2;
  o.seed = seed;
  return o;
}

TEST(ObservationNormalizer, MergeEqualsPushingEveryStateInOrder) {
  ObservationNormalizer all(2), left(2), right(2);
  const double xs[6][2] = {{1, 10}, {2, 20}, {4, -5}, {8, 0}, {-3, 1}, {0.5, 2}};
  for (int i = 0; i < 6; ++i) {
    all.push(xs[i]);
    (i < 4 ? left : right).push(xs[i]);
  }
  left.merge(right);
  EXPECT_EQ(left.count, 6);
  for (int j = 0; j < 2; ++j) {
    EXPECT_NEAR(left.mean[j], all.mean[j], 1e-12);
    EXPECT_NEAR(left.m2[j], all.m2[j], 1e-9);
  }
  // population std of column 0: mean 2.0833, checked against a direct sum.
  double m = 0, v = 0;
  for (auto& x : xs) m += x[0] / 6;
  for (auto& x : xs) v += (x[0] - m) * (x[0] - m) / 6;
  EXPECT_NEAR(all.stddev()[0], std::sqrt(v), 1e-12);
  EXPECT_EQ(ObservationNormalizer(2).stddev(), (std::vector<double>{1.0, 1.0}));
}

TEST(LinearPolicy, ActsAsAClippedLinearMapOfTheWhitenedState) {
  LinearPolicy p = LinearPolicy::zeros(2, 2);
  p.weights = {1.0, -2.0,   // action 0
               10.0, 10.0};  // action 1: saturates
  p.obs_mean = {1.0, 0.0};
  p.obs_std = {2.0, 4.0};
  const std::vector<double> a = p.act({2.0, 1.0});  // whitened (0.5, 0.25)
  EXPECT_DOUBLE_EQ(a[0], 0.5 - 0.5);
  EXPECT_DOUBLE_EQ(a[1], 1.0);
  EXPECT_THROW(p.act({1.0}), std::invalid_argument);
}

TEST(LinearPolicy, SaveLoadRoundTripAndCorruptFileNamesThePath) {
  const fs::path dir = fresh_dir("policy");
  LinearPolicy p = LinearPolicy::zeros(3, 2);
  p.weights = {0.1, 0.2, 0.3, -0.4, -0.5, 1.0 / 3.0};
  p.obs_mean = {1, 2, 3};
  p.obs_std = {0.5, 1, 2};
  const std::string path = (dir / "p.safetensors").string();
  save_behaviour_policy(p, path, {{"env", "hopper"}});
  std::map<std::string, std::string> meta;
  const LinearPolicy r = load_behaviour_policy(path, &meta);
  EXPECT_EQ(r.weights, p.weights);
  EXPECT_EQ(r.obs_mean, p.obs_mean);
  EXPECT_EQ(r.obs_std, p.obs_std);
  EXPECT_EQ(meta.at("env"), "hopper");
  fs::resize_file(path, fs::file_size(path) - 5);
  try {
    load_behaviour_policy(path);
    FAIL() << "truncated policy loaded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Ars, AFewIterationsRaiseTheHopperReturn) {
  // unshifted rewards, so the training objective is the return evaluated here
  // (100 steps: the zero policy scores about 97, a policy that moves forward more).
  ArsOptions o = tiny_ars();
  o.reward_shift = 0.0;
  ArsTrainer trainer(o);
  const double before = trainer.evaluate(trainer.policy(), 4, 99).mean();
  for (int i = 0; i < 12; ++i) trainer.step();
  const double after = trainer.evaluate(trainer.policy(), 4, 99).mean();
  EXPECT_GT(after, before + 50.0) << "before " << before << " after " << after;
  EXPECT_EQ(trainer.iteration(), 12);
  EXPECT_EQ(trainer.snapshots().size(), 12u);
  EXPECT_GT(trainer.env_steps(), 0);
}

TEST(Ars, SameSeedSameWeightsAnyThreadCountOtherSeedOtherWeights) {
  ArsTrainer a(tiny_ars(5)), b(tiny_ars(5)), c(tiny_ars(6));
  ArsOptions threaded = tiny_ars(5);
  threaded.threads = 2;
  ArsTrainer d(threaded);
  for (int i = 0; i < 3; ++i) {
    a.step();
    b.step();
    c.step();
    d.step();
  }
  EXPECT_EQ(a.policy().weights, b.policy().weights);
  EXPECT_EQ(a.policy().weights, d.policy().weights);
  EXPECT_EQ(a.policy().obs_std, d.policy().obs_std);
  EXPECT_EQ(a.env_steps(), d.env_steps());
  EXPECT_NE(a.policy().weights, c.policy().weights);
}

TEST(Ars, ResumeFromACheckpointMatchesAnUninterruptedRun) {
  const fs::path dir = fresh_dir("resume");
  const std::string path = (dir / "state.safetensors").string();
  ArsTrainer straight(tiny_ars());
  for (int i = 0; i < 4; ++i) straight.step();

  {
    ArsTrainer first(tiny_ars());
    for (int i = 0; i < 2; ++i) first.step();
    first.save(path);
  }  // "killed"
  ArsTrainer resumed(tiny_ars());
  resumed.load(path);
  EXPECT_EQ(resumed.iteration(), 2);
  for (int i = 0; i < 2; ++i) resumed.step();

  EXPECT_EQ(resumed.policy().weights, straight.policy().weights);
  EXPECT_EQ(resumed.policy().obs_mean, straight.policy().obs_mean);
  EXPECT_EQ(resumed.policy().obs_std, straight.policy().obs_std);
  EXPECT_EQ(resumed.env_steps(), straight.env_steps());
  EXPECT_EQ(resumed.best_iteration(), straight.best_iteration());
  EXPECT_EQ(resumed.best_policy().weights, straight.best_policy().weights);
  ASSERT_EQ(resumed.snapshots().size(), 4u);
  EXPECT_EQ(resumed.snapshots()[1].weights, straight.snapshots()[1].weights);
  EXPECT_EQ(resumed.history()[3].eval_return_mean, straight.history()[3].eval_return_mean);
}

TEST(Ars, LoadRefusesACheckpointWrittenWithOtherOptions) {
  const fs::path dir = fresh_dir("other_options");
  const std::string path = (dir / "state.safetensors").string();
  ArsTrainer a(tiny_ars(1));
  a.step();
  a.save(path);
  ArsTrainer b(tiny_ars(2));
  try {
    b.load(path);
    FAIL() << "loaded a checkpoint of another seed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(ArsOptions, RejectsBadValuesNamingThem) {
  ArsOptions o = tiny_ars();
  o.top_directions = 9;
  EXPECT_THROW(o.validate(), std::invalid_argument);
  EXPECT_THROW(ArsOptions::defaults_for("cheetah"), std::invalid_argument);
}

GenDataOptions tiny_gen(const fs::path& dir) {
  GenDataOptions o;
  o.env = "hopper";
  o.out_dir = dir.string();
  o.seed = 7;
  o.target_return = 1e9;  // unreachable: stops at max_iterations, takes the best
  o.max_iterations = 2;
  o.medium_steps = 400;
  o.replay_steps = 300;
  o.directions = 2;
  o.top_directions = 1;
  o.eval_episodes = 1;
  o.max_episode_steps = 60;
  o.command_line = "test";
  return o;
}

/// Replays every episode of d from its recorded seed with the stored actions
/// and checks the observations and rewards match exactly; returns episodes checked.
int64_t expect_replays(const OfflineDataset& d, MujocoEnv& env) {
  const nlohmann::json meta = nlohmann::json::parse(d.metadata_json);
  const uint64_t base = std::stoull(meta.at("episode_seed_base").get<std::string>());
  const std::vector<EpisodeRange> episodes = d.episodes();
  for (size_t e = 0; e < episodes.size(); ++e) {
    env.seed(dataset_episode_seed(base, static_cast<int64_t>(e)));
    std::vector<double> obs = env.reset();
    for (int64_t t = episodes[e].begin; t < episodes[e].end; ++t) {
      for (int64_t j = 0; j < d.observation_size; ++j) {
        EXPECT_EQ(static_cast<float>(obs[j]), d.observations[t * d.observation_size + j]) << "episode " << e << " step " << t;
      }
      std::vector<double> action(d.actions.begin() + t * d.action_size, d.actions.begin() + (t + 1) * d.action_size);
      const StepResult r = env.step(action);
      EXPECT_EQ(static_cast<float>(r.reward), d.rewards[t]) << "episode " << e << " step " << t;
      EXPECT_EQ(r.terminated, d.terminals[t] == 1) << "episode " << e << " step " << t;
      if (t + 1 < episodes[e].end) {
        EXPECT_FALSE(r.terminated || r.truncated);
      }
      obs = r.observation;
    }
  }
  return static_cast<int64_t>(episodes.size());
}

TEST(GenData, TinyRunWritesValidDatasetsWhoseRewardsReplayFromTheEnv) {
  const fs::path dir = fresh_dir("tiny");
  std::ostringstream log;
  const GenDataResult r = generate_offline_data(tiny_gen(dir), log);
  EXPECT_EQ(r.iterations, 2);
  EXPECT_FALSE(r.reached_target);
  EXPECT_NE(log.str().find("hopper iter 2/2"), std::string::npos) << log.str();
  for (const char* f : {"hopper-behaviour.safetensors", "hopper-medium.safetensors", "hopper-medium-replay.safetensors",
                        "trainer_state.safetensors", "options.json", "provenance.json"}) {
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  }
  MujocoEnvOptions env_options;
  env_options.max_episode_steps = 60;
  const std::unique_ptr<MujocoEnv> env = make_env("hopper", NAMM_SCENES_DIR, env_options);
  const OfflineDataset medium = load_offline_dataset((dir / "hopper-medium.safetensors").string());
  const OfflineDataset replay = load_offline_dataset((dir / "hopper-medium-replay.safetensors").string());
  EXPECT_EQ(medium.size(), 400);
  EXPECT_EQ(replay.size(), 300);
  EXPECT_EQ(medium.timeouts.back(), 1);  // the budget cut marks the last step
  EXPECT_GT(expect_replays(medium, *env), 1);
  EXPECT_GT(expect_replays(replay, *env), 1);
  // no episode is longer than the time limit; the ones at the limit are timeouts.
  for (const EpisodeRange& e : medium.episodes()) {
    EXPECT_LE(e.end - e.begin, 60);
    if (!e.terminated) {
      EXPECT_EQ(medium.timeouts[e.end - 1], 1);
    }
  }
  const nlohmann::json meta = nlohmann::json::parse(medium.metadata_json);
  EXPECT_EQ(meta.at("stats").at("steps"), 400);
  EXPECT_EQ(meta.at("command_line"), "test");
  const nlohmann::json provenance = nlohmann::json::parse(std::ifstream(dir / "provenance.json"));
  EXPECT_EQ(provenance.at("training").at("iterations"), 2);
  EXPECT_TRUE(provenance.at("datasets").contains("hopper-medium-replay"));
}

TEST(GenData, RerunKeepsFinishedFilesAndOtherOptionsAreRefused) {
  const fs::path dir = fresh_dir("rerun");
  std::ostringstream log;
  generate_offline_data(tiny_gen(dir), log);
  const auto written = fs::last_write_time(dir / "hopper-medium.safetensors");
  std::ostringstream again;
  const GenDataResult r = generate_offline_data(tiny_gen(dir), again);
  EXPECT_EQ(fs::last_write_time(dir / "hopper-medium.safetensors"), written);
  EXPECT_EQ(again.str().find("iter "), std::string::npos) << again.str();  // no training
  EXPECT_NE(again.str().find("kept"), std::string::npos) << again.str();
  EXPECT_EQ(r.datasets.size(), 2u);
  EXPECT_EQ(r.datasets[0].steps, 400);

  GenDataOptions other = tiny_gen(dir);
  other.seed = 8;
  try {
    generate_offline_data(other, log);
    FAIL() << "ran over a directory of another seed";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(dir.string()), std::string::npos) << m;
    EXPECT_NE(m.find("seed"), std::string::npos) << m;
  }
}

TEST(GenData, ResumeAfterAKillInTrainingWritesTheSameData) {
  const fs::path straight_dir = fresh_dir("straight"), killed_dir = fresh_dir("killed");
  GenDataOptions o = tiny_gen(straight_dir);
  o.max_iterations = 3;
  std::ostringstream log;
  generate_offline_data(o, log);

  // the killed run: options.json and a checkpoint after one iteration.
  GenDataOptions k = o;
  k.out_dir = killed_dir.string();
  {
    std::ostringstream first;
    GenDataOptions one = k;
    generate_offline_data(one, first);  // writes options.json (and everything else)
    for (const char* f : {"hopper-behaviour.safetensors", "hopper-medium.safetensors",
                          "hopper-medium-replay.safetensors", "trainer_state.safetensors"}) {
      fs::remove(killed_dir / f);
    }
    ArsTrainer partial(k.resolved().ars_options());
    partial.step();
    partial.save((killed_dir / "trainer_state.safetensors").string());
  }
  std::ostringstream resumed_log;
  generate_offline_data(k, resumed_log);
  EXPECT_NE(resumed_log.str().find("resumed"), std::string::npos) << resumed_log.str();
  EXPECT_EQ(resumed_log.str().find("iter 1/"), std::string::npos) << resumed_log.str();

  for (const char* f : {"hopper-medium.safetensors", "hopper-medium-replay.safetensors"}) {
    const OfflineDataset a = load_offline_dataset((straight_dir / f).string());
    const OfflineDataset b = load_offline_dataset((killed_dir / f).string());
    EXPECT_EQ(a.observations, b.observations) << f;
    EXPECT_EQ(a.actions, b.actions) << f;
    EXPECT_EQ(a.rewards, b.rewards) << f;
  }
  EXPECT_EQ(load_behaviour_policy((straight_dir / "hopper-behaviour.safetensors").string()).weights,
            load_behaviour_policy((killed_dir / "hopper-behaviour.safetensors").string()).weights);
}

TEST(GenData, BadOptionsAreRejectedNamingThem) {
  GenDataOptions o = tiny_gen(fresh_dir("bad"));
  o.env = "cheetah";
  EXPECT_THROW(o.resolved(), std::invalid_argument);
  o = tiny_gen(fresh_dir("bad"));
  o.medium_steps = 0;
  try {
    o.resolved();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--medium-steps"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace namm
