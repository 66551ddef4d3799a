// rollout: see rollout.h
#include "rl/rollout.h"

#include "adapters/memory_controller.h"
#include "rl/mujoco_env.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <ostream>
#include <stdexcept>

namespace namm {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// a [1, n] float32 row of values
at::Tensor row(const std::vector<double>& values) {
  return at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat).unsqueeze(0);
}

std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

double resolve_target(const DtSidecar& sidecar, const std::string& env, const RolloutOptions& options) {
  if (options.target_return != 0.0) return options.target_return;
  if (sidecar.target_return != 0.0) return sidecar.target_return;
  return default_target_return(env);
}

// cached tokens per layer (over heads) by kind
StepTokenKinds count_kinds(const SequenceState& state) {
  StepTokenKinds out;
  out.tokens_seen = state.next_position;
  for (const LayerKvCache& cache : state.caches) {
    std::array<int64_t, 3> kept{0, 0, 0};
    for (int64_t h = 0; h < cache.num_heads(); ++h) {
      for (int64_t p : cache.position_list(h)) ++kept[static_cast<size_t>(p % kDtTokensPerStep)];
    }
    out.kept.push_back(kept);
  }
  return out;
}

template <class F>
double mean_over(const std::vector<EpisodeResult>& episodes, F value) {
  if (episodes.empty()) return 0.0;
  double total = 0.0;
  for (const EpisodeResult& e : episodes) total += value(e);
  return total / static_cast<double>(episodes.size());
}

template <class F>
double std_over(const std::vector<EpisodeResult>& episodes, F value) {
  if (episodes.empty()) return 0.0;
  const double mean = mean_over(episodes, value);
  double total = 0.0;
  for (const EpisodeResult& e : episodes) total += (value(e) - mean) * (value(e) - mean);
  return std::sqrt(total / static_cast<double>(episodes.size()));
}

// the cached path: one KV cache per layer for the whole episode
EpisodeResult run_cached(const DecisionTransformer& model, const DtSidecar& sidecar, MujocoEnv& env,
                         const RolloutOptions& options, int episode, int64_t max_steps, double target) {
  EpisodeResult result;
  result.episode = episode;
  result.seed = options.seed + static_cast<uint64_t>(episode);
  std::unique_ptr<MemoryController> controller;
  if (options.policy.name != "full") {
    PolicySpec spec = options.policy;
    spec.seed = options.policy.seed + static_cast<uint64_t>(episode);
    ControllerOptions controller_options;
    controller_options.delay = options.delay;
    controller_options.record_statistics = false;
    controller = std::make_unique<MemoryController>(make_policy(spec), static_cast<int>(model->config().n_layer),
                                                    controller_options);
  }
  SequenceState state = model->new_state();
  env.seed(result.seed);
  std::vector<double> observation = env.reset();
  double return_to_go = target / sidecar.return_scale;
  std::vector<double> previous_action;
  double cached_sum = 0.0, full_sum = 0.0;

  for (int64_t t = 0; t < max_steps; ++t) {
    const auto model_start = Clock::now();
    std::vector<double> action;
    {
      at::NoGradGuard no_grad;
      const at::Tensor step = at::full({1}, t, at::kLong);  // [1] timestep
      std::vector<at::Tensor> tokens;                        // the step's tokens in stream order
      if (t > 0) tokens.push_back(model->embed(DtTokenKind::kAction, row(previous_action), step - 1));
      tokens.push_back(model->embed(DtTokenKind::kReturn, at::full({1, 1}, return_to_go, at::kFloat), step));
      tokens.push_back(model->embed(DtTokenKind::kState, sidecar.normalize(row(observation)), step));
      const at::Tensor hidden = model->feed(state, at::cat(tokens, 0), controller.get());  // [n, D]
      action = to_vector(model->predict_action_from(hidden[hidden.size(0) - 1]));           // [A] from s_t
    }
    result.model_seconds += seconds_since(model_start);
    cached_sum += state.mean_cached_tokens();
    full_sum += static_cast<double>(state.next_position);
    result.peak_cache_bytes = std::max(result.peak_cache_bytes, state.bytes());
    if (options.record_token_kinds) result.token_kinds.push_back(count_kinds(state));

    const auto env_start = Clock::now();
    const StepResult stepped = env.step(action);
    result.env_seconds += seconds_since(env_start);
    result.episode_return += stepped.reward;
    result.steps = t + 1;
    return_to_go -= stepped.reward / sidecar.return_scale;
    previous_action = action;
    observation = stepped.observation;
    if (options.on_step) options.on_step(env, episode, t, action);
    if (stepped.terminated || stepped.truncated) {
      result.terminated = stepped.terminated;
      break;
    }
  }
  result.mean_cached_tokens = result.steps > 0 ? cached_sum / static_cast<double>(result.steps) : 0.0;
  result.mean_full_tokens = result.steps > 0 ? full_sum / static_cast<double>(result.steps) : 0.0;
  result.policy_updates = controller ? controller->num_updates() : 0;
  return result;
}

