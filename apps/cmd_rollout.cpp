// `namm rollout`: runs a Decision Transformer in Hopper or Walker2d with its
// KV cache kept across the episode and a memory policy pruning it
// (rl/rollout.h), or with --window K the standard K-step re-encode baseline.
#include "apps/options.h"
#include "core/atomic_file.h"
#include "core/namm_model.h"
#include "core/parse_number.h"
#include "rl/dt_checkpoint.h"
#include "rl/mujoco_env.h"
#include "rl/eval_rl.h"
#include "rl/render.h"
#include "rl/rollout.h"
#include "vision/video_encoder.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace namm::app {
namespace {

// default tokens between policy updates without a NAMM (about 21 steps; a multiple of the NAMM hop 16)
constexpr int64_t kDefaultDelay = 64;

// "out.mp4" -> "out_ep3.mp4"
std::string episode_path(const std::string& path, int episode) {
  const std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + "_ep" + std::to_string(episode) + p.extension().string())).string();
}

}  // namespace

int run_rollout(const std::vector<std::string>& args) {
  std::string env_name, model_dir, memory = "full", budget_text = "25%", namm_path, json_path, kinds_path, render_path,
      kinds_plot_path, state_mean_text, state_std_text;
  double return_scale = 0;
  int64_t train_context = 0;
  RolloutOptions o;
  int64_t seed = 0, delay = 0;
  int threads = 1;
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("env", po::value(&env_name)->required(), "hopper | walker2d")
      ("model", po::value(&model_dir), "Decision Transformer directory (config.json, model.safetensors, dt_sidecar.json); default: the shipped models/dt-ENV")
      ("memory", po::value(&memory)->default_value(memory), ("memory policy: " + policy_choices()).c_str())
      ("budget", po::value(&budget_text)->default_value(budget_text), "KV budget per head for the baselines: tokens (\"60\") or a share of the tokens so far (\"25%\")")
      ("namm", po::value(&namm_path), "NAMM checkpoint (.safetensors) for --memory namm; default with --memory namm: the shipped models/namm.safetensors")
      ("allow-rl-namm", "accept a NAMM whose record says it was evolved on RL (results are then not zero-shot)")
      ("delay", po::value(&delay)->default_value(delay), "tokens between policy updates (0: the NAMM's own delay with --namm, else 64)")
      ("window", po::value(&o.window)->default_value(o.window), "K > 0: re-encode the last K steps every step (the standard evaluation; keeps no cache)")
      ("episodes", po::value(&o.episodes)->default_value(o.episodes), "episodes")
      ("seed", po::value(&seed)->default_value(seed), "episode e resets the env with seed + e")
      ("target-return", po::value(&o.target_return)->default_value(o.target_return), "conditioning return (0: the model's sidecar, else hopper 3600 / walker2d 5000)")
      ("max-steps", po::value(&o.max_steps)->default_value(o.max_steps), "per-episode step limit (0: the env's 1000)")
      ("json", po::value(&json_path), "write the summary and per-episode results as JSON")
      ("kinds-json", po::value(&kinds_path), "write per-step kept tokens by kind (return/state/action) per layer as JSON")
      ("render", po::value(&render_path), "write a video of the first episode (H.264 mp4, 2D side view, 30 fps, one frame every 2 env steps = half speed, with a HUD: step, return so far, KV kept)")
      ("render-all", "with --render: one video per episode, OUT_ep<e>.mp4")
      ("kinds-plot", po::value(&kinds_plot_path), "write a PNG of the share of return / state / action tokens kept over the first episode, one panel per layer (cached mode)")
      ("state-mean", po::value(&state_mean_text), "comma-separated per-dimension state mean the model was trained with (a hub model's card); overrides dt_sidecar.json")
      ("state-std", po::value(&state_std_text), "comma-separated per-dimension state std; overrides dt_sidecar.json")
      ("return-scale", po::value(&return_scale)->default_value(return_scale), "returns-to-go are fed divided by this (0: dt_sidecar.json's, else 1000)")
      ("train-context", po::value(&train_context)->default_value(train_context), "K, the steps per window the model was trained on (0: dt_sidecar.json's, else 20); a cache that outgrows it is warned about")
      ("threads", po::value(&threads)->default_value(threads), "torch threads");
  // clang-format on
  add_policy_tuning_options(options, o.policy);
  po::variables_map vm;
  if (!parse_options("rollout", "--env hopper|walker2d --model DIR [--memory POLICY] [--budget B] [--episodes N] ...",
                     options, args, vm)) {
    return 0;
  }
  const auto output_locks = claim_outputs({{"--render", render_path}, {"--kinds-plot", kinds_plot_path}});
  const std::vector<std::string> envs = env_names();
  if (std::find(envs.begin(), envs.end(), env_name) == envs.end()) {
    throw UsageError("--env must be hopper or walker2d, got '" + env_name + "'");
  }
  if (seed < 0) throw UsageError("--seed must be >= 0, got " + std::to_string(seed));
  if (delay < 0) throw UsageError("--delay must be >= 0, got " + std::to_string(delay));
  if (threads < 1) throw UsageError("--threads must be >= 1, got " + std::to_string(threads));
  if (return_scale < 0) throw UsageError("--return-scale must be > 0 (0: the sidecar's), got " + std::to_string(return_scale));
  if (train_context < 0) throw UsageError("--train-context must be >= 0, got " + std::to_string(train_context));
  const auto number_list = [](const std::string& text, const std::string& option) {
    std::vector<double> values;
    for (const std::string& item : split_list(text)) {
      try {
        values.push_back(parse_finite_double(item, option));
      } catch (const std::exception& e) {
        throw UsageError(e.what());
      }
    }
    return values;
  };
  const std::vector<double> state_mean = number_list(state_mean_text, "--state-mean");
  const std::vector<double> state_std = number_list(state_std_text, "--state-std");
  for (const double sd : state_std)
    if (!(sd > 0)) throw UsageError("--state-std: every value must be > 0");
  check_policy_name(memory);
  check_policy_tuning(o.policy);
  o.policy.name = memory;
  try {
    o.policy.budget = Budget::parse(budget_text);
  } catch (const std::exception& e) {
    throw UsageError(std::string("--budget: ") + e.what());
  }
  // the shipped models, so `namm rollout --env hopper --memory namm` just runs
  if (model_dir.empty()) model_dir = "models/dt-" + env_name;
  if (memory == "namm" && namm_path.empty()) namm_path = "models/namm.safetensors";
  if (!namm_path.empty()) {
    auto model = std::make_shared<const NammModel>(NammModel::load(namm_path));
    if (namm_evolved_on_rl(model->provenance_json) && !vm.count("allow-rl-namm")) {
      throw UsageError("--namm " + namm_path + ": its record says it was evolved on RL; pass --allow-rl-namm to use it anyway");
    }
    o.policy.namm_model = model;
  }
  o.delay = delay > 0 ? delay : o.policy.namm_model ? o.policy.namm_model->config.delay : kDefaultDelay;
  o.seed = static_cast<uint64_t>(seed);
  o.policy.seed = static_cast<uint64_t>(seed);
  try {
    o.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }

  if (vm.count("render-all") && render_path.empty()) throw UsageError("--render-all needs --render OUT.mp4");
  if (!kinds_plot_path.empty() && o.window > 0) {
    throw UsageError("--kinds-plot needs the cached mode: --window " + std::to_string(o.window) + " keeps no cache");
  }
  if (!render_path.empty()) {
    try {
      check_video_encoder_options(VideoEncoderOptions{}, render_path);
    } catch (const std::invalid_argument& e) {
      throw UsageError("--render " + render_path + ": " + e.what());
    }
  }
  EpisodeRecorder recorder;
  if (!render_path.empty()) o.on_step = recorder.hook(vm.count("render-all") ? -1 : 0);

  at::set_num_threads(threads);
  DtCheckpoint checkpoint = load_dt_checkpoint(model_dir);
  // a hub checkpoint's card numbers, given on the command line, take the sidecar's place
  DtSidecar& feeding = checkpoint.sidecar;
  if (!state_mean.empty()) feeding.state_mean = state_mean;
  if (!state_std.empty()) feeding.state_std = state_std;
  if (return_scale > 0) feeding.return_scale = return_scale;
  if (train_context > 0) feeding.context = train_context;
  try {
    feeding.validate(checkpoint.config.state_dim, "--state-mean / --state-std");
  } catch (const std::runtime_error& e) {
    throw UsageError(e.what());
  }
  if (!checkpoint.has_sidecar && state_mean.empty()) {
    std::cerr << "note: " << model_dir << " has no dt_sidecar.json and no --state-mean/--state-std were given: states are fed "
              << (state_std.empty() ? "unnormalised" : "with the given std only") << " and returns / " << feeding.return_scale << "\n";
  }
  if (o.window == 0) {
    // 3 tokens per step; the longest episode-long cache a rollout can hold
    const int64_t steps = o.max_steps > 0 ? o.max_steps : 1000;
    const bool budgeted = memory != "full" && memory != "namm";
    int64_t cache_cap = 3 * steps;
    if (budgeted)
      cache_cap = o.policy.budget.fraction > 0 ? static_cast<int64_t>(o.policy.budget.fraction * 3.0 * steps)
                                               : std::min(cache_cap, o.policy.budget.tokens);
    if (cache_cap > 3 * feeding.context) {
      std::cerr << "warning: " << model_dir << " was trained on " << feeding.context << "-step windows ("
                << 3 * feeding.context << " tokens); this episode-long cache can reach " << std::min(cache_cap, 3 * steps)
                << " tokens, outside what it was trained on (--window " << feeding.context
                << " is the standard evaluation)\n";
    }
  }
  std::cout << "rollout " << env_name << " with " << checkpoint.config.summary() << "; "
            << (o.window > 0 ? "window " + std::to_string(o.window) + " steps re-encoded per step"
                             : "cache kept across the episode, memory " + memory +
                                   (memory == "full" ? std::string() :
                                    (memory == "namm" ? "" : " budget " + o.policy.budget.to_string()) +
                                        ", delay " + std::to_string(o.delay)))
            << "\n";
  const RolloutReport report = run_rollouts(checkpoint.model, checkpoint.sidecar, env_name, o, &std::cout);

  char line[512];
  std::snprintf(line, sizeof line,
                "%s %s: return %.1f +- %.1f  D4RL score %.1f +- %.1f  (%zu episodes, target %.0f)\n"
                "KV retained: %.1f of %.1f tokens per head (%.1f%% of full)  model %.2f ms/step  env %.3f ms/step\n",
                env_name.c_str(), report.policy.c_str(), report.mean_return(), report.std_return(), report.mean_score(),
                report.std_score(), report.episodes.size(), report.target_return, report.mean_cached_tokens(),
                report.mean_full_tokens(), 100.0 * report.retained_fraction(), report.model_ms_per_step(),
                report.env_ms_per_step());
  std::cout << line;
  if (!json_path.empty()) write_file_atomically(json_path, report.to_json());
  if (!kinds_path.empty()) write_file_atomically(kinds_path, report.token_kinds_json());
  if (!kinds_plot_path.empty()) {
    KindsPlotOptions plot;
    plot.title = env_name + ", memory " + report.policy + (report.budget == "-" ? "" : " " + report.budget) +
                 ": token kinds kept (episode 0)";
    write_kinds_plot(kinds_plot_path, report.episodes.front().token_kinds, report.heads, plot);
    std::cout << "wrote " << kinds_plot_path << "\n";
  }
  if (!render_path.empty()) {
    for (int e : recorder.recorded_episodes()) {
      const std::string path = vm.count("render-all") ? episode_path(render_path, e) : render_path;
      recorder.write_video(path, report, e);
      std::cout << "wrote " << path << " (" << recorder.frames_for(recorder.recorded_steps(e)) << " frames)\n";
    }
  }
  return 0;
}

}  // namespace namm::app
