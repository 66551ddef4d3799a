// Training the language host from scratch on the synthetic long-context task
// suite (text/tasks.h): teacher-forced cross-entropy on the answer tokens,
// AdamW with warm-up and cosine decay, gradient clipping, a context-length
// curriculum, resumable atomic checkpoints, progress lines and a JSONL log,
// and a full-cache greedy evaluation per task and context length.
//
// Determinism: the batch of step s is a pure function of (options, s)
// (make_train_batch), the initial weights of the seed, and the checkpoint
// holds weights, AdamW moments and the step in ONE safetensors file written
// atomically, so a run killed at any moment and restarted reaches the same
// weights as an uninterrupted one (same thread count).
//
// Out directory (default models/lm):
//   model.safetensors, config.json   the model, Hugging Face layout (llama_checkpoint.h)
//   tokenizer.json                   the vocabulary it was trained with
//   trainer_state.safetensors        resume state: weights, AdamW moments, step, RNG, options
//   options.json                     the options of the run
//   train_log.jsonl                  one JSON object per logged step and per evaluation
//   eval.json, eval.md               full-cache greedy accuracy per task and length, with chance levels
//   provenance.json                  command line, seed, git commit, data, headline metrics, wall time
//
// Not here: the command line (apps/cmd_train_lm.cpp), the model (llama.h),
// the tasks (tasks.h).
#pragma once

#include "text/llama.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace namm {

class FileLock;  // core/run_lock.h

/// Everything a training run is made of. Fields marked (resume) must match
/// the checkpoint's to resume; the others may change between restarts.
struct TrainLmOptions {
  // model (resume)
  int64_t layers = 4;              ///< decoder layers.
  int64_t hidden = 256;            ///< D.
  int64_t heads = 4;               ///< query heads.
  int64_t kv_heads = 4;            ///< KV heads (< heads: grouped-query attention).
  int64_t intermediate = 688;      ///< SwiGLU width.
  double rope_theta = 10000.0;     ///< RoPE base.
  int64_t max_positions = 16384;   ///< max_position_embeddings.

  // data (resume)
  std::vector<std::string> tasks;     ///< task names; empty = all of task_names().
  int64_t min_context = 256;          ///< prompt tokens at the start of the curriculum.
  int64_t max_context = 1024;         ///< prompt tokens the curriculum reaches at the last step.
  double long_fraction = 0.05;        ///< share of steps drawn between the current and long_context tokens.
  int64_t long_context = 2048;        ///< the longest prompts the occasional long steps use.
  int64_t batch_tokens = 2048;        ///< tokens per step: max(1, batch_tokens / context) sequences.
  int64_t steps = 5000;               ///< optimizer steps of the whole run.
  int64_t follow_ups = 8;             ///< extra questions per training context (follow_up_questions); 0 = one
                                      ///< question per context, as runs before this option (options.json without it).

  // optimisation (resume)
  double lr = 2e-3;                ///< peak learning rate.
  double min_lr_ratio = 0.1;       ///< the cosine decays to lr * min_lr_ratio.
  int64_t warmup_steps = 100;      ///< linear warm-up from 0.
  double weight_decay = 0.1;       ///< AdamW decay on matrices (not on norm weights).
  double beta1 = 0.9;
  double beta2 = 0.95;
  double grad_clip = 1.0;          ///< max global gradient norm; 0 = off.
  double context_loss_weight = 0.5;  ///< weight of the next-token loss on prompt tokens, relative to the answer loss (pilot: 0.5 beat 0).
  uint64_t seed = 0;               ///< weights and data.
  std::string init_from;           ///< a Llama checkpoint directory whose weights start the run (same
                                   ///< shapes, or more layers: see grown_layer_source; e.g. a first stage
                                   ///< on one task); empty: random weights.

