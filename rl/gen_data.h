#pragma once
// D4RL-style offline datasets from behaviour policies trained here:
// `namm gen-data` trains a linear ARS policy until its evaluation return
// reaches a "medium" target (or a maximum number of iterations, taking the
// best policy), then writes into one directory
//   <env>-behaviour.safetensors      the medium policy
//   <env>-medium.safetensors         rollouts of the medium policy with Gaussian action noise
//   <env>-medium-replay.safetensors  rollouts of the trainer's snapshots in order, each with
//                                    the trainer's own weight perturbation and action noise,
//                                    steps per snapshot in proportion to the steps the trainer
//                                    ran with it (the replay buffer of the run to medium)
//   trainer_state.safetensors        ARS checkpoint, written after every iteration
//   options.json                     the options that decide the results
//   provenance.json                  command, commit, time, training and dataset statistics
// Re-running the same command resumes: training continues from the
// checkpoint, finished files are kept. Every file is written atomically.
//
// Episodes in the datasets are cut at the env's time limit (timeouts) or
// end by falling (terminals); the collection's last episode is cut at the
// step budget and marked as a timeout. Episode e of a dataset starts from
// env.seed(dataset_episode_seed(base, e)); base is in its metadata, so the
// rewards can be recomputed by replaying the stored actions.

#include <cstdint>
#include <iosfwd>
#include <limits>
#include <string>
#include <vector>

#include "rl/behaviour_policy.h"
#include "rl/offline_dataset.h"

namespace namm {

class MujocoEnv;

/// What `namm gen-data` is asked for. NaN / 0 fields take the env's default.
struct GenDataOptions {
  std::string env = "hopper";       ///< "hopper" or "walker2d".
  std::string out_dir;              ///< created if missing.
  uint64_t seed = 0;                ///< training and collection seeds derive from it.
  /// Evaluation return (of the noisy behaviour policy) that counts as
  /// medium; NaN: hopper 1500, walker2d 3000 (normalised 46.8 and 65.3;
  /// D4RL's medium data: about 44 and 62).
  double target_return = std::numeric_limits<double>::quiet_NaN();
  int64_t max_iterations = 0;       ///< ARS iterations at most; 0: hopper 500, walker2d 1000.
  int64_t medium_steps = 200000;    ///< steps in <env>-medium.
  int64_t replay_steps = 200000;    ///< steps in <env>-medium-replay.
  /// Std of the Gaussian added to every action (then clipped), in training,
  /// evaluation and both datasets: the behaviour policy is stochastic, as
  /// D4RL's SAC policies are.
  double action_noise = 0.1;
  // ARS settings; 0 / NaN: ArsOptions::defaults_for(env).
  int directions = 0;               ///< [N].
  int top_directions = 0;           ///< [b].
  double step_size = std::numeric_limits<double>::quiet_NaN();  ///< [alpha].
  double weight_noise = std::numeric_limits<double>::quiet_NaN();  ///< [nu].
  double reward_shift = std::numeric_limits<double>::quiet_NaN();  ///< subtracted per training step.
  int eval_episodes = 5;            ///< evaluation episodes per iteration.
  int confirm_episodes = 20;        ///< episodes that confirm a policy reached the target.
  int max_episode_steps = 1000;     ///< time limit of every rollout (D4RL: 1000).
  int threads = 1;                  ///< ARS rollout threads; results do not depend on it.
  std::string command_line;         ///< recorded in the provenance.
  std::string scenes_dir = NAMM_SCENES_DIR;

  /// A copy with the env defaults filled in (target, max iterations, ARS
  /// settings). Throws std::invalid_argument naming a bad value.
  GenDataOptions resolved() const;
  /// The trainer's options (call on a resolved() copy).
  ArsOptions ars_options() const;
  /// The options that decide the results as JSON text: not threads, command
  /// line or paths, and not max_iterations (raising it on a resume continues
  /// the same training; once the behaviour policy is written it is final).
  std::string identity_json() const;
};

/// Return statistics of one dataset, over its complete episodes (ended by a
/// terminal or the time limit; the budget-cut last episode is left out).
struct DatasetStats {
  std::string name;               ///< e.g. "hopper-medium".
  int64_t steps = 0;
  int64_t episodes = 0;           ///< complete episodes.
  int64_t partial_episodes = 0;   ///< cut by the step budget (0 or 1).
  double return_mean = std::numeric_limits<double>::quiet_NaN();
  double return_std = std::numeric_limits<double>::quiet_NaN();
  double return_min = std::numeric_limits<double>::quiet_NaN();
  double return_max = std::numeric_limits<double>::quiet_NaN();
  double normalized_mean = std::numeric_limits<double>::quiet_NaN();  ///< D4RL score of return_mean.
  double seconds = 0;             ///< wall time to collect.
  /// As a JSON object (NaN -> null).
  std::string to_json() const;
};

/// What a gen-data run ended with.
struct GenDataResult {
  int64_t iterations = 0;          ///< ARS iterations run.
  int64_t env_steps = 0;           ///< training + evaluation steps.
  bool reached_target = false;
  int64_t medium_iteration = 0;    ///< the iteration whose policy is the medium policy.
  double medium_eval_return = 0;   ///< its evaluation (confirmation) mean.
  double train_seconds = 0;        ///< wall time in ARS iterations, over all resumes.
  std::vector<DatasetStats> datasets;  ///< medium, then medium-replay.
};

/// Runs (or resumes) the whole pipeline; one progress line per iteration on log.
/// Throws std::runtime_error naming the directory when it holds a run
/// with different options, std::invalid_argument for bad options.
GenDataResult generate_offline_data(const GenDataOptions& options, std::ostream& log);

/// The env reset seed of episode `episode` of a dataset with seed base `base`.
uint64_t dataset_episode_seed(uint64_t base, int64_t episode);

/// `steps` steps of policy rollouts on env with N(0, action_noise^2) added to
/// each action, clipped to [-1, 1] and rounded to float before stepping (so
/// that replaying the stored actions reproduces the rewards exactly).
/// Episodes are cut at env's max_episode_steps. stats (if given) receives
/// the return statistics; dataset.metadata_json is left empty.
OfflineDataset collect_policy_dataset(MujocoEnv& env, const LinearPolicy& policy, int64_t steps, double action_noise,
                                      uint64_t seed_base, DatasetStats* stats = nullptr);

/// `steps` steps of rollouts of snapshots in order, the step budget split
/// in proportion to weights: [snapshots] (gen-data passes the env steps the
/// trainer spent in each iteration, so the data is a uniform subsample of
/// what the trainer ran; empty: equal shares). Each episode perturbs its
/// snapshot's weights by weight_noise * N(0, I) and adds N(0, action_noise^2)
/// to the actions: the kind of rollout the ARS trainer ran.
OfflineDataset collect_replay_dataset(MujocoEnv& env, const std::vector<LinearPolicy>& snapshots,
                                      const std::vector<double>& weights, int64_t steps, double weight_noise,
                                      double action_noise, uint64_t seed_base, DatasetStats* stats = nullptr);

}  // namespace namm
