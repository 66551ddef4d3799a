// Training a Decision Transformer on an offline dataset (rl/offline_dataset.h)
// as the DT paper's gym code does: trajectory windows of K steps starting at
// a uniformly drawn dataset step (so episodes are drawn in proportion to
// their length), cut at the episode's end and left-padded with a mask;
// states normalised by the dataset's mean/std, undiscounted returns-to-go
// divided by return_scale, timesteps within the episode; MSE on the actions
// of real steps; AdamW on all parameters, gradient-norm clipping, linear
// warm-up then constant / linear / cosine decay; dropout as Hugging Face's.
//
// Determinism: the windows of step s are a pure function of (seed, s), the
// initial weights of the seed, dropout draws come from the trainer's own
// generator, and the checkpoint holds weights, AdamW moments, the dropout
// generator and the step in ONE safetensors file written atomically, so a run
// killed at any moment and restarted ends with bitwise the same weights
// (same thread count).
//
// Out directory:
//   model.safetensors, config.json   the model, Hugging Face layout (dt_checkpoint.h)
//   dt_sidecar.json                  normalisation, return scale, target, env, provenance
//   trainer_state.safetensors        resume state
//   options.json, train_log.jsonl    the run's options; one JSON object per log line / evaluation
//   provenance.json                  command, seed, commit, data, sizes, speed, headline metrics
//
// Not here: the command line (apps/cmd_train_dt.cpp), the model, rollouts (rollout.h).
#pragma once

#include "rl/decision_transformer.h"
#include "rl/dt_checkpoint.h"
#include "rl/offline_dataset.h"

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

namespace namm {

class FileLock;  // core/run_lock.h

/// Everything a training run is made of. Fields marked (resume) must match
/// the checkpoint's to resume; the others may change between restarts.
struct TrainDtOptions {
  // model (resume)
  int64_t hidden = 128;            ///< D.
  int64_t layers = 3;              ///< GPT-2 blocks.
  int64_t heads = 1;               ///< attention heads.
  int64_t inner = 0;               ///< MLP width; 0 = 4 * hidden.
  std::string activation = "relu"; ///< activation_function.
  double dropout = 0.1;            ///< resid, embd and attn dropout.
  int64_t max_ep_len = 1000;       ///< timestep embedding rows.

  // data (resume)
  std::string data_path;           ///< the offline dataset (.safetensors).
  int64_t context = 20;            ///< K steps per window (3K tokens).
  int64_t batch_size = 64;         ///< windows per step.
  double return_scale = 1000.0;    ///< returns-to-go are divided by it.
  int64_t steps = 6000;            ///< optimizer steps of the whole run.

  // optimisation (resume)
  double lr = 1e-4;                ///< peak learning rate (DT paper).
  double weight_decay = 1e-4;      ///< AdamW decay on every parameter (DT paper).
  int64_t warmup_steps = 600;      ///< linear warm-up from 0 (paper: 10k of 100k).
  std::string schedule = "cosine"; ///< after warm-up: constant (the paper's gym code) | linear | cosine.
  double min_lr_ratio = 0.1;       ///< linear / cosine decay to lr * min_lr_ratio.
  double beta1 = 0.9;
  double beta2 = 0.999;
  double grad_clip = 0.25;         ///< max global gradient norm (paper: 0.25); 0 = off.
  uint64_t seed = 0;               ///< weights, windows, dropout.

  // bookkeeping (free to change)
  int threads = 1;                 ///< at::set_num_threads.
  int64_t log_every = 50;          ///< steps per progress line / log record.
  int64_t checkpoint_every = 500;  ///< steps per checkpoint (and one at the end).
  int64_t eval_every = 0;          ///< steps per evaluation during training; 0 = only at the end.
  int eval_episodes = 3;           ///< episodes per evaluation (window and full-cache modes); 0 = none.
  int eval_max_steps = 1000;       ///< step limit of evaluation episodes.
  double target_return = 0.0;      ///< conditioning for evaluations and the sidecar; 0 = env default.
  std::string out_dir;              ///< the run folder (required; never a shipped model unless force).
  bool force = false;              ///< start afresh even in a folder that holds a model but no trainer state (not saved).
  std::string command_line;        ///< recorded in the provenance.

