// Running a Decision Transformer in a MuJoCo environment, in two modes:
//
//   cached (default)  the toolkit's own path: one KV cache per layer is KEPT
//                     ACROSS THE WHOLE EPISODE (3 tokens per step, up to 3000
//                     tokens for 1000 steps; never re-encoded), and a memory
//                     policy (full, namm, h2o, l2, streaming, tova, recency,
//                     random) prunes it every `delay` tokens through the
//                     MemoryController. Step t feeds a_{t-1}, R_t, s_t and
//                     reads the action from s_t's hidden state.
//   window K          the standard evaluation (Hugging Face's get_action, the
//                     DT paper): every step re-encodes the last K steps from
//                     scratch with the plain forward; no cache is kept. The
//                     baseline a pruned cache is compared against.
//
// Conditioning as in the DT paper: the return-to-go starts at the target
// return and drops by each reward; it and the states are scaled / normalised
// by the checkpoint's sidecar. Timestep embeddings cap at max_ep_len - 1.
//
// Per step (cached mode) the rollout records, per layer, how many cached
// tokens of each kind (return / state / action, = position % 3) the caches
// hold after the step's tokens went in, for plots of what a policy keeps.
//
// Not here: rendering. A per-step hook receives the environment so a
// renderer can be attached from outside.
#pragma once

#include "core/policy_registry.h"
#include "rl/decision_transformer.h"
#include "rl/dt_checkpoint.h"

#include <array>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace namm {

class MujocoEnv;

/// Called after every environment step: the env (state after the step), the
/// episode index, the step index (0-based) and the action taken [A].
using RolloutStepHook = std::function<void(const MujocoEnv& env, int episode, int64_t step,
                                           const std::vector<double>& action)>;

/// How rollouts run.
struct RolloutOptions {
  PolicySpec policy;             ///< memory policy (name, budget, seed, NAMM); "full" keeps everything.
  int64_t delay = 512;           ///< tokens between policy updates (a NAMM needs a multiple of its hop).
  int64_t window = 0;            ///< > 0: the K-step sliding re-encode baseline (policy must be "full").
  int episodes = 10;             ///< episodes to run.
  uint64_t seed = 0;             ///< episode e resets the env with seed + e (and seeds "random" with it).
  double target_return = 0.0;    ///< raw-unit conditioning; 0 = the sidecar's, else default_target_return(env).
  int max_steps = 0;             ///< per-episode step limit; 0 = the env's (1000).
  bool record_token_kinds = true;  ///< per-step kept tokens by kind (cached mode).
  RolloutStepHook on_step;       ///< optional per-step hook (rendering).

  /// Throws std::invalid_argument naming the first bad field and its value.
  void validate() const;
};

/// Cached tokens of one step, per layer (summed over heads), by kind.
struct StepTokenKinds {
  int64_t tokens_seen = 0;                            ///< tokens fed so far (the full-cache size).
  std::vector<std::array<int64_t, 3>> kept;           ///< [L] {return, state, action} tokens cached.
};

/// One episode.
struct EpisodeResult {
  int episode = 0;
  uint64_t seed = 0;                ///< the env seed.
  double episode_return = 0.0;      ///< sum of rewards.
  double normalized_score = 0.0;    ///< D4RL-normalised return.
  int64_t steps = 0;
  bool terminated = false;          ///< fell (not truncated).
  double mean_cached_tokens = 0.0;  ///< mean over steps of the tokens each head holds (mean over layers and
                                    ///< heads); window mode: the tokens the step re-encodes.
  double mean_full_tokens = 0.0;    ///< mean over steps of the tokens a full cache would hold.
  int64_t peak_cache_bytes = 0;     ///< largest allocated KV storage (cached mode).
  int64_t policy_updates = 0;
  double model_seconds = 0.0;       ///< embedding + transformer + action head, summed over steps.
  double env_seconds = 0.0;         ///< MuJoCo steps, summed.
  std::vector<StepTokenKinds> token_kinds;  ///< [steps] when recorded.
};

/// All episodes of one setting plus their summary.
struct RolloutReport {
  std::string env;
  std::string policy;               ///< policy name, or "window" in window mode.
  std::string budget;               ///< Budget::to_string(), "-" for full / window.
  int64_t delay = 0;
  int64_t window = 0;
  double target_return = 0.0;
  int64_t layers = 0;
  int64_t heads = 0;
  std::vector<EpisodeResult> episodes;

  double mean_return() const;
  double std_return() const;        ///< population standard deviation.
  double mean_score() const;
  double std_score() const;
  double mean_cached_tokens() const;   ///< mean over episodes.
  double mean_full_tokens() const;
  /// sum of cached over sum of full tokens, all steps of all episodes (1 for a full cache).
  double retained_fraction() const;
  /// model milliseconds per step over all steps.
  double model_ms_per_step() const;
  /// env milliseconds per step over all steps.
  double env_ms_per_step() const;
  /// Summary plus per-episode numbers as JSON text (no per-step data).
  std::string to_json() const;
  /// Per-episode, per-step kept tokens by kind: {"token_kinds": [...], "episodes": [{"tokens_seen": [S],
  /// "kept": [L][S][3]}], "kept_fraction_by_kind": [L][3]} as JSON text.
  std::string token_kinds_json() const;
};

/// Runs one episode of model (with sidecar's normalisation) in env.
EpisodeResult run_episode(const DecisionTransformer& model, const DtSidecar& sidecar, MujocoEnv& env,
                          const RolloutOptions& options, int episode);

/// Runs options.episodes episodes in a fresh make_env(env_name); checks the
/// model's sizes against the env and the sidecar's env name (one-line
/// std::invalid_argument). Prints one line per episode to progress when given.
RolloutReport run_rollouts(const DecisionTransformer& model, const DtSidecar& sidecar, const std::string& env_name,
                           const RolloutOptions& options, std::ostream* progress = nullptr);

}  // namespace namm
