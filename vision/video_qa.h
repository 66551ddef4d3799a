// Video question answering with the video host under a memory policy: one
// clip (`namm video-qa`), the frame-drop picture (--viz), and the comparison
// of every policy over a split of the synthetic scenes (`namm eval-video`).
//
// Frames: K frames sampled uniformly in time, exactly as the FFmpeg decoder
// picks them (vision/video_decoder.h: sample i is the frame on screen at
// t_i = (i + 0.5) * duration / K), either decoded from a file or taken from a
// scene rendered in memory (uniform_frame_indices), so training, evaluation
// and a user's clip see the same frames.
//
// Memory updates: the prompt holds 1 + K*P' + Q + 2 tokens (16 frames x 16
// pooled tokens = 256 visual tokens + about 14 text tokens), far below the
// NAMM's language delay of 512, which would never fire. The video host
// therefore runs the controller every kVideoDefaultDelay = 32 tokens (a
// multiple of the NAMM's STFT hop of 16): 8 updates while the visual tokens
// stream in, the last one right after the last frame, so the question and the
// answer read a cache the policy has already pruned. No flush after the
// prompt: the ~14 tokens buffered then are not a multiple of the hop and the
// answer is already decided by the logits of <a>. Same ratio of delay to
// context as the reference (512 in prompts of several thousand tokens).
//
// Accounting: retained_fraction is the controller's mean over updates of
// kept / seen (what a fractional budget b gives about b for); the final cache
// fraction is what is cached when the answer is read. Visual tokens evicted
// are counted per layer and KV head at the end; with the scene's per-frame
// `informative` marks mapped through the sampled frame indices, they say
// whether a policy dropped the static or repeated frames or the event.
//
// Threads: the model is only read (NoGradGuard), every clip and policy gets
// its own SequenceState, controller and policy, so evaluate_video spreads work
// items over threads with parallel_for_items and gives the same numbers for
// any thread count.
//
// Not here: decoding (video_decoder.h), the model (video_model.h), training
// (train_video.h), command lines (apps/cmd_video_qa.cpp, cmd_eval_video.cpp).
// OpenCV (the picture) is confined to video_qa.cpp.
//
// Shape letters: K sampled frames (the model's F), L LM layers, T prompt
// tokens, D LM width, S image side.
#pragma once

#include "core/policy_registry.h"
#include "text/tasks.h"
#include "vision/video_model.h"
#include "vision/video_scenes.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace namm {

struct NammModel;

/// Tokens between memory updates on the video host (see the top of this file).
constexpr int64_t kVideoDefaultDelay = 32;

/// The source frame shown at each of `samples` uniform sample times of a clip
/// of num_frames frames at a constant rate, as sample_frames_uniform picks it:
/// [K] floor((2i + 1) * N / (2K)), non-decreasing. Throws std::invalid_argument
/// unless num_frames >= 1 and samples >= 1.
std::vector<int64_t> uniform_frame_indices(int64_t num_frames, int64_t samples);

/// K frames of a clip, ready to preprocess.
struct SampledClip {
  std::string source;                            ///< file path, or "kind/split/index" for a rendered scene.
  int width = 0, height = 0;                     ///< W, H of every frame.
  std::vector<std::vector<uint8_t>> frames_rgb;  ///< [K] frames, each [H, W, 3] RGB bytes.
  std::vector<int64_t> frame_indices;            ///< [K] source frame number of each sample.
  std::vector<double> timestamps;                ///< [K] seconds from the first frame.
  std::vector<bool> informative;                 ///< [K] the event is visible; empty when unknown.

  /// K.
  int64_t num_frames() const { return static_cast<int64_t>(frames_rgb.size()); }
};

/// Samples a rendered scene like the decoder samples its clip; informative per sample from the scene.
SampledClip sample_scene(const VideoScene& scene, int64_t frames);

/// The longest side a clip is decoded at: larger clips are scaled down while
/// decoding (aspect kept), smaller ones stay native.
inline constexpr int kMaxDecodedSide = 1024;

/// Decodes `frames` uniform samples of a video file at its native size, or
/// scaled so its longer side is kMaxDecodedSide when it is larger (the
/// decoder's errors: std::runtime_error "<path>: <problem>"). When
/// informative_frames (ascending source frame numbers, e.g. from a scene
/// index) is given, the samples' informative marks are set from it.
SampledClip read_clip(const std::string& path, int64_t frames,
                      const std::vector<int64_t>* informative_frames = nullptr);

/// The clip as model input [K, 3, S, S] (preprocess_frames).
at::Tensor clip_pixels(const SampledClip& clip, int64_t image_size);

/// Question text -> word ids of builtin_tokenizer() (no specials). Throws
/// std::invalid_argument("question: unknown word 'x' ...; the model knows only
/// its builtin vocabulary") for a word it lacks, and for an empty question.
std::vector<int64_t> encode_question(const std::string& question);