  /// The model these options describe for a dataset with the given sizes.
  DtConfig model_config(int64_t state_dim, int64_t act_dim) const;
  /// Throws std::invalid_argument naming the first bad field and its value.
  void validate() const;
  /// Every field as JSON text.
  std::string to_json() const;
  /// Parses to_json's output (missing fields keep their defaults); source names it in errors.
  static TrainDtOptions from_json(const std::string& json_text, const std::string& source = "options");
  /// "field: saved X, now Y" for each (resume) field that differs from saved.
  std::vector<std::string> resume_mismatches(const TrainDtOptions& saved) const;
};

/// A dataset prepared for window sampling: normalised states, scaled
/// returns-to-go, per-step timesteps and episode ends.
struct DtTrainingData {
  std::string env;
  int64_t state_dim = 0;      ///< O.
  int64_t act_dim = 0;        ///< A.
  at::Tensor states;          ///< [N, O] float32, normalised.
  at::Tensor actions;         ///< [N, A] float32.
  at::Tensor returns_to_go;   ///< [N] float32: undiscounted return from the step to its episode's end, / return_scale.
  at::Tensor timesteps;       ///< [N] int64: index within the episode.
  std::vector<int64_t> episode_end;  ///< [N] one past the last step of the step's episode.
  std::vector<double> state_mean;    ///< [O] over all dataset states.
  std::vector<double> state_std;     ///< [O] (+1e-6, as the DT code).
  int64_t episodes = 0;
  double mean_episode_return = 0.0;
  double max_episode_return = 0.0;

  /// Prepares dataset (validated) with the given return scale.
  static DtTrainingData from_dataset(const OfflineDataset& dataset, double return_scale);
  int64_t size() const { return states.defined() ? states.size(0) : 0; }
};

/// Windows of one step: the batch plus the targets.
struct DtTrainBatch {
  DtBatch batch;             ///< attention_mask [B, K] float32 1 = real step, 0 = left padding.
  at::Tensor target_actions; ///< [B, K, A].
  std::vector<int64_t> starts;  ///< [B] dataset index of each window's first real step.
  int64_t real_steps = 0;    ///< sum of the mask.
};

/// The windows of step (0-based), a pure function of (seed, step): B dataset
/// steps drawn uniformly, each window [i, min(i + K, episode end)) left-padded to K.
DtTrainBatch make_dt_batch(const DtTrainingData& data, int64_t context, int64_t batch_size, uint64_t seed, int64_t step);

/// Mean squared error over the real steps' actions: preds, targets [B, K, A], mask [B, K].
at::Tensor masked_action_mse(const at::Tensor& preds, const at::Tensor& targets, const at::Tensor& mask);

/// Learning rate of step (0-based): linear warm-up over warmup_steps, then the schedule.
double dt_learning_rate(const TrainDtOptions& options, int64_t step);

/// What one optimizer step measured.
struct DtStepStats {
  int64_t step = 0;        ///< steps done after this one.
  double loss = 0.0;       ///< action MSE.
  double grad_norm = 0.0;  ///< before clipping.
  double lr = 0.0;
  int64_t tokens = 0;      ///< B * 3K tokens processed (padding included).
  double seconds = 0.0;
};

/// A training run bound to an out directory: starts fresh or resumes from
/// out_dir/trainer_state.safetensors.
class DtTrainer {
 public:
  /// Loads options.data_path, or takes data when given (tests); validates,
  /// sets the thread count and resumes when out_dir holds a trainer state.
  /// Throws std::runtime_error naming the state file when it is unreadable or
  /// was written with different (resume) options.
  explicit DtTrainer(TrainDtOptions options, std::ostream* progress = nullptr,
                     std::shared_ptr<const OfflineDataset> data = nullptr);
  ~DtTrainer();

  int64_t step() const { return step_; }
  bool resumed() const { return resumed_; }
  const TrainDtOptions& options() const { return options_; }
  const DecisionTransformer& model() const { return model_; }
  const DtTrainingData& data() const { return data_; }
  /// The sidecar a checkpoint of this run carries.
  DtSidecar sidecar() const;

  /// One optimizer step; logs, checkpoints and evaluates on their schedules.
  DtStepStats train_step();
  /// train_step until options.steps or should_stop(); then checkpoints (and
  /// runs the final evaluation when the run completed). Returns step().
  int64_t train(const std::function<bool()>& should_stop = {});
  /// Writes trainer_state.safetensors, the model directory and provenance.json.
  void save_checkpoint();
  /// Short evaluation: eval_episodes in window mode (K = context) and in
  /// full-cache mode; logged, and the headline goes into provenance.json.
  void evaluate_and_record();

 private:
  void resume(const std::string& path);
  void append_log(const std::string& json_line) const;
  void write_provenance() const;
  void log_progress(const DtStepStats& stats);

  TrainDtOptions options_;
  std::ostream* progress_;
  DtTrainingData data_;
  std::string data_metadata_;
  DecisionTransformer model_{nullptr};
  struct Optim;
  std::unique_ptr<Optim> optim_;
  std::unique_ptr<FileLock> run_lock_;  // held for the trainer's life: one run per folder
  at::Generator dropout_generator_;
  int64_t step_ = 0;
  bool resumed_ = false;
  double elapsed_before_ = 0.0;
  double session_start_ = 0.0;
  std::string git_commit_;
  std::string last_eval_json_;
  std::vector<DtStepStats> window_;
};

}  // namespace namm
