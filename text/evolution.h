// Evolving a NAMM with CMA-ES on the language tasks (namm-reference.md,
// "Evolution (CMA-ES)"): incremental stages over growing task sets, each
// starting from the previous stage's mean; per generation a fresh batch of
// TRAIN-split prompts per task; fitness of a candidate = mean over tasks of
// (its score) / (the full cache's score) on the same prompts; the CMA mean is
// evaluated too (the method reports the mean, not the best sample).
//
// Work shared by all candidates is done once per prompt: the full-cache
// reference answer and the first min(delay, T) prompt tokens (before the
// first update every candidate's cache is the same; text_eval.h SharedPrefix).
//
// Feature normalisation: in the first generation the candidates' normalisers
// learn the spectrogram statistics (each policy over its own prompts); their
// statistics are then merged (Chan's parallel formula, in candidate and prompt
// order, so the result does not depend on threads) and frozen for the rest of
// the run, and stored with the model.
//
// Prompts whose full-cache score is 0 cannot express a ratio; they are left
// out of a task's ratio (sum of candidate scores / sum of full scores over the
// remaining prompts). A task with no such prompt in a generation is left out
// of the mean over tasks; if every task is, the fitness is 1 (indistinguishable
// from the full cache). The log reports how many prompts counted.
//
// Checkpoints (a directory): cma-<generation>.safetensors (CmaEs::save) and
// state.json, each written atomically, state.json last, naming the CMA file;
// the previous CMA file is removed only after. Resuming gives bitwise the
// same run as never stopping (same BLAS and thread count for CMA-ES). A stage
// that ends saves its mean as namm-stage<k>.safetensors in the directory.
//
// Not here: the command line (apps/cmd_evolve.cpp), answering (text_eval.h).
#pragma once