// the standard evaluation: re-encode the last K steps every step
EpisodeResult run_window(const DecisionTransformer& model, const DtSidecar& sidecar, MujocoEnv& env,
                         const RolloutOptions& options, int episode, int64_t max_steps, double target) {
  const DtConfig& config = model->config();
  EpisodeResult result;
  result.episode = episode;
  result.seed = options.seed + static_cast<uint64_t>(episode);
  env.seed(result.seed);
  std::vector<double> observation = env.reset();
  // histories, one row per step so far (the current step's action stays zero, as in get_action)
  at::Tensor states = at::zeros({max_steps, config.state_dim});   // [S, O] normalised
  at::Tensor actions = at::zeros({max_steps, config.act_dim});    // [S, A]
  at::Tensor returns = at::zeros({max_steps, 1});                 // [S, 1] scaled
  const at::Tensor timesteps = at::arange(max_steps, at::kLong);  // [S]
  double return_to_go = target / sidecar.return_scale;
  double cached_sum = 0.0, full_sum = 0.0;

  for (int64_t t = 0; t < max_steps; ++t) {
    const auto model_start = Clock::now();
    std::vector<double> action;
    {
      at::NoGradGuard no_grad;
      states[t].copy_(sidecar.normalize(row(observation))[0]);
      returns[t][0] = return_to_go;
      const int64_t start = std::max<int64_t>(0, t + 1 - options.window);
      const int64_t len = t + 1 - start;
      DtBatch batch;
      batch.states = states.narrow(0, start, len).unsqueeze(0);        // [1, len, O]
      batch.actions = actions.narrow(0, start, len).unsqueeze(0);      // [1, len, A]
      batch.returns_to_go = returns.narrow(0, start, len).unsqueeze(0);  // [1, len, 1]
      batch.timesteps = timesteps.narrow(0, start, len).unsqueeze(0);  // [1, len]
      const DtOutput out = model->forward(batch);
      action = to_vector(out.action_preds[0][len - 1]);  // [A]
      actions[t].copy_(out.action_preds[0][len - 1]);
      cached_sum += static_cast<double>(kDtTokensPerStep * len - 1);
    }
    result.model_seconds += seconds_since(model_start);
    full_sum += static_cast<double>(kDtTokensPerStep * t + 2);

    const auto env_start = Clock::now();
    const StepResult stepped = env.step(action);
    result.env_seconds += seconds_since(env_start);
    result.episode_return += stepped.reward;
    result.steps = t + 1;
    return_to_go -= stepped.reward / sidecar.return_scale;
    observation = stepped.observation;
    if (options.on_step) options.on_step(env, episode, t, action);
    if (stepped.terminated || stepped.truncated) {
      result.terminated = stepped.terminated;
      break;
    }
  }
  result.mean_cached_tokens = result.steps > 0 ? cached_sum / static_cast<double>(result.steps) : 0.0;
  result.mean_full_tokens = result.steps > 0 ? full_sum / static_cast<double>(result.steps) : 0.0;
  return result;
}

}  // namespace

void RolloutOptions::validate() const {
  auto bad = [](const std::string& message) { throw std::invalid_argument("rollout: " + message); };
  if (episodes < 1) bad("episodes must be >= 1, got " + std::to_string(episodes));
  if (delay < 1) bad("delay must be >= 1, got " + std::to_string(delay));
  if (window < 0) bad("window must be >= 0 (0 = keep the cache across the episode), got " + std::to_string(window));
  if (window > 0 && policy.name != "full") {
    bad("window " + std::to_string(window) + " re-encodes the last steps every step and keeps no cache, so memory "
        "policy '" + policy.name + "' has nothing to prune (use the full policy with a window)");
  }
  if (max_steps < 0) bad("max_steps must be >= 0 (0 = the env's limit), got " + std::to_string(max_steps));
  if (!std::isfinite(target_return)) bad("target_return is not finite");
}

