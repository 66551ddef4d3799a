// Training the video host (vision/video_model.h) on the synthetic video QA
// scenes (vision/video_scenes.h): teacher-forced cross-entropy on the answer
// word and <eos> with the full cache, AdamW with warm-up and cosine decay,
// gradient clipping, resumable atomic checkpoints, progress lines with ETA, a
// JSONL log, provenance.json, and at the end the full-cache accuracy per kind
// on the validation split against chance (1 / choices).
//
// Data: scenes of the train split are rendered in memory (no encoding or
// decoding), K frames are sampled exactly as the FFmpeg decoder samples a
// clip (uniform_frame_indices) and preprocessed like a user's clip. The
// scenes of step s are a pure function of (options, s): kinds go round-robin
// from a hashed offset and scene indices are a hash of (seed, step, slot).
//
// Model: the tower and projector of default_video_model_config (sizes are
// options) around a language model that is, with lm_dir, the language host of
// models/lm (its config and weights; the question and answer words are its
// vocabulary), else a fresh Llama of the lm_* sizes. The tower and projector
// learn at lr, the language model at lr * lm_lr_scale. With init_from, all
// weights start from an earlier video checkpoint (staged training: e.g. the
// colour kinds first, then all kinds; the optimizer starts afresh).
//
// Determinism: initial weights are a function of the seed (and lm_dir), and
// the checkpoint holds weights, AdamW moments, step and RNG in ONE
// safetensors file written atomically, so a run killed at any moment and
// restarted ends with bitwise the same weights (same thread count).
//
// Out directory:
//   model.safetensors, config.json   the model, LLaVA-NeXT-Video layout (llava_checkpoint.h)
//   tokenizer.json                   the vocabulary of the questions and answers
//   trainer_state.safetensors        resume state
//   options.json                     the options of the run
//   train_log.jsonl                  one JSON object per logged step and per evaluation
//   eval.json, eval.md               full-cache validation accuracy per kind, with chance
//   provenance.json                  command line, seed, git commit, data, metrics, wall time
//
// Not here: the command line (apps/cmd_train_video.cpp), the model, the
// evaluation machinery (video_qa.h).
#pragma once

#include "vision/video_model.h"
#include "vision/video_qa.h"

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

/// Everything a video training run is made of. Fields marked (resume) must
/// match the checkpoint's to resume; the others may change between restarts.
struct TrainVideoOptions {
  // model (resume, except lm_dir: the checkpoint holds the weights)
  std::string lm_dir;              ///< language host to start from (e.g. models/lm); empty: a fresh Llama.
  int64_t lm_layers = 4;           ///< fresh Llama only: decoder layers.
  int64_t lm_hidden = 256;         ///< fresh Llama only: D.
  int64_t lm_heads = 4;
  int64_t lm_kv_heads = 4;
  int64_t lm_intermediate = 688;
  int64_t vision_layers = 4;       ///< tower encoder layers.
  int64_t vision_width = 128;      ///< tower width C.
  int64_t vision_heads = 4;
  int64_t vision_mlp = 512;
  int64_t image_size = 64;         ///< S.
  int64_t patch_size = 8;          ///< S / patch = grid side; pooled 2x2.

  // data (resume)
  std::vector<std::string> kinds;  ///< scene kinds; empty = all of scene_kinds().
  int64_t frames = 16;             ///< K sampled per clip.
  int scene_size = 96;             ///< rendered side in pixels (what make-scenes writes by default).
  double scene_seconds = 3.0;
  double scene_fps = 12.0;
  int64_t batch = 8;               ///< clips per step.
  int64_t steps = 1000;            ///< optimizer steps of the whole run.

  // optimisation (resume)
  double lr = 1e-3;                ///< peak learning rate of the tower and projector.
  double lm_lr_scale = 0.3;        ///< the language model learns at lr * lm_lr_scale.
  double min_lr_ratio = 0.1;       ///< the cosine decays to lr * min_lr_ratio.
  int64_t warmup_steps = 50;       ///< linear warm-up from 0.
  double weight_decay = 0.05;      ///< AdamW decay on matrices (not on norms, biases, embeddings of positions).
  double beta1 = 0.9;
  double beta2 = 0.95;
  double grad_clip = 1.0;          ///< max global gradient norm; 0 = off.
  uint64_t seed = 0;               ///< weights and data.
  std::string init_from;           ///< a video checkpoint whose weights start the run (same shapes; e.g. a
                                   ///< first stage on fewer kinds); overrides lm_dir's weights; empty: none.