#include "core/feature_norm.h"
#include "core/namm_model.h"
#include "adapters/cached_host.h"
#include "text/tasks.h"
#include "text/text_eval.h"

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace namm {

/// One incremental stage: the tasks it evolves on and its generations.
struct EvolutionStage {
  std::vector<std::string> tasks;
  int64_t generations = 0;

  /// Parses "kv_retrieval,needle" (generations = default_generations) or
  /// "kv_retrieval,needle:20"; throws std::invalid_argument naming the text.
  static EvolutionStage parse(const std::string& text, int64_t default_generations);
};

/// Makes the example of (task, split, index, context_tokens); make_example by default.
using ExampleMaker = std::function<TaskExample(const std::string&, Split, int64_t, int64_t)>;

/// How candidates are evaluated.
struct FitnessOptions {
  AnswerOptions answer;
  int threads = 2;
  bool share_prefix = true;  ///< compute the common prefix once per prompt (same results, faster).
  bool compute_full = true;  ///< run the full-cache references (off on ranks that only score candidates:
                             ///< full_scores stay 0 and fitness is not computed).
  const std::atomic<bool>* stop = nullptr;  ///< set: skip the remaining work, report interrupted.
};

/// What evaluate_candidates measured. K candidates, E examples.
struct FitnessReport {
  std::vector<double> fitness;                 ///< [K]
  std::vector<double> retained_fraction;       ///< [K] mean over examples of the retained fraction.
  std::vector<std::vector<double>> scores;     ///< [K][E]
  std::vector<double> full_scores;             ///< [E] the full cache's scores.
  int64_t informative_examples = 0;            ///< examples whose full-cache score is > 0.
  FeatureNormalizer pooled_normalizer;         ///< candidates' statistics merged (empty when the base was frozen).
  std::vector<FeatureNormalizer> candidate_normalizers;  ///< [K] each candidate's statistics merged over examples
                                                         ///< in order (empty when the base was frozen); pooled
                                                         ///< merges these in candidate order.
  double prefix_seconds = 0.0;                 ///< summed over threads: shared prefixes.
  double full_seconds = 0.0;                   ///< full-cache references.
  double candidate_seconds = 0.0;              ///< candidates' examples.
  double candidate_prefill_seconds = 0.0;      ///< of which prompt tokens (NAMM updates included).
  double candidate_decode_seconds = 0.0;       ///< of which answer tokens.
  double candidate_policy_seconds = 0.0;       ///< of which NAMM updates.
  bool interrupted = false;                    ///< stop was set: the numbers are incomplete.
  double cluster_seconds = 0.0;                ///< rank 0 in broadcast + gather (evolve over a cluster).
  int64_t cluster_bytes = 0;                   ///< bytes broadcast and gathered.
};

/// Fitness of a set of scores: mean over tasks (first-appearance order) of
/// sum(scores) / sum(full) over the examples whose full score is > 0; tasks
/// without such examples are left out; 1.0 if all are. scores, full, tasks: [E].
double fitness_from_scores(const std::vector<double>& scores, const std::vector<double>& full,
                           const std::vector<std::string>& tasks);

/// Fitness after memory pressure: fitness - penalty * max(0, retained - target).
double penalised_fitness(double fitness, double retained_fraction, double target, double penalty);

/// Evaluates candidate parameter vectors candidates [K, P] (float32 or 64)
/// as NAMMs with base's config and normaliser on the same examples.
FitnessReport evaluate_candidates(const CausalLm& model, const NammModel& base, const at::Tensor& candidates,
                                  const std::vector<TaskExample>& examples, const FitnessOptions& options);

class Cluster;

/// Everything a run is made of.
struct EvolutionOptions {
  std::vector<EvolutionStage> stages;
  int64_t population = 32;
  double initial_sigma = 0.065;
  uint64_t seed = 0;
  bool active_cma = true;            ///< active CMA-ES (negative weights).
  int64_t prompts_per_task = 8;      ///< per task per generation (the paper: 64).
  /// > 0: screen prompts. Per task, draw up to prompts_per_task * screen_draws
  /// TRAIN prompts in order and keep the first prompts_per_task the full cache
  /// answers (score > 0); the others would not count in the fitness anyway, so
  /// every candidate's compute goes to prompts that can tell candidates apart.
  /// 0: keep every drawn prompt.
  int64_t screen_draws = 0;
  /// Memory pressure: a candidate whose mean retained fraction r exceeds
  /// kv_target loses kv_penalty * (r - kv_target) from its fitness. Without it
  /// (kv_penalty 0) nothing rewards a smaller cache when eviction never raises
  /// the score (a small host with the full cache answered right).
  double kv_target = 1.0;
  double kv_penalty = 0.0;
  std::vector<int64_t> context_tokens = {1024};  ///< prompt i of a batch has context_tokens[i % size].
  bool evaluate_mean = true;         ///< also evaluate the CMA mean every generation.
  NammConfig namm;                   ///< the evolved NAMM's shape; namm.delay drives the controller.
  FitnessOptions fitness;            ///< fitness.answer.delay must equal namm.delay.

  std::string checkpoint_dir;        ///< empty: no checkpoints, no resume.
  std::string output_path;           ///< the final NAMM (NammModel::save); empty: not saved.
  std::string log_path;              ///< JSONL, one line per generation; empty: checkpoint_dir/log.jsonl if any.
  std::string lm_checkpoint;         ///< provenance: the language model evolved on.
  std::string git_commit;            ///< provenance.
  std::string command_line;          ///< provenance.

  std::ostream* progress = nullptr;  ///< one line per generation when set.
  const std::atomic<bool>* stop = nullptr;  ///< set (e.g. by SIGINT): abandon the generation under way, return (the last checkpoint stays).
  int64_t stop_after_generations = 0;  ///< > 0: return after this many generations of this call (tests, time slicing).
  ExampleMaker make_example;         ///< empty: namm::make_example.
  /// Processes sharing the fitness evaluations (core/cluster.h); null or one
  /// rank: this process alone. Rank 0 runs evolve() and owns CMA-ES, the
  /// checkpoints and the output; every other rank runs serve_evolution().
  /// Each rank scores a contiguous share of the candidates; rank 0 also runs
  /// the full-cache references. Results do not depend on the number of ranks.
  Cluster* cluster = nullptr;

  /// Throws std::invalid_argument naming the offending value.
  void validate() const;
  /// JSON of everything that determines the results (resume refuses a different one).
  std::string fingerprint_json() const;
};

/// What one generation measured.
struct GenerationRecord {
  int64_t stage = 0;              ///< 0-based.
  int64_t stage_generation = 0;   ///< 1-based within the stage.
  int64_t generation = 0;         ///< 1-based over the run.
  double best_fitness = 0.0;      ///< best candidate.
  double mean_candidate_fitness = 0.0;
  double mean_fitness = 0.0;      ///< the CMA mean's (NaN when not evaluated).
  double mean_score = 0.0;        ///< the CMA mean's normalised score before the memory penalty (NaN when not evaluated).
  double sigma = 0.0;             ///< sigma the candidates were drawn with.
  double mean_retained_fraction = 0.0;  ///< over candidates and prompts.
  double mean_retained_fraction_of_mean = 0.0;
  int64_t prompts = 0;
  int64_t informative_prompts = 0;
  int64_t screened_prompts = 0;   ///< prompts drawn to find them (= prompts without screening).
  double seconds = 0.0;           ///< wall time of the generation up to its log line (its checkpoint follows).
  /// Where the time went (thread-seconds summed over workers for the first six):
  /// shared prefixes, full-cache references, candidates' examples, of which
  /// prompt (NAMM updates included), answer tokens and NAMM updates; then wall
  /// seconds of CMA-ES ask/tell and of the checkpoint written after the
  /// previous generation (the log line precedes its own generation's checkpoint).
  double prefix_seconds = 0.0, full_seconds = 0.0, candidate_seconds = 0.0;
  double candidate_prefill_seconds = 0.0, candidate_decode_seconds = 0.0, policy_seconds = 0.0;
  double cma_seconds = 0.0, checkpoint_seconds = 0.0;
  /// Over a cluster: wall seconds rank 0 spent in the broadcast and the gather
  /// (waiting for slower ranks included), and the bytes those moved; 0 alone.
  double cluster_seconds = 0.0;
  int64_t cluster_bytes = 0;
  int ranks = 1;

  /// One JSON line (no newline).
  std::string to_json() const;
};

/// What a call to evolve() leaves.
struct EvolutionResult {
  NammModel model;                        ///< the current mean as a NAMM (frozen statistics once learned).
  std::vector<GenerationRecord> history;  ///< generations run by this call.
  int64_t generations_done = 0;           ///< over the whole run (resumes included).
  bool finished = false;                  ///< every stage ran.
  double final_fitness = 0.0;             ///< the CMA mean's fitness in the last generation (NaN if never evaluated).
};

/// Runs (or resumes from options.checkpoint_dir) the evolution. Returns when
/// every stage ran, or early on *stop (the generation under way is dropped)
/// or stop_after_generations (right after a checkpoint). Throws std::runtime_error naming the file on a
/// corrupt checkpoint or one made with other options.
EvolutionResult evolve(const CausalLm& model, const EvolutionOptions& options);

/// The loop of a rank other than 0: receives each generation's candidates and
/// prompts from rank 0, scores its share, sends the results back; returns when
/// rank 0's evolve() returns. options must equal rank 0's (same command line).
/// Environment NAMM_EVOLVE_FAULT="RANK:GENERATION" makes that rank kill
/// itself on receiving that generation (tests of a rank dying mid-generation).
void serve_evolution(const CausalLm& model, const EvolutionOptions& options);

}  // namespace namm