EpisodeResult run_episode(const DecisionTransformer& model, const DtSidecar& sidecar, MujocoEnv& env,
                          const RolloutOptions& options, int episode) {
  options.validate();
  const int64_t max_steps = options.max_steps > 0 ? options.max_steps : env.max_episode_steps();
  const double target = resolve_target(sidecar, env.name(), options);
  EpisodeResult result = options.window > 0 ? run_window(model, sidecar, env, options, episode, max_steps, target)
                                            : run_cached(model, sidecar, env, options, episode, max_steps, target);
  result.normalized_score = d4rl_normalized_score(env.name(), result.episode_return);
  return result;
}

RolloutReport run_rollouts(const DecisionTransformer& model, const DtSidecar& sidecar, const std::string& env_name,
                           const RolloutOptions& options, std::ostream* progress) {
  options.validate();
  std::unique_ptr<MujocoEnv> env = make_env(env_name);
  const DtConfig& config = model->config();
  if (env->observation_size() != config.state_dim || env->action_size() != config.act_dim) {
    throw std::invalid_argument("rollout: the model takes states of " + std::to_string(config.state_dim) +
                                " and actions of " + std::to_string(config.act_dim) + " values, but " + env_name +
                                " has " + std::to_string(env->observation_size()) + " and " +
                                std::to_string(env->action_size()));
  }
  if (!sidecar.env.empty() && sidecar.env != env_name) {
    throw std::invalid_argument("rollout: the model was trained on " + sidecar.env + ", not " + env_name);
  }
  RolloutReport report;
  report.env = env_name;
  report.policy = options.window > 0 ? "window" : options.policy.name;
  report.budget = options.window > 0 || options.policy.name == "full" || options.policy.name == "namm"
                      ? "-"
                      : options.policy.budget.to_string();
  report.delay = options.window > 0 || options.policy.name == "full" ? 0 : options.delay;
  report.window = options.window;
  report.target_return = resolve_target(sidecar, env_name, options);
  report.layers = config.n_layer;
  report.heads = config.n_head;
  for (int e = 0; e < options.episodes; ++e) {
    report.episodes.push_back(run_episode(model, sidecar, *env, options, e));
    if (progress != nullptr) {
      const EpisodeResult& r = report.episodes.back();
      char line[256];
      std::snprintf(line, sizeof line,
                    "episode %d (seed %llu): return %.1f  score %.1f  steps %lld%s  kv %.0f/%.0f tokens  %.2f ms/step",
                    e, static_cast<unsigned long long>(r.seed), r.episode_return, r.normalized_score,
                    static_cast<long long>(r.steps), r.terminated ? " (fell)" : "", r.mean_cached_tokens,
                    r.mean_full_tokens, r.steps ? 1e3 * r.model_seconds / static_cast<double>(r.steps) : 0.0);
      *progress << line << "\n" << std::flush;
    }
  }
  return report;
}

// ---------------------------------------------------------------------------
// report

double RolloutReport::mean_return() const { return mean_over(episodes, [](const EpisodeResult& e) { return e.episode_return; }); }
double RolloutReport::std_return() const { return std_over(episodes, [](const EpisodeResult& e) { return e.episode_return; }); }
double RolloutReport::mean_score() const { return mean_over(episodes, [](const EpisodeResult& e) { return e.normalized_score; }); }
double RolloutReport::std_score() const { return std_over(episodes, [](const EpisodeResult& e) { return e.normalized_score; }); }
double RolloutReport::mean_cached_tokens() const {
  return mean_over(episodes, [](const EpisodeResult& e) { return e.mean_cached_tokens; });
}
double RolloutReport::mean_full_tokens() const {
  return mean_over(episodes, [](const EpisodeResult& e) { return e.mean_full_tokens; });
}

double RolloutReport::retained_fraction() const {
  double cached = 0.0, full = 0.0;
  for (const EpisodeResult& e : episodes) {
    cached += e.mean_cached_tokens * static_cast<double>(e.steps);
    full += e.mean_full_tokens * static_cast<double>(e.steps);
  }
  return full > 0 ? cached / full : 1.0;
}

