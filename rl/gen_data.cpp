// The gen-data pipeline: train (or resume) ARS to a medium return, then
// collect the medium and medium-replay datasets. Each stage leaves a file
// behind, written atomically, and the next run starts after the last one.
#include "rl/gen_data.h"

#include "core/atomic_file.h"
#include "core/run_lock.h"
#include "core/run_record.h"
#include "rl/mujoco_env.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace namm {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kStreamMedium = 0x6d656469756dULL;  // "medium"
constexpr uint64_t kStreamReplay = 0x7265706c6179ULL;  // "replay"

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

/// Statistics of complete-episode returns; the caller fills the name, steps, seconds.
DatasetStats return_stats(const std::string& env, const std::vector<double>& returns, int64_t partial) {
  DatasetStats s;
  s.episodes = static_cast<int64_t>(returns.size());
  s.partial_episodes = partial;
  if (returns.empty()) return s;
  double sum = 0.0;
  s.return_min = returns[0];
  s.return_max = returns[0];
  for (double r : returns) {
    sum += r;
    s.return_min = std::min(s.return_min, r);
    s.return_max = std::max(s.return_max, r);
  }
  s.return_mean = sum / static_cast<double>(returns.size());
  double var = 0.0;
  for (double r : returns) var += (r - s.return_mean) * (r - s.return_mean);
  s.return_std = std::sqrt(var / static_cast<double>(returns.size()));
  s.normalized_mean = d4rl_normalized_score(env, s.return_mean);
  return s;
}

DatasetStats stats_from_json(const json& j) {
  auto num = [&](const char* key) {
    return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::numeric_limits<double>::quiet_NaN();
  };
  DatasetStats s;
  s.name = j.value("name", "");
  s.steps = j.value("steps", int64_t{0});
  s.episodes = j.value("episodes", int64_t{0});
  s.partial_episodes = j.value("partial_episodes", int64_t{0});
  s.return_mean = num("return_mean");
  s.return_std = num("return_std");
  s.return_min = num("return_min");
  s.return_max = num("return_max");
  s.normalized_mean = num("normalized_mean");
  s.seconds = num("seconds");
  return s;
}

/// Appends one episode to d: at most budget steps, actions from act(obs, action).
/// Returns the episode's return; complete is false when the budget cut it.
template <class Act>
double append_episode(MujocoEnv& env, uint64_t env_seed, int64_t budget, const Act& act, OfflineDataset& d,
                      bool* complete) {
  env.seed(env_seed);
  std::vector<double> observation = env.reset();
  std::vector<double> action(static_cast<size_t>(d.action_size));
  double total = 0.0;
  for (int64_t t = 0; t < budget; ++t) {
    act(observation, action);
    // the stored action is what the env sees: round it to float first.
    for (double& a : action) a = static_cast<double>(static_cast<float>(a));
    for (double o : observation) d.observations.push_back(static_cast<float>(o));
    for (double a : action) d.actions.push_back(static_cast<float>(a));
    StepResult r = env.step(action);
    total += r.reward;
    d.rewards.push_back(static_cast<float>(r.reward));
    d.terminals.push_back(r.terminated ? 1 : 0);
    d.timeouts.push_back(!r.terminated && r.truncated ? 1 : 0);
    if (r.terminated || r.truncated) {
      *complete = true;
      return total;
    }
    observation = std::move(r.observation);
  }
  // cut by the collection budget: a timeout in D4RL's sense.
  d.timeouts.back() = 1;
  *complete = false;
  return total;
}

OfflineDataset empty_dataset(const MujocoEnv& env, int64_t steps) {
  OfflineDataset d;
  d.env = env.name();
  d.observation_size = env.observation_size();
  d.action_size = env.action_size();
  d.observations.reserve(static_cast<size_t>(steps * d.observation_size));
  d.actions.reserve(static_cast<size_t>(steps * d.action_size));
  d.rewards.reserve(static_cast<size_t>(steps));
  d.terminals.reserve(static_cast<size_t>(steps));
  d.timeouts.reserve(static_cast<size_t>(steps));
  return d;
}

