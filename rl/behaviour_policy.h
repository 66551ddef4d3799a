#pragma once
// Behaviour policies for offline datasets: a deterministic linear policy on
// normalised observations, trained with Augmented Random Search (Mania,
// Guy, Recht, "Simple random search provides a competitive approach to
// reinforcement learning", 2018), variant V2-t: antithetic perturbations of
// the weights, the top-b directions by max(r+, r-), the step scaled by the
// standard deviation of the returns used, and states whitened by a running
// mean/std that all rollouts of an iteration update.
//
// This is not a general RL library: one policy class, one optimiser, plain
// loops (the policies have tens of weights, tensors would only add
// overhead). All randomness is counter-based, a function of (seed,
// iteration, direction), so a run is identical with any number of threads
// and after a resume from a checkpoint.

#include "core/seed_mix.h"

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace namm {

class MujocoEnv;

/// Running per-dimension mean and variance (Welford, merged with Chan's
/// formula); ARS V2's state filter.
struct ObservationNormalizer {
  int64_t count = 0;         ///< states seen.
  std::vector<double> mean;  ///< [O].
  std::vector<double> m2;    ///< [O] sum of squared deviations from the mean.

  ObservationNormalizer() = default;
  explicit ObservationNormalizer(int64_t observation_size)
      : mean(static_cast<size_t>(observation_size), 0.0), m2(static_cast<size_t>(observation_size), 0.0) {}

  /// Adds one state x: [O].
  void push(const double* x);
  /// Adds the states `other` saw (the result equals pushing them in order up to rounding).
  void merge(const ObservationNormalizer& other);
  /// Population standard deviation: [O]; 1 where fewer than 2 states were
  /// seen or the spread is below 1e-8 (a constant input is left unscaled).
  std::vector<double> stddev() const;
};

/// a = clip(W (s - mean) / std, -1, 1): a deterministic linear policy.
struct LinearPolicy {
  int64_t observation_size = 0;  ///< O.
  int64_t action_size = 0;       ///< A.
  std::vector<double> weights;   ///< [A * O] row-major W.
  std::vector<double> obs_mean;  ///< [O].
  std::vector<double> obs_std;   ///< [O], positive.

  /// A zero policy (W = 0, mean 0, std 1).
  static LinearPolicy zeros(int64_t observation_size, int64_t action_size);
  /// Writes the action for observation: [O] into action: [A].
  void act(const double* observation, double* action) const;
  /// The action for observation: [O] -> [A].
  std::vector<double> act(const std::vector<double>& observation) const;
  /// Throws std::invalid_argument naming `what` on inconsistent sizes or non-finite values.
  void validate(const std::string& what) const;
};

/// Writes the policy atomically as safetensors (weights [A, O], obs_mean [O],
/// obs_std [O], all F64) with string metadata (env, iteration, returns...).
void save_behaviour_policy(const LinearPolicy& policy, const std::string& path,
                           const std::map<std::string, std::string>& metadata = {});
/// Reads what save_behaviour_policy wrote; one-line std::runtime_error naming
/// the path for a missing or malformed file. metadata, if given, receives
/// the file's metadata.
LinearPolicy load_behaviour_policy(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

/// ARS V2-t hyperparameters (the paper's symbols in brackets).
struct ArsOptions {
  std::string env = "hopper";    ///< "hopper" or "walker2d".
  int directions = 8;            ///< [N] perturbation directions per iteration.
  int top_directions = 4;        ///< [b] directions used in the update, <= N.
  double step_size = 0.02;       ///< [alpha].
  double noise = 0.025;          ///< [nu] perturbation scale.
  /// Subtracted from every training reward (not from evaluations): the ARS
  /// paper removes the survival bonus so that standing still is not a
  /// local optimum.
  double reward_shift = 1.0;
  int episode_steps = 1000;      ///< [H] rollout horizon (the env's time limit).
  /// Std of Gaussian noise added to every action (then clipped) in training
  /// and evaluation rollouts: the behaviour policy is this stochastic
  /// policy, so the target is met by the policy that collects the data.
  double action_noise = 0.0;
  int eval_episodes = 5;         ///< episodes per evaluation (new reset seeds every iteration).
  /// When the evaluation mean reaches this, a confirmation evaluation of
  /// confirm_episodes runs; reached_target() once it also reaches it.
  double target_return = std::numeric_limits<double>::infinity();
  int confirm_episodes = 20;
  uint64_t seed = 0;
  int threads = 1;               ///< rollout threads; results do not depend on it.
  std::string scenes_dir = NAMM_SCENES_DIR;

  /// Near the ARS paper's V2-t settings for env (Hopper: N 8, b 4, alpha
  /// 0.02, nu 0.03, shift 1; Walker2d: N 40, b 30, alpha 0.03, nu 0.025,
  /// shift 1), adjusted where noted in the .cpp; throws
  /// std::invalid_argument for other envs.
  static ArsOptions defaults_for(const std::string& env);
  /// Throws std::invalid_argument naming the offending value.
  void validate() const;
  /// The options that decide the results (all but threads and scenes_dir), as a JSON object.
  std::string identity_json() const;
};

/// What one ARS iteration measured; the evaluated policy is the one after the update.
struct ArsIterationStats {
  int64_t iteration = 0;        ///< completed iterations, 1-based.
  int64_t env_steps = 0;        ///< environment steps so far (training + evaluation).
  double train_return_mean = 0; ///< mean unshifted return of the 2N perturbed rollouts.
  double eval_return_mean = 0;  ///< evaluation of the updated policy (with the action noise).
  double eval_return_std = 0;
  /// Mean of the confirmation evaluation; NaN when none ran (eval below target).
  double confirm_return_mean = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0;           ///< wall time of this iteration.
};

/// Episode returns and length of a batch of rollouts.
struct RolloutSummary {
  std::vector<double> returns;  ///< [episodes] unshifted returns.
  int64_t steps = 0;            ///< environment steps taken.
  double mean() const;
  double stddev() const;        ///< population standard deviation.
};

/// Runs one episode of policy on env, seeded with env_seed, at most
/// max_steps steps, with N(0, action_noise^2) added to each action (drawn
/// from SplitMix64{mix_seed(env_seed, 1)}) and clipped to [-1, 1]; returns
/// the unshifted return. steps receives the steps taken; states, if given,
/// every observation the policy acted on.
double run_policy_episode(MujocoEnv& env, const LinearPolicy& policy, uint64_t env_seed, int max_steps,
                          int64_t* steps, ObservationNormalizer* states = nullptr, double action_noise = 0.0);

/// The ARS trainer: step() runs one iteration (2N rollouts, update,
/// normaliser merge, evaluation). Checkpoints hold everything needed to
/// continue bit-identically.
class ArsTrainer {
 public:
  /// Builds one env per thread; throws std::invalid_argument for bad options.
  explicit ArsTrainer(ArsOptions options);
  ~ArsTrainer();
  ArsTrainer(const ArsTrainer&) = delete;
  ArsTrainer& operator=(const ArsTrainer&) = delete;

  /// One ARS iteration; appends and returns its statistics.
  const ArsIterationStats& step();

  /// The current policy (weights and the normaliser as it now stands).
  LinearPolicy policy() const;
  /// The policies each iteration started from, in order: [iteration()] (snapshot i is policy before iteration i+1).
  std::vector<LinearPolicy> snapshots() const;
  /// One record per completed iteration.
  const std::vector<ArsIterationStats>& history() const { return history_; }
  int64_t iteration() const { return static_cast<int64_t>(history_.size()); }
  int64_t env_steps() const { return env_steps_; }
  /// Wall seconds spent in step() over the whole run (across resumes).
  double train_seconds() const;
  /// True when the last iteration's confirmation evaluation reached target_return.
  bool reached_target() const;
  /// The iteration (1-based) whose evaluated policy had the best evaluation
  /// mean, and that policy; 0 and the zero policy before any iteration.
  int64_t best_iteration() const { return best_iteration_; }
  const LinearPolicy& best_policy() const { return best_policy_; }
  const ArsOptions& options() const { return options_; }
  int observation_size() const { return observation_size_; }
  int action_size() const { return action_size_; }

  /// Evaluation of policy (with the options' action noise): `episodes`
  /// episodes whose reset seeds derive from (seed, stream, index). Uses the trainer's envs.
  RolloutSummary evaluate(const LinearPolicy& policy, int episodes, uint64_t stream);

  /// Writes the whole trainer state atomically as safetensors.
  void save(const std::string& path) const;
  /// Restores a state save() wrote; throws std::runtime_error naming path
  /// when the file is malformed or was written with different options.
  void load(const std::string& path);

 private:
  struct Worker;
  ArsOptions options_;
  int observation_size_ = 0;
  int action_size_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;  // [threads], each with its own env
  std::vector<double> weights_;                   // [A * O]
  ObservationNormalizer normalizer_;
  std::vector<LinearPolicy> snapshots_;           // [iteration]
  std::vector<ArsIterationStats> history_;        // [iteration]
  int64_t env_steps_ = 0;
  int64_t best_iteration_ = 0;
  LinearPolicy best_policy_;
};

// SplitMix64 and mix_seed, the counter-based generator and seeds: core/seed_mix.h.

}  // namespace namm