double RolloutReport::model_ms_per_step() const {
  double seconds = 0.0, steps = 0.0;
  for (const EpisodeResult& e : episodes) {
    seconds += e.model_seconds;
    steps += static_cast<double>(e.steps);
  }
  return steps > 0 ? 1e3 * seconds / steps : 0.0;
}

double RolloutReport::env_ms_per_step() const {
  double seconds = 0.0, steps = 0.0;
  for (const EpisodeResult& e : episodes) {
    seconds += e.env_seconds;
    steps += static_cast<double>(e.steps);
  }
  return steps > 0 ? 1e3 * seconds / steps : 0.0;
}

std::string RolloutReport::to_json() const {
  json list = json::array();
  for (const EpisodeResult& e : episodes) {
    list.push_back({{"episode", e.episode},
                    {"seed", e.seed},
                    {"return", e.episode_return},
                    {"normalized_score", e.normalized_score},
                    {"steps", e.steps},
                    {"terminated", e.terminated},
                    {"mean_cached_tokens", e.mean_cached_tokens},
                    {"mean_full_tokens", e.mean_full_tokens},
                    {"peak_cache_bytes", e.peak_cache_bytes},
                    {"policy_updates", e.policy_updates},
                    {"model_seconds", e.model_seconds},
                    {"env_seconds", e.env_seconds}});
  }
  const json out = {{"env", env},
                    {"policy", policy},
                    {"budget", budget},
                    {"delay", delay},
                    {"window", window},
                    {"target_return", target_return},
                    {"episodes", list},
                    {"mean_return", mean_return()},
                    {"std_return", std_return()},
                    {"mean_normalized_score", mean_score()},
                    {"std_normalized_score", std_score()},
                    {"mean_cached_tokens", mean_cached_tokens()},
                    {"mean_full_tokens", mean_full_tokens()},
                    {"retained_fraction", retained_fraction()},
                    {"model_ms_per_step", model_ms_per_step()},
                    {"env_ms_per_step", env_ms_per_step()}};
  return out.dump(2) + "\n";
}

std::string RolloutReport::token_kinds_json() const {
  json list = json::array();
  // kept / seen per layer and kind, summed over every step of every episode
  std::vector<std::array<double, 3>> kept_sum(static_cast<size_t>(layers), {0, 0, 0});
  std::array<double, 3> seen_sum{0, 0, 0};
  for (const EpisodeResult& e : episodes) {
    json seen = json::array();
    json kept = json::array();
    for (int64_t l = 0; l < layers; ++l) kept.push_back(json::array());
    for (const StepTokenKinds& step : e.token_kinds) {
      seen.push_back(step.tokens_seen);
      for (int k = 0; k < 3; ++k) {
        // tokens of kind k among positions [0, tokens_seen)
        seen_sum[static_cast<size_t>(k)] += static_cast<double>((step.tokens_seen - k + 2) / 3) * static_cast<double>(heads);
      }
      for (size_t l = 0; l < step.kept.size() && l < kept_sum.size(); ++l) {
        kept[l].push_back(step.kept[l]);
        for (int k = 0; k < 3; ++k) kept_sum[l][static_cast<size_t>(k)] += static_cast<double>(step.kept[l][static_cast<size_t>(k)]);
      }
    }
    list.push_back({{"episode", e.episode}, {"seed", e.seed}, {"return", e.episode_return}, {"steps", e.steps},
                    {"tokens_seen", seen}, {"kept", kept}});
  }
  json fractions = json::array();
  for (const auto& sums : kept_sum) {
    json layer = json::array();
    for (int k = 0; k < 3; ++k) {
      layer.push_back(seen_sum[static_cast<size_t>(k)] > 0 ? sums[static_cast<size_t>(k)] / seen_sum[static_cast<size_t>(k)] : 0.0);
    }
    fractions.push_back(layer);
  }
  const json out = {{"env", env},
                    {"policy", policy},
                    {"budget", budget},
                    {"delay", delay},
                    {"layers", layers},
                    {"heads", heads},
                    {"token_kinds", {"return", "state", "action"}},
                    {"note", "kept[layer][step] = {return, state, action} tokens cached after step's tokens were fed, "
                             "summed over heads; kind = position % 3"},
                    {"kept_fraction_by_kind", fractions},
                    {"episodes", list}};
  return out.dump() + "\n";
}

}  // namespace namm