std::string thousands(int64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > (v < 0 ? 1 : 0); i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

}  // namespace

uint64_t dataset_episode_seed(uint64_t base, int64_t episode) { return mix_seed(base, static_cast<uint64_t>(episode)); }

std::string DatasetStats::to_json() const {
  return json({{"name", name},
               {"steps", steps},
               {"episodes", episodes},
               {"partial_episodes", partial_episodes},
               {"return_mean", number_or_null(return_mean)},
               {"return_std", number_or_null(return_std)},
               {"return_min", number_or_null(return_min)},
               {"return_max", number_or_null(return_max)},
               {"normalized_mean", number_or_null(normalized_mean)},
               {"seconds", seconds}})
      .dump();
}

OfflineDataset collect_policy_dataset(MujocoEnv& env, const LinearPolicy& policy, int64_t steps, double action_noise,
                                      uint64_t seed_base, DatasetStats* stats) {
  if (steps < 1) throw std::invalid_argument("collect_policy_dataset: steps must be >= 1, got " + std::to_string(steps));
  const double start = now_seconds();
  OfflineDataset d = empty_dataset(env, steps);
  std::vector<double> returns;
  int64_t partial = 0;
  for (int64_t e = 0; d.size() < steps; ++e) {
    const uint64_t env_seed = dataset_episode_seed(seed_base, e);
    SplitMix64 noise{mix_seed(env_seed, 1)};
    const auto act = [&](const std::vector<double>& obs, std::vector<double>& action) {
      policy.act(obs.data(), action.data());
      for (double& a : action) a = std::min(1.0, std::max(-1.0, a + action_noise * noise.normal()));
    };
    bool complete = false;
    const double r = append_episode(env, env_seed, steps - d.size(), act, d, &complete);
    if (complete) returns.push_back(r); else ++partial;
  }
  if (stats != nullptr) {
    *stats = return_stats(env.name(), returns, partial);
    stats->steps = d.size();
    stats->seconds = now_seconds() - start;
  }
  return d;
}

OfflineDataset collect_replay_dataset(MujocoEnv& env, const std::vector<LinearPolicy>& snapshots,
                                      const std::vector<double>& weights, int64_t steps, double weight_noise,
                                      double action_noise, uint64_t seed_base, DatasetStats* stats) {
  if (steps < 1) throw std::invalid_argument("collect_replay_dataset: steps must be >= 1, got " + std::to_string(steps));
  if (snapshots.empty()) throw std::invalid_argument("collect_replay_dataset: no snapshots");
  std::vector<double> share = weights.empty() ? std::vector<double>(snapshots.size(), 1.0) : weights;
  if (share.size() != snapshots.size()) {
    throw std::invalid_argument("collect_replay_dataset: " + std::to_string(share.size()) + " weights for " +
                                std::to_string(snapshots.size()) + " snapshots");
  }
  double total_weight = 0.0;
  for (double w : share) {
    if (!(w >= 0) || !std::isfinite(w)) throw std::invalid_argument("collect_replay_dataset: negative or non-finite weight");
    total_weight += w;
  }
  if (!(total_weight > 0)) throw std::invalid_argument("collect_replay_dataset: the weights sum to 0");
  const double start = now_seconds();
  OfflineDataset d = empty_dataset(env, steps);
  std::vector<double> returns;
  int64_t partial = 0, e = 0;
  const int64_t count = static_cast<int64_t>(snapshots.size());
  double cumulative = 0.0;
  for (int64_t i = 0; i < count && d.size() < steps; ++i) {
    // snapshot i fills the data up to its cumulative share of the budget.
    cumulative += share[static_cast<size_t>(i)];
    const int64_t share_end =
        i + 1 == count ? steps : std::min(steps, static_cast<int64_t>(std::llround(steps * cumulative / total_weight)));
    while (d.size() < share_end) {
      const uint64_t env_seed = dataset_episode_seed(seed_base, e++);
      SplitMix64 perturbation{mix_seed(env_seed, 2)}, noise{mix_seed(env_seed, 1)};
      LinearPolicy perturbed = snapshots[static_cast<size_t>(i)];
      for (double& w : perturbed.weights) w += weight_noise * perturbation.normal();
      const auto act = [&](const std::vector<double>& obs, std::vector<double>& action) {
        perturbed.act(obs.data(), action.data());
        for (double& a : action) a = std::min(1.0, std::max(-1.0, a + action_noise * noise.normal()));
      };
      bool complete = false;
      const double r = append_episode(env, env_seed, steps - d.size(), act, d, &complete);
      if (complete) returns.push_back(r); else ++partial;
    }
  }
  if (stats != nullptr) {
    *stats = return_stats(env.name(), returns, partial);
    stats->steps = d.size();
    stats->seconds = now_seconds() - start;
  }
  return d;
}