/// Whether a NAMM's provenance record says it was evolved or tuned on video
/// (a "domain" naming video/vision, or a task that is a scene kind or names
/// video, clips, scenes or frames): zero-shot video results need one that was not.
bool namm_tuned_on_video(const std::string& provenance_json);

/// Loads a video model directory (llava_checkpoint.h) for QA: its vocabulary
/// must hold builtin_tokenizer()'s ids, and a tokenizer.json next to it must be
/// that vocabulary. Errors name the directory.
VideoModel load_video_model(const std::string& dir);

/// How one clip is answered.
struct VideoQaOptions {
  PolicySpec policy;                       ///< the memory policy (name, budget, NAMM, seed).
  int64_t delay = kVideoDefaultDelay;      ///< tokens between memory updates.
  int64_t prompt_chunk = 128;              ///< most prompt tokens fed at once.
  int64_t max_answer_tokens = 4;           ///< greedy decoding stops at <eos> or after this many.

  /// Throws std::invalid_argument naming the value: every count >= 1, and for
  /// "namm" a delay that is a multiple of the model's STFT hop.
  void validate() const;
};

/// What answering one clip produced and what it cost.
struct VideoQaOutcome {
  std::string policy;
  std::vector<int64_t> answer_ids;      ///< generated ids trimmed at <eos>.
  std::string answer;                   ///< answer_ids as words.
  VideoPromptLayout layout;             ///< where frames and question sit.
  int64_t tokens_seen = 0;              ///< tokens fed: the prompt plus generated tokens fed back.
  double cached_tokens = 0.0;           ///< cached at the end, mean over layers and KV heads.
  double final_cache_fraction = 1.0;    ///< cached_tokens / tokens_seen.
  double retained_fraction = 1.0;       ///< the controller's mean kept / seen over updates (1 without updates).
  double visual_kept_fraction = 1.0;    ///< mean of kept_per_frame.
  at::Tensor kept_per_frame;            ///< [L, K] float64: share of each frame's visual tokens cached at the end.
  std::vector<double> kept_text;        ///< [L] share of the prompt's text tokens cached at the end.
  int64_t kv_bytes_used = 0;            ///< K/V bytes holding tokens at the end.
  int64_t kv_bytes_full = 0;            ///< K/V bytes a full cache of tokens_seen tokens holds.
  int64_t policy_updates = 0;
  double encode_seconds = 0.0;          ///< tower, pooling, projector, prompt embedding.
  double prefill_seconds = 0.0;         ///< prompt, policy updates included.
  double decode_seconds = 0.0;
  double seconds = 0.0;                 ///< all of it.
  int64_t visual_tokens_total = 0;      ///< K * P' * L * Hkv: every (token, layer, head) slot.
  int64_t evicted_visual = 0;           ///< visual (token, layer, head) slots evicted at the end.
  int64_t evicted_uninformative = 0;    ///< of which from frames marked uninformative (0 when unknown).
};

/// Prompt embeddings [T, D] of a clip (pixels [K, 3, S, S]) and question word ids;
/// computed once per clip and shared by every policy.
at::Tensor video_prompt_embeddings(const VideoModel& model, const at::Tensor& pixels,
                                   const std::vector<int64_t>& question);

/// Answers from prompt embeddings [T, D] (video_prompt_embeddings) with a fresh
/// policy built from options.policy; informative [K] (may be empty) marks the
/// frames whose evicted tokens count as informative. When state is given, the
/// final cache is left there.
VideoQaOutcome answer_video_prompt(const VideoModel& model, const at::Tensor& embeds, int64_t num_frames,
                                   int64_t question_words, const VideoQaOptions& options,
                                   const std::vector<bool>& informative = {}, SequenceState* state = nullptr);

/// Encodes clip and question, then answer_video_prompt (encode time included).
VideoQaOutcome answer_clip(const VideoModel& model, const SampledClip& clip, const std::vector<int64_t>& question,
                           const VideoQaOptions& options);

// ---------------------------------------------------------------------------
// the picture

/// Layout of the --viz picture.
struct VideoQaPictureOptions {
  int tile = 112;                 ///< frame tile side in pixels (frames are upscaled to it).
  int frames_per_row = 16;        ///< filmstrip wraps after this many frames.
  double drop_threshold = 0.10;   ///< a frame with less than this share of its visual tokens kept is "dropped".
};

/// Title lines of the picture.
struct VideoQaPictureCaption {
  std::string policy;    ///< "namm", "h2o", ...
  std::string budget;    ///< "-", "25%", "60 tokens".
  std::string question;
  std::string expected;  ///< the right answer when known, else empty.
  int64_t delay = 0;
};