  // bookkeeping (free to change)
  int threads = 2;                 ///< at::set_num_threads.
  int64_t log_every = 10;          ///< steps per progress line / log record.
  int64_t checkpoint_every = 100;  ///< steps per checkpoint (and one at the end).
  int64_t eval_every = 0;          ///< steps per evaluation during training; 0 = only at the end.
  int64_t eval_examples = 16;      ///< validation examples per task and length.
  std::vector<int64_t> eval_lengths = {1024, 2048, 4096};  ///< prompt lengths of the final evaluation.
  std::string out_dir;              ///< the run folder (required; never a shipped model unless force).
  bool force = false;              ///< start afresh even in a folder that holds a model but no trainer state (not saved).
  std::string command_line;        ///< recorded in the provenance.

  /// The model these options describe (vocabulary: builtin_tokenizer()).
  LlamaConfig model_config() const;
  /// tasks, or all task names when empty. A task may be listed more than
  /// once: batches draw it that many times as often (evaluation lists it once).
  std::vector<std::string> task_list() const;
  /// task_list() with repeats dropped, in order of first appearance.
  std::vector<std::string> distinct_tasks() const;
  /// Throws std::invalid_argument naming the first bad field and its value.
  void validate() const;
  /// Every field as JSON text (command_line included).
  std::string to_json() const;
  /// Parses to_json's output (missing fields keep their defaults); source names it in errors.
  static TrainLmOptions from_json(const std::string& json_text, const std::string& source = "options");
  /// "field: saved X, now Y" for each (resume) field that differs from saved.
  std::vector<std::string> resume_mismatches(const TrainLmOptions& saved) const;
};

/// The teacher-forced batch of one step.
struct TrainBatch {
  int64_t context = 0;              ///< prompt tokens of every sequence.
  std::vector<std::string> tasks;   ///< [B] task of each sequence.
  std::vector<int64_t> indices;     ///< [B] train-split example index of each sequence.
  at::Tensor inputs;                ///< [B, T] int64: training_sequence minus its last id, <pad>-filled.
  at::Tensor targets;               ///< [B, T] int64: the next ids.
  at::Tensor answer_mask;           ///< [B, T] bool: targets that are answer tokens or the closing <eos>.
  at::Tensor answer_question;       ///< [B, T] int64: which question of its sequence an answer target
                                    ///< answers (0 = the example's own, 1.. = follow-ups), -1 elsewhere.
  at::Tensor context_mask;          ///< [B, T] bool: targets inside the prompt.
  int64_t tokens() const;           ///< B * T.
};

/// The prompt length step uses (curriculum plus occasional long steps), a pure function of (options, step).
int64_t train_context_tokens(const TrainLmOptions& options, int64_t step);

/// The batch of step (0-based): train-split examples whose tasks go round-robin
/// and whose indices hash (seed, step, slot); a pure function of (options, step).
TrainBatch make_train_batch(const TrainLmOptions& options, int64_t step);

/// Learning rate of step (0-based): linear warm-up, then cosine to lr * min_lr_ratio.
double learning_rate(const TrainLmOptions& options, int64_t step);

/// What one optimizer step measured.
struct StepStats {
  int64_t step = 0;              ///< steps done after this one.
  double loss = 0.0;             ///< the optimised loss (answer + weight * context).
  double answer_loss = 0.0;      ///< mean cross-entropy over answer tokens (+ <eos>).
  double context_loss = 0.0;     ///< mean cross-entropy over prompt tokens.
  double grad_norm = 0.0;        ///< global gradient norm before clipping.
  double lr = 0.0;
  int64_t context = 0;           ///< prompt tokens of the batch.
  int64_t tokens = 0;            ///< B * T.
  double seconds = 0.0;          ///< wall time of the step, batch generation included.
  /// per task: {answer tokens right, answer tokens, questions fully right,
  /// questions, first questions fully right, first questions}. The first
  /// question of a sequence is the one an evaluation asks; follow-ups are
  /// drawn with replacement, so on a short context many repeat an earlier
  /// question and can be answered by copying: their exact match overstates
  /// what the model can retrieve.
  std::map<std::string, std::array<int64_t, 6>> per_task;
};