// ---------------------------------------------------------------------------
// options

GenDataOptions GenDataOptions::resolved() const {
  GenDataOptions o = *this;
  auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
  if (o.env != "hopper" && o.env != "walker2d") fail("--env must be hopper or walker2d, got '" + o.env + "'");
  if (o.out_dir.empty()) fail("--out is required");
  const ArsOptions d = ArsOptions::defaults_for(o.env);
  if (std::isnan(o.target_return)) o.target_return = o.env == "hopper" ? 1500.0 : 3000.0;
  if (o.max_iterations == 0) o.max_iterations = o.env == "hopper" ? 500 : 1000;
  if (o.directions == 0) o.directions = d.directions;
  if (o.top_directions == 0) o.top_directions = std::min(d.top_directions, o.directions);
  if (std::isnan(o.step_size)) o.step_size = d.step_size;
  if (std::isnan(o.weight_noise)) o.weight_noise = d.noise;
  if (std::isnan(o.reward_shift)) o.reward_shift = d.reward_shift;
  if (!std::isfinite(o.target_return)) fail("--target-return must be finite");
  if (o.max_iterations < 1) fail("--max-iterations must be >= 1, got " + std::to_string(o.max_iterations));
  if (o.medium_steps < 1) fail("--medium-steps must be >= 1, got " + std::to_string(o.medium_steps));
  if (o.replay_steps < 1) fail("--replay-steps must be >= 1, got " + std::to_string(o.replay_steps));
  if (!(o.action_noise >= 0) || !std::isfinite(o.action_noise)) {
    fail("--action-noise must be >= 0, got " + std::to_string(o.action_noise));
  }
  if (o.max_episode_steps < 1) fail("--max-episode-steps must be >= 1, got " + std::to_string(o.max_episode_steps));
  o.ars_options().validate();
  return o;
}

ArsOptions GenDataOptions::ars_options() const {
  ArsOptions a = ArsOptions::defaults_for(env);
  a.directions = directions;
  a.top_directions = top_directions;
  a.step_size = step_size;
  a.noise = weight_noise;
  a.reward_shift = reward_shift;
  a.episode_steps = max_episode_steps;
  a.action_noise = action_noise;
  a.eval_episodes = eval_episodes;
  a.confirm_episodes = confirm_episodes;
  a.target_return = target_return;
  a.seed = seed;
  a.threads = threads;
  a.scenes_dir = scenes_dir;
  return a;
}

std::string GenDataOptions::identity_json() const {
  return json({{"env", env},
               {"seed", std::to_string(seed)},
               {"target_return", target_return},
               {"medium_steps", medium_steps},
               {"replay_steps", replay_steps},
               {"action_noise", action_noise},
               {"directions", directions},
               {"top_directions", top_directions},
               {"step_size", step_size},
               {"weight_noise", weight_noise},
               {"reward_shift", reward_shift},
               {"eval_episodes", eval_episodes},
               {"confirm_episodes", confirm_episodes},
               {"max_episode_steps", max_episode_steps}})
      .dump();
}