/// Width and height of the picture for K frames and L layers.
std::pair<int, int> video_qa_picture_size(int64_t frames, int64_t layers, const VideoQaPictureOptions& options = {});

/// Writes a PNG (atomically) that shows at a glance what the policy kept: the
/// K frames as an upscaled filmstrip, each with the share of its visual tokens
/// kept (text and bar; dropped frames dimmed and crossed out in red), a strip
/// per layer (rows = layers, cells = frames, coloured by kept share, with the
/// text tokens' share at the end of the row), a colour scale, and a title with
/// policy, budget, question, answer and KV kept. Throws std::runtime_error
/// naming path when it cannot be written.
void write_video_qa_picture(const std::string& path, const SampledClip& clip, const VideoQaOutcome& outcome,
                            const VideoQaPictureCaption& caption, const VideoQaPictureOptions& options = {});

// ---------------------------------------------------------------------------
// evaluation over a split

/// What `namm eval-video` compares.
struct VideoEvalOptions {
  std::vector<std::string> kinds;      ///< scene kinds; empty = all of scene_kinds().
  Split split = Split::kTest;
  int64_t count = 20;                  ///< clips per kind (scenes 0..count-1, or the index's first count).
  int64_t frames = 16;                 ///< K sampled per clip.
  SceneOptions scene;                  ///< rendering (sample_frames is set to frames).
  std::string index_path;              ///< a make-scenes index.json: decode its first `count` clips per kind
                                       ///< instead of rendering (their own split; `split` and `scene` unused).
  /// Policies in display order; "namm" needs a model and runs before the
  /// baselines, which run at its measured mean retained fraction.
  std::vector<std::string> policies = policy_names();
  Budget fallback_budget{0, 0.5};      ///< the baselines' budget when no NAMM runs.
  VideoQaOptions qa;                   ///< delay, chunk, answer length (policy fields are set per row).
  uint64_t seed = 0;                   ///< the random policy's seed (plus the clip number).
  int threads = 2;

  /// Throws std::invalid_argument naming the bad field and value.
  void validate() const;
};

/// Accuracy on one kind.
struct VideoKindScore {
  int64_t clips = 0;
  int64_t correct = 0;
  double accuracy = 0.0;
  double chance = 0.0;  ///< 1 / number of choices.
};

/// One row of the comparison: one policy over all clips.
struct VideoEvalRow {
  std::string policy;
  std::string budget;                        ///< "-" or the budget it ran at.
  std::map<std::string, VideoKindScore> kinds;
  double accuracy = 0.0;                     ///< over all clips.
  double mean_retained_fraction = 1.0;       ///< mean over clips of the controller's retained fraction.
  double mean_final_cache_fraction = 1.0;    ///< mean over clips of the cache at answer time.
  double mean_visual_kept_fraction = 1.0;    ///< mean over clips of the visual tokens kept at the end.
  int64_t evicted_visual = 0;                ///< summed over clips (token, layer, head slots).
  int64_t evicted_uninformative = 0;
  double uninformative_eviction_share = 0.0; ///< evicted_uninformative / evicted_visual; NaN when nothing was evicted.
  double seconds_per_clip = 0.0;             ///< answering only (the shared encoding excluded).
};

/// The comparison.
struct VideoEvaluation {
  std::string split;
  std::string source;                 ///< "rendered" or the index path.
  int64_t clips = 0;
  int64_t frames = 0;
  int64_t delay = 0;
  std::vector<std::string> kinds;
  double chance = 0.0;                ///< mean over clips of 1 / choices.
  double uninformative_visual_share = 0.0;  ///< share of visual tokens from uninformative frames: what frame-blind eviction evicts.
  double namm_retained_fraction = 0.0;      ///< measured (0 when no NAMM ran).
  double encode_seconds_per_clip = 0.0;
  std::vector<VideoEvalRow> rows;     ///< in VideoEvalOptions::policies order.

  /// {"split", "source", "clips", "frames", "delay", "kinds", "chance", ...,
  ///  "rows": [{"policy", "budget", "accuracy", "kinds": {kind: {clips, correct, accuracy, chance}}, ...}]};
  /// NaN shares are written as null.
  std::string to_json() const;
  /// A markdown table: policy, budget, accuracy, one column per kind, KV retained, KV at answer,
  /// evicted visual tokens from uninformative frames; chance in the header row.
  std::string to_markdown() const;
};

/// Runs the comparison (see VideoEvalOptions): clips rendered (or decoded)
/// and encoded once each, then answered under every policy. progress (may be
/// null) gets one line per policy.
VideoEvaluation evaluate_video(const VideoModel& model, std::shared_ptr<const NammModel> namm,
                               const VideoEvalOptions& options, std::ostream* progress = nullptr);

}  // namespace namm
