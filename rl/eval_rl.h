// `namm eval-rl`: every memory setting of a Decision Transformer on one robot
// over several seeds, at one memory size.
//
// Rows, in order:
//   window-K   the standard evaluation: the last K steps re-encoded every step
//   full       the KV cache kept across the whole episode, nothing pruned
//   namm       the language-evolved NAMM pruning that cache, zero-shot
//   h2o, l2, streaming, recency (and tova, random on request)
//              at the NAMM's retained size: Budget = the fraction of the full
//              cache the namm row kept, measured on the same episodes (sum of
//              cached over sum of full tokens); a fixed fallback budget when
//              no NAMM is given.
// Every cached row prunes every `delay` tokens (the NAMM's own delay).
//
// Episodes are independent, so they run in parallel over worker threads; each
// worker has its own env and episode state and one torch thread, and the
// results are stored by (row, seed, episode), so they do not depend on the
// thread count (timings aside). Seed s, episode e resets the env with
// base_seed + 1000 * s + e and seeds the "random" policy with s + e.
//
// Not here: the command line (apps/cmd_eval_rl.cpp), the plot (rl/render.h).
#pragma once

#include "core/memory_policy.h"
#include "rl/dt_checkpoint.h"
#include "rl/rollout.h"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace namm {

struct NammModel;

/// What eval-rl runs.
struct EvalRlOptions {
  int seeds = 3;                 ///< seeds, each a block of `episodes` episodes.
  int episodes = 10;             ///< episodes per seed.
  int threads = 1;               ///< worker threads (one torch thread each).
  int max_steps = 0;             ///< per-episode step limit; 0 = the env's (1000).
  uint64_t base_seed = 0;        ///< seed s, episode e resets with base_seed + 1000 s + e.
  int64_t window = 20;           ///< K of the window row; 0 leaves the row out.
  int64_t delay = 0;             ///< tokens between updates; 0 = the NAMM's config.delay, or 64 without one.
  Budget fallback_budget{0, 0.5};  ///< the baselines' budget when no NAMM is given.
  std::vector<std::string> baselines = {"h2o", "l2", "streaming", "recency", "snapkv", "pyramidkv", "adakv", "keydiff"};
  double target_return = 0.0;    ///< 0 = the checkpoint's sidecar, else the env default.
  int64_t sinks = 4;             ///< StreamingLLM sink tokens.
  double h2o_recent_share = 0.5;  ///< H2O's share of the budget for recent tokens.
  std::shared_ptr<const NammModel> namm;  ///< the zero-shot NAMM; null = no namm row.

  /// The delay the cached rows use.
  int64_t resolved_delay() const;
  /// Throws std::invalid_argument naming the first bad field and its value
  /// (including a delay that is no multiple of the NAMM's hop, an unknown or
  /// repeated baseline, or "full"/"namm" among the baselines).
  void validate() const;
};

/// One row of the table: a memory setting over all seeds and episodes.
struct EvalRlRow {
  std::string name;              ///< "window-20", "full", "namm", "h2o", ...
  std::string budget;            ///< "-" or Budget::to_string() of the baselines.
  RolloutReport report;          ///< every episode, seed-major (seed 0's episodes first).
  std::vector<double> seed_mean_scores;  ///< [seeds] D4RL score averaged over each seed's episodes.
  /// Population std of seed_mean_scores (how much a 1-seed result would move).
  double std_of_seed_means() const;
  /// Kept over seen tokens of each kind {return, state, action}, over all
  /// steps, layers and heads; all -1 for the window row (no cache).
  std::array<double, 3> kept_fraction_by_kind{-1.0, -1.0, -1.0};
};

/// One environment's evaluation.
struct EvalRlEnvResult {
  std::string env;
  std::string model_dir;                 ///< as given (for the report).
  std::string model_summary;             ///< DtConfig::summary().
  std::string namm_path;                 ///< for the report; empty = none.
  double target_return = 0.0;
  int64_t delay = 0;
  double namm_retained = -1.0;           ///< the namm row's retained fraction; < 0 without a NAMM.
  Budget baseline_budget;                ///< what the baselines ran at.
  std::vector<EvalRlRow> rows;
  /// The plotted episode: the NAMM's (or without one the first baseline's)
  /// first episode of seed 0: [steps], each [L] layers.
  std::vector<StepTokenKinds> plot_kinds;
  std::string plot_policy;               ///< whose kinds those are.
  int64_t heads = 1;
  double wall_seconds = 0.0;
};

/// Receives one progress line (no newline) per finished row.
using EvalRlProgress = std::function<void(const std::string& line)>;

/// Runs every row on env_name for model (with sidecar's normalisation); see
/// the top of this file. Throws std::invalid_argument for bad options or a
/// model that does not fit the env (run_rollouts' checks).
EvalRlEnvResult evaluate_rl_env(const DecisionTransformer& model, const DtSidecar& sidecar, const std::string& env_name,
                                const EvalRlOptions& options, const EvalRlProgress& progress = {});

/// Throws std::runtime_error("<dir>: no Decision Transformer here (<what> missing) ...") unless dir
/// holds config.json and model.safetensors (one line, naming the directory).
void check_dt_dir(const std::string& dir);

/// True when a NAMM's provenance record says it was evolved on RL (its
/// "domain" or one of its "tasks" mentions rl, hopper, walker, decision or
/// mujoco): results on the Decision Transformer would not be zero-shot.
bool namm_evolved_on_rl(const std::string& provenance_json);

/// The markdown report: a header explaining the columns and giving command,
/// then one table per env. skipped: one line per env that did not run.
std::string eval_rl_markdown(const std::vector<EvalRlEnvResult>& results, const EvalRlOptions& options,
                             const std::string& command, const std::vector<std::string>& skipped = {});

/// Everything as JSON text: options, command, per env per row the summary,
/// the per-seed means and every episode.
std::string eval_rl_json(const std::vector<EvalRlEnvResult>& results, const EvalRlOptions& options,
                         const std::string& command, const std::vector<std::string>& skipped = {});

}  // namespace namm