// ---------------------------------------------------------------------------
// the pipeline

GenDataResult generate_offline_data(const GenDataOptions& requested, std::ostream& log) {
  const GenDataOptions o = requested.resolved();
  const fs::path dir(o.out_dir);
  // one run per folder: a second is refused, naming the first
  const std::unique_ptr<FileLock> run_lock = lock_run_folder(o.out_dir);

  // one directory, one set of options: a resumed run must be the same run.
  const std::string options_path = (dir / "options.json").string();
  const json identity = json::parse(o.identity_json());
  std::string started_utc = utc_now();
  if (fs::exists(options_path)) {
    json saved;
    try {
      saved = json::parse(read_file(options_path));
    } catch (const json::exception& e) {
      throw std::runtime_error(options_path + ": not JSON: " + e.what());
    }
    if (saved.value("options", json()) != identity) {
      std::string diff;
      for (const auto& [key, value] : identity.items()) {
        const json old = saved.value("options", json::object()).value(key, json());
        if (old != value) diff += (diff.empty() ? "" : ", ") + key + " " + old.dump() + " there, " + value.dump() + " now";
      }
      throw std::runtime_error(o.out_dir + ": holds a gen-data run with other options (" + diff +
                               "); use the same options to resume or another --out");
    }
    started_utc = saved.value("started_utc", started_utc);
  } else {
    write_file_atomically(options_path,
                          json({{"options", identity}, {"command_line", o.command_line}, {"started_utc", started_utc}})
                                  .dump(2) + "\n");
  }

  const std::string env_name = o.env;
  const std::string state_path = (dir / "trainer_state.safetensors").string();
  const std::string policy_path = (dir / (env_name + "-behaviour.safetensors")).string();
  const std::string git = git_commit((fs::path(o.scenes_dir) / "..").string());

  // --- training -------------------------------------------------------------
  ArsTrainer trainer(o.ars_options());
  if (fs::exists(state_path)) {
    trainer.load(state_path);
    log << env_name << ": resumed from " << state_path << " at iteration " << trainer.iteration() << "\n";
  }
  const bool trained_before = fs::exists(policy_path);
  const double session_start = now_seconds();
  const int64_t session_first = trainer.iteration();
  while (!trained_before && !trainer.reached_target() && trainer.iteration() < o.max_iterations) {
    const ArsIterationStats& s = trainer.step();
    trainer.save(state_path);
    const double per_iteration = (now_seconds() - session_start) / static_cast<double>(trainer.iteration() - session_first);
    const ArsIterationStats& best = trainer.history()[static_cast<size_t>(trainer.best_iteration() - 1)];
    std::ostringstream line;
    line << std::fixed << std::setprecision(1) << env_name << " iter " << s.iteration << "/" << o.max_iterations
         << "  env steps " << thousands(s.env_steps) << "  eval " << s.eval_return_mean << " ± " << s.eval_return_std
         << " (norm " << d4rl_normalized_score(env_name, s.eval_return_mean) << ")";
    if (!std::isnan(s.confirm_return_mean)) line << "  confirm " << s.confirm_return_mean;
    line << "  best " << best.eval_return_mean << " @" << best.iteration << "  target " << o.target_return
         << std::setprecision(2) << "  " << per_iteration << " s/it  elapsed " << format_duration(trainer.train_seconds())
         << "  ETA <= " << format_duration(per_iteration * static_cast<double>(o.max_iterations - s.iteration));
    log << line.str() << std::endl;
  }

  // the medium policy: the confirmed one, else the best evaluated one.
  GenDataResult result;
  result.iterations = trainer.iteration();
  result.env_steps = trainer.env_steps();
  result.reached_target = trainer.reached_target();
  result.train_seconds = trainer.train_seconds();
  LinearPolicy medium;
  std::map<std::string, std::string> policy_meta;
  if (trained_before) {
    medium = load_behaviour_policy(policy_path, &policy_meta);
    result.medium_iteration = std::stoll(policy_meta.at("iteration"));
    result.medium_eval_return = std::stod(policy_meta.at("eval_return"));
    result.reached_target = policy_meta.at("reached_target") == "true";
  } else {
    if (trainer.iteration() == 0) throw std::runtime_error(o.out_dir + ": no ARS iteration ran");
    const ArsIterationStats& last = trainer.history().back();
    if (result.reached_target) {
      medium = trainer.policy();
      result.medium_iteration = last.iteration;
      result.medium_eval_return = last.confirm_return_mean;
    } else {
      medium = trainer.best_policy();
      result.medium_iteration = trainer.best_iteration();
      const ArsIterationStats& b = trainer.history()[static_cast<size_t>(result.medium_iteration - 1)];
      result.medium_eval_return = std::isnan(b.confirm_return_mean) ? b.eval_return_mean : b.confirm_return_mean;
    }
    policy_meta = {{"env", env_name},
                   {"algorithm", "ARS V2-t (Mania et al. 2018)"},
                   {"iteration", std::to_string(result.medium_iteration)},
                   {"eval_return", std::to_string(result.medium_eval_return)},
                   {"eval_normalized", std::to_string(d4rl_normalized_score(env_name, result.medium_eval_return))},
                   {"reached_target", result.reached_target ? "true" : "false"},
                   {"target_return", std::to_string(o.target_return)},
                   {"seed", std::to_string(o.seed)},
                   {"command_line", o.command_line},
                   {"git_commit", git},
                   {"created_utc", utc_now()}};
    save_behaviour_policy(medium, policy_path, policy_meta);
    log << env_name << ": medium policy = iteration " << result.medium_iteration << ", eval return "
        << result.medium_eval_return << " (norm " << d4rl_normalized_score(env_name, result.medium_eval_return) << ")"
        << (result.reached_target ? "" : ", target NOT reached: best policy taken") << ", training "
        << format_duration(result.train_seconds) << ", " << thousands(result.env_steps) << " env steps\n";
  }

  const json training = {{"algorithm", "ARS V2-t"},
                         {"ars_options", json::parse(o.ars_options().identity_json())},
                         {"iterations", result.iterations},
                         {"env_steps", result.env_steps},
                         {"train_seconds", result.train_seconds},
                         {"reached_target", result.reached_target},
                         {"target_return", o.target_return},
                         {"medium_iteration", result.medium_iteration},
                         {"medium_eval_return", result.medium_eval_return},
                         {"medium_eval_normalized", d4rl_normalized_score(env_name, result.medium_eval_return)}};

  // --- datasets -------------------------------------------------------------
  MujocoEnvOptions env_options;
  env_options.max_episode_steps = o.max_episode_steps;
  const std::unique_ptr<MujocoEnv> env = make_env(env_name, o.scenes_dir, env_options);
  struct Plan {
    std::string kind;
    uint64_t seed_base;
  };
  const std::vector<Plan> plans = {{"medium", mix_seed(o.seed, kStreamMedium)},
                                   {"medium-replay", mix_seed(o.seed, kStreamReplay)}};
  json dataset_records = json::object();
  for (const Plan& plan : plans) {
    const std::string name = env_name + "-" + plan.kind;
    const std::string path = (dir / (name + ".safetensors")).string();
    DatasetStats stats;
    if (fs::exists(path)) {
      const OfflineDataset existing = load_offline_dataset(path);  // throws naming path when corrupt
      stats = stats_from_json(json::parse(existing.metadata_json).value("stats", json::object()));
      log << name << ": " << path << " exists (" << thousands(existing.size()) << " steps), kept\n";
    } else {
      OfflineDataset data;
      json source;
      if (plan.kind == "medium") {
        data = collect_policy_dataset(*env, medium, o.medium_steps, o.action_noise, plan.seed_base, &stats);
        source = {{"policy", fs::path(policy_path).filename().string()},
                  {"policy_iteration", result.medium_iteration},
                  {"action_noise_std", o.action_noise}};
      } else {
        // the policies the trainer ran up to the medium one, in order.
        std::vector<LinearPolicy> snapshots = trainer.snapshots();
        if (result.medium_iteration < 1 || trainer.iteration() < result.medium_iteration) {
          throw std::runtime_error(state_path + ": holds " + std::to_string(trainer.iteration()) +
                                   " iterations, the medium policy is from iteration " +
                                   std::to_string(result.medium_iteration) + "; cannot rebuild " + path);
        }
        snapshots.resize(static_cast<size_t>(result.medium_iteration));
        // each snapshot's share: the env steps the trainer ran in its iteration.
        std::vector<double> weights;
        int64_t previous = 0;
        for (int64_t i = 0; i < result.medium_iteration; ++i) {
          const int64_t now = trainer.history()[static_cast<size_t>(i)].env_steps;
          weights.push_back(static_cast<double>(now - previous));
          previous = now;
        }
        data = collect_replay_dataset(*env, snapshots, weights, o.replay_steps, o.weight_noise, o.action_noise,
                                      plan.seed_base, &stats);
        source = {{"policy", "ARS snapshots 0.." + std::to_string(snapshots.size() - 1) +
                                 " (policy at the start of each iteration), in order, steps in proportion to the trainer's steps in that iteration"},
                  {"snapshots", snapshots.size()},
                  {"weight_noise_std", o.weight_noise},
                  {"action_noise_std", o.action_noise}};
      }
      stats.name = name;
      const json meta = {{"dataset", name},
                         {"env", env_name},
                         {"kind", plan.kind},
                         {"steps", data.size()},
                         {"behaviour", source},
                         {"seed", std::to_string(o.seed)},
                         {"episode_seed_base", std::to_string(plan.seed_base)},
                         {"episode_seed_rule", "episode e starts from env.seed(mix_seed(episode_seed_base, e)); reset()"},
                         {"max_episode_steps", o.max_episode_steps},
                         {"training", training},
                         {"stats", json::parse(stats.to_json())},
                         {"stats_note", "over complete episodes (terminal or time limit); the budget-cut last one is left out"},
                         {"command_line", o.command_line},
                         {"git_commit", git},
                         {"created_utc", utc_now()}};
      data.metadata_json = meta.dump();
      save_offline_dataset(data, path);
      log << std::fixed << std::setprecision(1) << name << ": " << thousands(data.size()) << " steps, " << stats.episodes
          << " episodes, return " << stats.return_mean << " ± " << stats.return_std << " [" << stats.return_min
          << ", " << stats.return_max << "] (norm " << stats.normalized_mean << "), " << format_duration(stats.seconds)
          << " -> " << path << std::endl;
    }
    dataset_records[name] = json::parse(stats.to_json());
    dataset_records[name]["file"] = fs::path(path).filename().string();
    result.datasets.push_back(stats);
  }

  json history = json::array();
  for (const ArsIterationStats& h : trainer.history()) {
    history.push_back({h.iteration, h.env_steps, h.eval_return_mean, number_or_null(h.confirm_return_mean)});
  }
  const json provenance = {{"command_line", o.command_line},
                           {"options", identity},
                           {"max_iterations", o.max_iterations},
                           {"threads", o.threads},
                           {"git_commit", git.empty() ? json(nullptr) : json(git)},
                           {"started_utc", started_utc},
                           {"written_utc", utc_now()},
                           {"training", training},
                           {"eval_history_columns", {"iteration", "env_steps", "eval_return_mean", "confirm_return_mean"}},
                           {"eval_history", history},
                           {"datasets", dataset_records}};
  write_file_atomically((dir / "provenance.json").string(), provenance.dump(2) + "\n");
  return result;
}

}  // namespace namm
