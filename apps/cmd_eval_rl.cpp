// `namm eval-rl`: for each robot, the Decision Transformer with the standard
// K-step window, the whole-episode cache, the language-evolved NAMM zero-shot
// and the baselines at the NAMM's retained size, over seeds x episodes
// (rl/eval_rl.h); writes eval.json, eval.md and kinds_<env>.png.
#include "apps/options.h"
#include "core/atomic_file.h"
#include "core/namm_model.h"
#include "core/policy_registry.h"
#include "rl/dt_checkpoint.h"
#include "rl/eval_rl.h"
#include "rl/mujoco_env.h"
#include "rl/render.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

namespace namm::app {
namespace {

namespace fs = std::filesystem;

}  // namespace

int run_eval_rl(const std::vector<std::string>& args) {
  std::string envs_text = "hopper,walker2d", model_hopper = "models/dt-hopper", model_walker = "models/dt-walker2d";
  EvalRlOptions o;
  std::string namm_path = "models/namm.safetensors", out_dir, budget_text = "50%", baselines_text;
  for (const std::string& name : o.baselines) baselines_text += (baselines_text.empty() ? "" : ",") + name;
  std::string all_baselines;
  for (const std::string& name : policy_names()) {
    if (name != "full" && name != "namm") all_baselines += (all_baselines.empty() ? "" : ", ") + name;
  }
  int64_t seed = 0;
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("out", po::value(&out_dir)->required(), "output folder: eval.json, eval.md (one table per env) and kinds_<env>.png")
      ("env", po::value(&envs_text)->default_value(envs_text), "robots, comma-separated: hopper, walker2d")
      ("model-hopper", po::value(&model_hopper)->default_value(model_hopper), "Hopper Decision Transformer directory (a missing one is reported and the env skipped)")
      ("model-walker2d", po::value(&model_walker)->default_value(model_walker), "Walker2d Decision Transformer directory (likewise)")
      ("namm", po::value(&namm_path)->default_value(namm_path), "the NAMM, applied zero-shot; when this default file is missing the namm row is left out and the baselines run at --budget")
      ("allow-rl-namm", "accept a NAMM whose record says it was evolved on RL (the namm row is then not zero-shot)")
      ("seeds", po::value(&o.seeds)->default_value(o.seeds), "seeds; seed s, episode e resets the env with --seed + 1000 s + e")
      ("episodes", po::value(&o.episodes)->default_value(o.episodes), "episodes per seed")
      ("seed", po::value(&seed)->default_value(seed), "base env seed")
      ("threads", po::value(&o.threads)->default_value(o.threads), "parallel episodes (one torch thread each); results do not depend on it")
      ("max-steps", po::value(&o.max_steps)->default_value(o.max_steps), "per-episode step limit (0: the env's 1000)")
      ("window", po::value(&o.window)->default_value(o.window), "K of the window-K row, the standard re-encode-K-steps evaluation (0: no such row)")
      ("delay", po::value(&o.delay)->default_value(o.delay), "tokens between policy updates for every cached row (0: the NAMM's own delay, or 64 without a NAMM)")
      ("budget", po::value(&budget_text)->default_value(budget_text), "the baselines' budget when there is no NAMM: a share of the tokens so far (\"50%\") or tokens (\"300\")")
      ("baselines", po::value(&baselines_text)->default_value(baselines_text), ("baseline rows, comma-separated, from " + all_baselines).c_str())
      ("target-return", po::value(&o.target_return)->default_value(o.target_return), "conditioning return (0: the model's sidecar, else hopper 3600 / walker2d 5000)");
  // clang-format on
  po::variables_map vm;
  if (!parse_options("eval-rl",
                     "--out DIR [--env hopper,walker2d] [--seeds 3] [--episodes 10] [--threads N] ...\n\n"
                     "Rows per env: window-K (the standard sliding window), full (the whole episode cached), namm\n"
                     "(the language-evolved NAMM, zero-shot), then the baselines at the NAMM's measured retained share\n"
                     "of the cache. Per row: D4RL score mean +- std over all episodes, the std of the per-seed means,\n"
                     "mean return, KV retained (% of the full cache, mean tokens per head), kept share by token kind,\n"
                     "model ms/step.",
                     options, args, vm)) {
    return 0;
  }
  const std::vector<std::string> envs = split_list(envs_text);
  if (envs.empty()) throw UsageError("--env lists no robot");
  const std::vector<std::string> known = env_names();
  for (const std::string& env : envs) {
    if (std::find(known.begin(), known.end(), env) == known.end()) {
      throw UsageError("--env: unknown robot '" + env + "' (choose from hopper, walker2d)");
    }
  }
  if (seed < 0) throw UsageError("--seed must be >= 0, got " + std::to_string(seed));
  o.base_seed = static_cast<uint64_t>(seed);
  o.baselines = split_list(baselines_text);
  try {
    o.fallback_budget = Budget::parse(budget_text);
  } catch (const std::exception& e) {
    throw UsageError(std::string("--budget: ") + e.what());
  }

  std::string namm_note;
  if (fs::exists(namm_path)) {
    auto model = std::make_shared<const NammModel>(NammModel::load(namm_path));
    if (namm_evolved_on_rl(model->provenance_json) && !vm.count("allow-rl-namm")) {
      throw UsageError("--namm " + namm_path + ": its record says it was evolved on RL, so the namm row would not be "
                       "zero-shot; pass --allow-rl-namm to use it anyway");
    }
    o.namm = model;
  } else if (!vm["namm"].defaulted()) {
    throw std::runtime_error("--namm " + namm_path + ": no such file");
  } else {
    namm_note = "no NAMM at " + namm_path + ": the namm row is left out and the baselines run at --budget " +
                o.fallback_budget.to_string();
    std::cout << "note: " << namm_note << "\n";
  }
  try {
    o.validate();
  } catch (const std::invalid_argument& e) {
    std::string message = e.what();
    if (message.rfind("eval-rl: ", 0) == 0) message.erase(0, 9);
    throw UsageError(message);
  }

  std::error_code ec;
  const std::unique_ptr<FileLock> out_lock = lock_run_folder(out_dir);  // one run per folder

  const std::string command = command_line("eval-rl", args);
  std::vector<EvalRlEnvResult> results;
  std::vector<std::string> skipped;
  if (!namm_note.empty()) skipped.push_back("namm row: " + namm_note);
  for (const std::string& env : envs) {
    const std::string dir = env == "hopper" ? model_hopper : model_walker;
    try {
      check_dt_dir(dir);
    } catch (const std::runtime_error& e) {
      std::cout << "skip " << env << ": " << e.what() << "\n";
      skipped.push_back(env + ": " + e.what());
      continue;
    }
    const DtCheckpoint checkpoint = load_dt_checkpoint(dir);
    std::cout << "eval-rl " << env << ": " << dir << " (" << checkpoint.config.summary() << "), " << o.seeds
              << " seeds x " << o.episodes << " episodes, " << o.threads << " worker(s)\n"
              << std::flush;
    EvalRlEnvResult result = evaluate_rl_env(checkpoint.model, checkpoint.sidecar, env, o,
                                             [](const std::string& line) { std::cout << line << "\n" << std::flush; });
    result.model_dir = dir;
    result.namm_path = o.namm ? namm_path : "";
    if (!result.plot_kinds.empty()) {
      KindsPlotOptions plot;
      plot.title = env + ": token kinds kept by " + result.plot_policy + " (first episode of seed 0)";
      const std::string png = (fs::path(out_dir) / ("kinds_" + env + ".png")).string();
      write_kinds_plot(png, result.plot_kinds, result.heads, plot);
      std::cout << "wrote " << png << "\n";
    }
    results.push_back(std::move(result));
  }
  if (results.empty()) {
    throw std::runtime_error("no env ran (" + std::to_string(skipped.size() - (namm_note.empty() ? 0 : 1)) +
                             " skipped: no Decision Transformer found; see the lines above)");
  }
  const std::string json_path = (fs::path(out_dir) / "eval.json").string();
  const std::string md_path = (fs::path(out_dir) / "eval.md").string();
  write_file_atomically(json_path, eval_rl_json(results, o, command, skipped));
  const std::string md = eval_rl_markdown(results, o, command, skipped);
  write_file_atomically(md_path, md);
  std::cout << "\n" << md << "\nwrote " << md_path << " and " << json_path << "\n";
  return 0;
}

}  // namespace namm::app
