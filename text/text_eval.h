// Answering task examples with the language host under a memory policy, and
// scoring the answers: the unit of work of evolution and of evaluation.
//
// One example: prefill the prompt through the MemoryController host protocol
// (chunks bounded by tokens_until_update), greedy decoding until <eos> or
// max_answer_tokens, trim, score with the task's metric. Evolution runs the
// same prompt under many policies, and the first min(delay, T) prompt tokens
// are identical for all of them (no policy has run yet): SharedPrefix holds
// them computed once, and answering from it gives bitwise the same outcome
// as answering from scratch.
//
// Any language host (a CausalLm, adapters/cached_host.h) answers. Threads:
// a host's forward_layers only reads the model (weights, RoPE tables) and
// writes nothing but the SequenceState passed in, and NammModel is
// immutable, so many threads may answer examples with one shared model;
// every worker gets its own SequenceState, controller and policy.
//
// Not here: the evolution loop (evolution.h), command lines (apps/).
#pragma once

#include "core/policy_registry.h"
#include "text/llama.h"
#include "text/tasks.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace namm {

class MemoryController;
struct NammModel;

/// How an example is answered.
struct AnswerOptions {
  int64_t delay = 512;          ///< tokens between memory updates.
  int64_t prompt_chunk = 128;   ///< most prompt tokens fed at once.
  int64_t max_answer_tokens = kMaxAnswerTokens;  ///< greedy decoding stops at <eos> or after this many tokens.

  /// Throws std::invalid_argument naming the offending value (each must be >= 1).
  void validate() const;
};

/// The outcome of one example under one policy.
struct ExampleOutcome {
  std::string task;
  std::vector<int64_t> prediction;  ///< generated ids, trimmed at <eos>.
  double score = 0.0;               ///< the task's metric (exact match or F1) in [0, 1].
  double retained_fraction = 1.0;   ///< mean fraction of the full cache kept at updates (1 without updates).
  double final_cache_fraction = 1.0;  ///< cached tokens at the end / tokens seen, mean over layers and heads.
  int64_t policy_updates = 0;
  double seconds = 0.0;             ///< wall time of the whole example.
  double prefill_seconds = 0.0;     ///< of which the prompt (policy updates during it included).
  double decode_seconds = 0.0;      ///< of which the answer tokens.
  double policy_seconds = 0.0;      ///< time inside policy updates (when the policy is a TimedPolicy).
};

/// Wraps a policy and measures the time spent in its update() calls.
class TimedPolicy : public MemoryPolicy {
 public:
  explicit TimedPolicy(std::unique_ptr<MemoryPolicy> inner);
  std::string name() const override { return inner_->name(); }
  PolicyNeeds needs() const override { return inner_->needs(); }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override { inner_->reset(); }

  MemoryPolicy& inner() { return *inner_; }
  const MemoryPolicy& inner() const { return *inner_; }
  /// Seconds spent in update() so far.
  double seconds() const { return seconds_; }

 private:
  std::unique_ptr<MemoryPolicy> inner_;
  double seconds_ = 0.0;
};

/// Answers one example greedily with a fresh policy built from spec.
/// Thread-safe for distinct calls sharing one model (the model is read-only).
ExampleOutcome answer_example(const CausalLm& model, const TaskExample& example,
                              const PolicySpec& policy, const AnswerOptions& options = {});

/// The first min(delay, T) prompt tokens of an example fed once, before any
/// policy could act: what every policy shares. Feeding the rest from a copy
/// gives bitwise the outcome of feeding everything from scratch.
struct SharedPrefix {
  SequenceState state;      ///< caches after the prefix (nothing evicted yet).
  std::vector<std::vector<at::Tensor>> attention;  ///< [L][Hkv] rows [Q, T] float32 the prefix recorded, Q = T = length.
  at::Tensor logits;     ///< [V] logits of the prefix's last token.
  int64_t length = 0;    ///< tokens in the prefix.
};

/// Feeds the shared prefix of example (chunked as answer_example would).
SharedPrefix prefill_shared_prefix(const CausalLm& model, const TaskExample& example,
                                   const AnswerOptions& options);

/// Answers example with a caller-made controller (fresh, delay == options.delay),
/// from scratch or continuing a copy of prefix; the caller may inspect the
/// controller's policy afterwards (e.g. its normaliser).
ExampleOutcome answer_with_controller(const CausalLm& model, const TaskExample& example,
                                      MemoryController& controller, const AnswerOptions& options,
                                      const SharedPrefix* prefix = nullptr);

/// Runs fn(0) .. fn(count - 1) on `threads` worker threads (items handed out
/// in order; each worker runs with at::set_num_threads(1), so results do not
/// depend on the thread count); the first exception is rethrown after all
/// workers stop. The process-wide torch thread count is restored afterwards.
void parallel_for_items(int64_t count, int threads, const std::function<void(int64_t)>& fn);