/// Full-cache greedy accuracy of one task at one prompt length.
struct EvalCell {
  std::string task;
  int64_t context = 0;
  int64_t examples = 0;
  double score = 0.0;           ///< mean task metric (exact match, or token F1 for kv_multi).
  double chance = 0.0;          ///< mean score of a uniform guess of the right form (digits of the answer's length; 1..9 for counting).
  double pick_chance = -1.0;    ///< mean 1 / candidate records for record-lookup tasks; -1 where not defined.
  double seconds = 0.0;
};

/// An evaluation: one cell per (length, task).
struct EvalReport {
  int64_t step = 0;
  std::vector<EvalCell> cells;
  /// JSON text: {"step":..., "cells":[{task, context, examples, score, chance, pick_chance, seconds}]}.
  std::string to_json() const;
  /// A markdown table: tasks down, lengths across, "score (chance)" per cell.
  std::string to_markdown() const;
};

/// Greedy answers (full KV cache, stop at <eos>, at most 8 tokens) to validation
/// examples 0..examples-1 of every task at every length, scored with score_task.
EvalReport evaluate_lm(const Llama& model, const std::vector<std::string>& tasks,
                       const std::vector<int64_t>& lengths, int64_t examples);

/// A training run bound to an out directory: starts fresh or resumes from
/// out_dir/trainer_state.safetensors.
/// Depth growth of an --init-from checkpoint: the name of the tensor of the
/// from_layers-deep checkpoint that tensor `name` of a to_layers-deep model
/// copies, or "" when `name` belongs to a new layer. Old layer j goes to
/// floor(j * to / from), so 2 -> 4 gives old, new, old, new; tensors outside
/// "model.layers.N." keep their name. New layers start with zero attention
/// and MLP output projections: the grown model computes exactly what the
/// checkpoint did, and training adds depth (variable tracking needs a lookup
/// per hop, which 2 layers cannot chain). Throws std::invalid_argument when
/// to_layers < from_layers or from_layers < 1.
std::string grown_layer_source(const std::string& name, int64_t from_layers, int64_t to_layers);

class Trainer {
 public:
  /// Validates options, sets the thread count, and resumes when out_dir holds
  /// a trainer state. Throws std::runtime_error naming the state file when it
  /// is unreadable or written with options that differ in a (resume) field.
  explicit Trainer(TrainLmOptions options, std::ostream* progress = nullptr);
  ~Trainer();

  /// Steps done so far.
  int64_t step() const;
  /// Whether this run continued a checkpoint.
  bool resumed() const;
  const TrainLmOptions& options() const { return options_; }
  const Llama& model() const { return model_; }

  /// One optimizer step on make_train_batch(options, step()); then logs every
  /// log_every steps, checkpoints every checkpoint_every, evaluates every eval_every.
  StepStats train_step();

  /// train_step until options.steps, or until should_stop() (polled between
  /// steps) says so; then checkpoints. Returns step().
  int64_t train(const std::function<bool()>& should_stop = {});

  /// Writes trainer_state.safetensors (atomically), then the model, tokenizer.json and provenance.json.
  void save_checkpoint();

  /// evaluate_lm over options' tasks, eval_lengths and eval_examples; writes
  /// eval.json, eval.md, a log record and the headline into provenance.json.
  EvalReport evaluate_and_record();

 private:
  void resume(const std::string& state_path);
  void append_log(const std::string& json_line);
  void write_provenance() const;
  void log_progress(const StepStats& stats);

  TrainLmOptions options_;
  std::ostream* progress_;
  Llama model_{nullptr};
  struct Optim;
  std::unique_ptr<Optim> optim_;
  std::unique_ptr<FileLock> run_lock_;  // held for the trainer's life: one run per folder
  int64_t step_ = 0;
  bool resumed_ = false;
  double elapsed_before_ = 0.0;  // wall seconds of earlier runs of this checkpoint
  double session_start_ = 0.0;   // steady-clock seconds at construction
  int64_t tokens_seen_ = 0;
  std::string git_commit_;
  std::string last_eval_json_;
  // accumulated since the last log line
  std::vector<StepStats> window_;
};

}  // namespace namm
