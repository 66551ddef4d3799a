// `namm gen-data`: trains a behaviour policy (ARS) to a medium return and
// writes D4RL-style medium and medium-replay datasets; see rl/gen_data.h.
#include "apps/options.h"
#include "rl/gen_data.h"

#include <cmath>
#include <iostream>

namespace namm::app {

int run_gen_data(const std::vector<std::string>& args) {
  GenDataOptions o;
  int64_t seed = 0;
  po::options_description options("options");
  options.add_options()
      ("env", po::value(&o.env)->required(), "hopper or walker2d")
      ("out", po::value(&o.out_dir)->required(), "output directory (created; re-running the same command resumes)")
      ("seed", po::value(&seed)->default_value(0), "seed of training and collection (>= 0)")
      ("target-return", po::value(&o.target_return), "evaluation return (noisy policy) that counts as medium (default hopper 1500, walker2d 3000)")
      ("max-iterations", po::value(&o.max_iterations), "ARS iterations at most; then the best policy is taken (default hopper 500, walker2d 1000)")
      ("medium-steps", po::value(&o.medium_steps)->default_value(200000), "steps in <env>-medium")
      ("replay-steps", po::value(&o.replay_steps)->default_value(200000), "steps in <env>-medium-replay")
      ("action-noise", po::value(&o.action_noise)->default_value(0.1), "std of Gaussian noise on every action (training, evaluation, datasets)")
      ("directions", po::value(&o.directions), "ARS N (default hopper 8, walker2d 40)")
      ("top-directions", po::value(&o.top_directions), "ARS b (default hopper 4, walker2d 30)")
      ("step-size", po::value(&o.step_size), "ARS alpha (default hopper 0.02, walker2d 0.03)")
      ("weight-noise", po::value(&o.weight_noise), "ARS nu (default hopper 0.03, walker2d 0.025)")
      ("reward-shift", po::value(&o.reward_shift), "subtracted from every training reward (ARS's survival-bonus removal; default 1)")
      ("eval-episodes", po::value(&o.eval_episodes)->default_value(5), "evaluation episodes per iteration")
      ("confirm-episodes", po::value(&o.confirm_episodes)->default_value(20), "episodes confirming the target")
      ("max-episode-steps", po::value(&o.max_episode_steps)->default_value(1000), "time limit per episode")
      ("threads", po::value(&o.threads)->default_value(1), "rollout threads (results do not depend on it)");
  po::variables_map vm;
  if (!parse_options("gen-data", "--env hopper|walker2d --out DIR [--seed S] [--target-return R] [--medium-steps N]",
                     options, args, vm)) {
    return 0;
  }
  if (seed < 0) throw UsageError("--seed must be >= 0, got " + std::to_string(seed));
  o.seed = static_cast<uint64_t>(seed);
  if (vm.count("max-iterations") && o.max_iterations < 1) {
    throw UsageError("--max-iterations must be >= 1, got " + std::to_string(o.max_iterations));
  }
  if (vm.count("target-return") && !std::isfinite(o.target_return)) throw UsageError("--target-return must be finite");
  if (vm.count("directions") && o.directions < 1) throw UsageError("--directions must be >= 1, got " + std::to_string(o.directions));
  if (vm.count("top-directions") && o.top_directions < 1) {
    throw UsageError("--top-directions must be >= 1, got " + std::to_string(o.top_directions));
  }
  if (vm.count("step-size") && !(o.step_size > 0)) throw UsageError("--step-size must be > 0");
  if (vm.count("weight-noise") && !(o.weight_noise > 0)) throw UsageError("--weight-noise must be > 0");
  o.command_line = command_line("gen-data", args);
  try {
    o = o.resolved();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  const GenDataResult r = generate_offline_data(o, std::cout);
  std::cout << o.env << ": done; " << r.iterations << " iterations, medium policy return " << r.medium_eval_return
            << (r.reached_target ? " (target reached)" : " (target not reached)") << "\n";
  return 0;
}

}  // namespace namm::app