  // bookkeeping (free to change)
  int threads = 1;                 ///< at::set_num_threads (and evaluation workers).
  int64_t log_every = 10;          ///< steps per progress line / log record.
  int64_t checkpoint_every = 50;   ///< steps per checkpoint (and one at the end).
  int64_t eval_count = 40;         ///< validation clips per kind at the end; 0 = no evaluation.
  int64_t delay = kVideoDefaultDelay;  ///< memory update interval recorded for the evaluation (full cache: no effect).
  std::string out_dir;              ///< the run folder (required; never a shipped model unless force).
  bool force = false;              ///< start afresh even in a folder that holds a model but no trainer state (not saved).
  std::string command_line;        ///< recorded in the provenance.

  /// kinds, or all kinds when empty.
  std::vector<std::string> kind_list() const;
  /// The scene options of the data (sample_frames = frames).
  SceneOptions scene_options() const;
  /// The model config around a language model config (the loaded one with lm_dir).
  VideoModelConfig model_config(const LlamaConfig& text) const;
  /// The fresh Llama config of the lm_* fields (vocabulary: builtin_tokenizer()).
  LlamaConfig fresh_lm_config() const;
  /// Throws std::invalid_argument naming the first bad field and its value.
  void validate() const;
  /// Every field as JSON text.
  std::string to_json() const;
  /// Parses to_json's output (missing fields keep their defaults); source names it in errors.
  static TrainVideoOptions from_json(const std::string& json_text, const std::string& source = "options");
  /// "field: saved X, now Y" for each (resume) field that differs from saved.
  std::vector<std::string> resume_mismatches(const TrainVideoOptions& saved) const;
};

/// The clips of one step.
struct VideoTrainBatch {
  std::vector<std::string> kinds;   ///< [B]
  std::vector<int64_t> indices;     ///< [B] train-split scene index.
  VideoQaBatch batch;               ///< pixels [B, K, 3, S, S], text, target mask.
};

/// The batch of step (0-based), a pure function of (options, step).
VideoTrainBatch make_video_train_batch(const TrainVideoOptions& options, int64_t step);

/// Learning rate of step (0-based) before lm_lr_scale: linear warm-up, then cosine to lr * min_lr_ratio.
double video_learning_rate(const TrainVideoOptions& options, int64_t step);

/// What one optimizer step measured.
struct VideoStepStats {
  int64_t step = 0;          ///< steps done after this one.
  double loss = 0.0;         ///< mean cross-entropy over answer tokens and <eos>.
  double grad_norm = 0.0;    ///< before clipping.
  double lr = 0.0;
  int64_t clips = 0;
  double seconds = 0.0;      ///< wall time, rendering included.
  double data_seconds = 0.0; ///< of which rendering, sampling and preprocessing.
  std::map<std::string, std::array<int64_t, 2>> per_kind;  ///< kind -> {clips answered right (teacher forcing), clips}.
};

/// A training run bound to an out directory: starts fresh or resumes from
/// out_dir/trainer_state.safetensors.
class VideoTrainer {
 public:
  /// Validates options, sets the thread count, builds (and with lm_dir
  /// initialises) the model, and resumes when out_dir holds a trainer state.
  /// Throws std::runtime_error naming the file when the state is unreadable or
  /// was written with options that differ in a (resume) field.
  explicit VideoTrainer(TrainVideoOptions options, std::ostream* progress = nullptr);
  ~VideoTrainer();

  int64_t step() const { return step_; }
  bool resumed() const { return resumed_; }
  const TrainVideoOptions& options() const { return options_; }
  const VideoModel& model() const { return model_; }

  /// One optimizer step on make_video_train_batch(options, step()); logs
  /// every log_every steps and checkpoints every checkpoint_every.
  VideoStepStats train_step();

  /// train_step until options.steps or until should_stop() says so (polled
  /// between steps); then checkpoints. Returns step().
  int64_t train(const std::function<bool()>& should_stop = {});

  /// Writes trainer_state.safetensors (atomically), the model, tokenizer.json and provenance.json.
  void save_checkpoint();

  /// Full-cache accuracy on eval_count validation clips per kind; writes
  /// eval.json, eval.md, a log record and the metrics into provenance.json.
  VideoEvaluation evaluate_and_record();

 private:
  void resume(const std::string& state_path);
  void append_log(const std::string& json_line);
  void write_provenance() const;
  void log_progress(const VideoStepStats& stats);

  TrainVideoOptions options_;
  std::ostream* progress_;
  VideoModel model_{nullptr};
  struct Optim;
  std::unique_ptr<Optim> optim_;
  std::unique_ptr<FileLock> run_lock_;  // held for the trainer's life: one run per folder
  int64_t step_ = 0;
  bool resumed_ = false;
  double elapsed_before_ = 0.0;
  double session_start_ = 0.0;
  int64_t clips_seen_ = 0;
  std::string git_commit_;
  std::string lm_provenance_json_;  // the language host's record, when started from one
  std::string last_eval_json_;
  std::vector<VideoStepStats> window_;
};

}  // namespace namm