/// Mean results of one policy on one task.
struct TaskSummary {
  int64_t examples = 0;
  double mean_score = 0.0;
  double mean_retained_fraction = 0.0;
  double mean_final_cache_fraction = 0.0;
};

/// What one policy did over a list of examples.
struct PolicyEvaluation {
  std::string policy;                      ///< the spec's name.
  std::vector<ExampleOutcome> outcomes;    ///< one per example, in the examples' order.
  std::map<std::string, TaskSummary> tasks;  ///< per task.
  /// per prompt length (the examples' prompt.size()), then per task.
  std::map<int64_t, std::map<std::string, TaskSummary>> tasks_by_length;
  double mean_retained_fraction = 0.0;     ///< over all examples.
};

/// Answers every example under every policy, items (policy, example) spread
/// over `threads` threads; the results are identical for any thread count.
std::vector<PolicyEvaluation> evaluate_policies(const CausalLm& model, const std::vector<TaskExample>& examples,
                                                const std::vector<PolicySpec>& policies, int threads,
                                                const AnswerOptions& options = {});

/// What `namm eval-text` compares.
struct TextComparisonOptions {
  std::vector<std::string> tasks;          ///< task names.
  int64_t examples_per_task = 16;          ///< per task and per context length.
  std::vector<int64_t> context_tokens = {1024};
  Split split = Split::kTest;
  /// Policies in display order; "namm" needs a model. Baselines run at the
  /// NAMM's measured mean retained fraction (else at fallback_budget).
  std::vector<std::string> policies = policy_names();
  Budget fallback_budget{0, 0.5};          ///< the baselines' budget when no NAMM runs.
  uint64_t seed = 0;                       ///< the random policy's seed.
  int threads = 2;
  AnswerOptions answer;
};

/// A policy's results at one prompt length. A mean over lengths can hide a
/// policy that wins at 1k and loses at 2k, and a NAMM's retained fraction
/// moves with the length where a baseline's budget does not.
struct LengthSummary {
  int64_t examples = 0;
  double mean_normalized_score = 0.0;   ///< as ComparisonRow's, against the full cache at this length.
  double mean_retained_fraction = 0.0;  ///< over this length's examples.
};

/// One row of the comparison table.
struct ComparisonRow {
  std::string policy;
  std::string budget;                          ///< "-" or the budget the baseline ran at.
  std::map<std::string, TaskSummary> tasks;    ///< per task.
  double mean_normalized_score = 0.0;          ///< mean over tasks of score / full-cache score (tasks where full scored 0 are left out; NaN if all).
  double mean_retained_fraction = 0.0;         ///< over all examples.
  std::map<int64_t, LengthSummary> by_length;  ///< per prompt length.
};

/// What one policy answered on one example (for reading the errors, not only the means).
struct ExamplePrediction {
  std::string policy;
  std::string task;
  int64_t context_tokens = 0;
  int64_t index = 0;                ///< the example's index in its split (make_example).
  std::string question;             ///< decoded question, "<q> ... <a>".
  std::string answer;               ///< decoded reference answer.
  std::string prediction;           ///< decoded greedy answer, trimmed at <eos>.
  double score = 0.0;
  double retained_fraction = 1.0;
};

/// The comparison `namm eval-text` writes.
struct TextComparison {
  std::vector<std::string> tasks;
  std::vector<int64_t> context_tokens;
  int64_t examples_per_task = 0;
  std::string split;
  double namm_retained_fraction = 0.0;  ///< measured (0 when no NAMM ran).
  std::vector<ComparisonRow> rows;      ///< in TextComparisonOptions::policies order.
  std::vector<ExamplePrediction> predictions;  ///< policy by policy (rows' order), examples in order.

  /// {"tasks", "context_tokens", ..., "rows": [{"policy", "budget", "tasks": {task: {...}}, ...}]}.
  std::string to_json() const;
  /// A markdown table: policy, budget, one score column per task, mean normalised score, mean KV retained;
  /// with several prompt lengths, a second table of normalised score and KV retained per length.
  std::string to_markdown() const;
  /// One JSON object per line and per ExamplePrediction, fields named as in the struct.
  std::string predictions_jsonl() const;
};

/// Loads a language model checkpoint directory (llama_checkpoint.h) for the
/// tasks: its vocabulary must hold builtin_tokenizer()'s ids, and a
/// tokenizer.json next to it must be that vocabulary. Errors name the directory.
Llama load_task_model(const std::string& dir);

/// Runs the comparison: the NAMM first (when listed), then every other policy
/// at Budget{fraction = NAMM's mean retained fraction}.
TextComparison compare_policies(const CausalLm& model, std::shared_ptr<const NammModel> namm,
                                const TextComparisonOptions& options);

}  // namespace namm
