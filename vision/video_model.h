// The LLaVA-NeXT-Video style video model: frames -> CLIP vision tower
// (penultimate layer, CLS dropped) -> 2x2 average pooling per frame on the
// patch grid -> 2-layer GELU projector -> visual embeddings spliced into the
// prompt of a plain Llama (text/llama.h), whose KV cache a memory policy
// prunes through the MemoryController like any other host.
//
// Prompt layout (positions 0..T-1), the question after the video:
//
//   <bos> | v(0,0) .. v(0,P'-1) | v(1,0) .. | v(F-1,P'-1) | <q> w_1 .. w_Q <a>
//     0   | 1 ..                                  .. F*P' | F*P'+1 ..   T-1
//
// v(f, j) is pooled patch j (row-major on the pooled grid) of frame f; w_i
// are the question's word ids; the answer (then <eos>) follows <a>. This is
// Hugging Face's layout with the <video> placeholder run replaced by the
// F*P' visual embeddings, and the text part is the one the language tasks
// use (text/tasks.h: "<q> ... <a>"), so the language model of models/lm fits.
//
// Two paths share the weights:
//   forward / answer_loss   batched, differentiable, for training;
//   answer_video_question   cached inference: visual tokens and question are
//                           prefilled through the controller (any policy),
//                           then a short answer is decoded; reports which KV
//                           positions hold which frame and what each layer kept.
//
// Not here: decoding video files (video_decoder.h), checkpoint files
// (llava_checkpoint.h), the training loop and the QA evaluation.
//
// Shape letters: B batch, F frames, S image side, P patches per frame, P'
// pooled tokens per frame, C vision width, D LM width, V vocabulary, T prompt
// tokens, Tt text tokens after the visual ones, Q question words, L LM layers.
#pragma once

#include "text/generation.h"
#include "text/llama.h"
#include "vision/vision_tower.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace namm {

class MemoryController;

/// Hyper-parameters of the whole model; field names as in Hugging Face's LlavaNextVideoConfig.
struct VideoModelConfig {
  VisionTowerConfig vision;                 ///< vision_config.
  LlamaConfig text;                         ///< text_config (tie_word_embeddings lives here).
  std::string projector_hidden_act = "gelu";  ///< activation between linear_1 and linear_2.
  bool multimodal_projector_bias = true;    ///< projector linears have biases.
  int64_t vision_feature_layer = -2;        ///< tower hidden state used (-2 = penultimate layer).
  std::string vision_feature_select_strategy = "default";  ///< "default" drops CLS (the only one supported).
  std::string spatial_pool_mode = "average";  ///< "average" (the only one supported).
  int64_t spatial_pool_stride = 2;          ///< pooling kernel = stride on the patch grid.
  int64_t image_token_index = 32001;        ///< Hugging Face's <image> placeholder id (kept for the file format).
  int64_t video_token_index = 32000;        ///< Hugging Face's <video> placeholder id; our prompts splice embeddings by position instead.

  /// g' = floor(g / spatial_pool_stride), pooled tokens per frame side.
  int64_t pooled_grid() const { return vision.grid() / spatial_pool_stride; }
  /// P' = g' * g'.
  int64_t tokens_per_frame() const { return pooled_grid() * pooled_grid(); }

  /// Validates both sub-configs and the joint fields; throws std::invalid_argument naming the field and value.
  void validate() const;
  /// Two lines: the tower and the LM, plus the pooling.
  std::string summary() const;
};

/// The small configuration trained here on the CPU: 64x64 frames, patch 8
/// (8x8 patches, pooled to 4x4 = 16 tokens per frame, 256 for 16 frames),
/// tower 4 layers of width 128 (4 heads, MLP 512, quick_gelu), projector
/// 128 -> 256 -> 256, and as language model the given Llama config (by
/// default the one of models/lm: vocab 686, hidden 256, 4 layers, 4 heads,
/// MLP 688, untied).
VideoModelConfig default_video_model_config();
/// The same tower and projector around a given language model config.
VideoModelConfig default_video_model_config(const LlamaConfig& text);

/// CLIP's per-channel normalisation (RGB), as Hugging Face's CLIPImageProcessor.
constexpr std::array<double, 3> kClipMean = {0.48145466, 0.4578275, 0.40821073};
constexpr std::array<double, 3> kClipStd = {0.26862954, 0.26130258, 0.27577711};

/// uint8 RGB frames [F, H, W, 3] -> CLIP input [F, 3, S, S] float32 on device:
/// resize so the shorter side is S (bicubic, antialiased when shrinking,
/// clamped to [0, 255]), centre crop S x S, scale to [0, 1], normalise with
/// kClipMean / kClipStd.
at::Tensor preprocess_frames(const at::Tensor& rgb, int64_t image_size, c10::Device device = c10::kCPU);
/// The same from frames held as bytes, each [height, width, 3] row-major RGB
/// (as vision/video_scenes.h and video_decoder.h produce them).
at::Tensor preprocess_frames(const std::vector<std::vector<uint8_t>>& frames, int width, int height,
                             int64_t image_size, c10::Device device = c10::kCPU);

/// 2-D average pooling per frame on the square patch grid (kernel = stride,
/// floor like nn.AvgPool2d): features [N, P, C] -> [N, P', C], row-major.
at::Tensor spatial_pool(const at::Tensor& features, int64_t stride);

/// Where each part of a prompt sits (see the top of this file).
struct VideoPromptLayout {
  int64_t num_frames = 0;        ///< F.
  int64_t tokens_per_frame = 0;  ///< P'.
  int64_t question_words = 0;    ///< Q, the question without <q> and <a>.

  /// F * P'.
  int64_t visual_tokens() const { return num_frames * tokens_per_frame; }
  /// Position of the first visual token (1: after <bos>).
  int64_t visual_begin() const { return 1; }
  /// One past the last visual token; also the position of <q>.
  int64_t visual_end() const { return 1 + visual_tokens(); }
  /// Position of <a>, the last prompt token.
  int64_t answer_marker() const { return visual_end() + 1 + question_words; }
  /// T, the prompt length.
  int64_t length() const { return answer_marker() + 1; }
  /// Prompt tokens that are text: <bos>, <q>, the question, <a>.
  int64_t text_tokens() const { return length() - visual_tokens(); }
  /// The frame whose visual token sits at position, -1 for text (and for
  /// positions after the prompt: generated tokens).
  int64_t frame_of(int64_t position) const;
  /// frame_of for every prompt position: [T].
  std::vector<int64_t> frame_of_positions() const;
};

/// linear_2(act(linear_1(x))): vision width C -> LM width D.
class MultiModalProjectorImpl : public torch::nn::Module {
 public:
  MultiModalProjectorImpl(int64_t vision_width, int64_t text_width, const std::string& act, bool bias);
  /// x: [..., C] -> [..., D].
  at::Tensor forward(const at::Tensor& x) const;

  torch::nn::Linear linear_1{nullptr};  ///< weight [D, C], bias [D] when biased
  torch::nn::Linear linear_2{nullptr};  ///< weight [D, D], bias [D] when biased
  std::string act;
};
TORCH_MODULE(MultiModalProjector);

/// Parameter counts of the three parts.
struct VideoModelParameterCounts {
  int64_t vision = 0;     ///< the tower, all layers (including ones a feature layer < -1 skips).
  int64_t projector = 0;
  int64_t language = 0;   ///< the Llama.
  int64_t other = 0;      ///< image_newline (held for the file format, unused for video).
  int64_t total() const { return vision + projector + language + other; }
};

/// A training batch: clips plus their text after the visual tokens.
struct VideoQaBatch {
  at::Tensor pixels;       ///< [B, F, 3, S, S] float, CLIP-normalised.
  at::Tensor text;         ///< [B, Tt] int64: <q> question <a> answer <eos>, right-padded with <pad>.
  at::Tensor target_mask;  ///< [B, Tt] bool: the tokens whose prediction is trained (answer and <eos>).
};

/// Builds a batch from clips [B, F, 3, S, S] and per-clip question and answer
/// word ids (without specials). Throws std::invalid_argument when the counts
/// differ from B or an answer is empty.
VideoQaBatch make_video_qa_batch(const at::Tensor& pixels, const std::vector<std::vector<int64_t>>& questions,
                                 const std::vector<std::vector<int64_t>>& answers);

/// The answer loss of a batch and how many answer tokens were predicted right.
struct VideoLoss {
  at::Tensor loss;             ///< scalar: mean cross-entropy over the target tokens, differentiable.
  int64_t tokens = 0;          ///< target tokens.
  int64_t correct_tokens = 0;  ///< of which the argmax is right (teacher forcing).
  int64_t correct_answers = 0; ///< clips whose target tokens are all right.
};

/// The video model (LlavaNextVideoForConditionalGeneration's video path). As
/// a CausalLm (adapters/cached_host.h) it is its language model: the cached
/// path runs prompt embeddings (visual ones spliced in) through it.
class VideoModelImpl : public torch::nn::Module, public CausalLm {
 public:
  /// Validates config; float32 parameters on the CPU (use to() to move or convert).
  explicit VideoModelImpl(const VideoModelConfig& config);

  const VideoModelConfig& config() const { return config_; }
  /// The device of the parameters.
  c10::Device device() const;

  /// Tower -> pool -> projector: pixels [N, 3, S, S] -> [N, P', D]. Differentiable.
  at::Tensor encode_frames(const at::Tensor& pixels) const;

  /// The layout of a prompt with num_frames frames and question_words words.
  VideoPromptLayout layout(int64_t num_frames, int64_t question_words) const;

  /// Input embeddings of one prompt: pixels [F, 3, S, S], question [Q] int64
  /// word ids -> [T, D] (see the layout at the top). Differentiable.
  at::Tensor prompt_embeddings(const at::Tensor& pixels, const at::Tensor& question) const;

  /// Training path: <bos>, the visual tokens of pixels [B, F, 3, S, S], then
  /// text [B, Tt] int64 -> logits [B, 1 + F*P' + Tt, V]. Differentiable.
  at::Tensor forward(const at::Tensor& pixels, const at::Tensor& text) const;

  /// The answer loss of a batch: logits only at the positions that predict
  /// a target token (the one before it). Differentiable.
  VideoLoss answer_loss(const VideoQaBatch& batch) const;

  /// Parameter counts per part.
  VideoModelParameterCounts parameter_counts() const;

  /// The parameters under their Hugging Face names in the classic layout
  /// ("vision_tower.vision_model.*", "multi_modal_projector.linear_1.weight",
  /// "language_model.model.*", "language_model.lm_head.weight" unless tied,
  /// "image_newline").
  std::vector<std::pair<std::string, at::Tensor>> hf_named_parameters() const override;

  // CausalLm: the language model's, so a policy prunes its cache like any other host
  int64_t num_layers() const override { return language_model->num_layers(); }
  int64_t embedding_width() const override { return language_model->embedding_width(); }
  int64_t vocab_size() const override { return language_model->vocab_size(); }
  SequenceState new_state() const override { return language_model->new_state(); }
  at::Tensor embed(const at::Tensor& ids) const override { return language_model->embed(ids); }
  at::Tensor forward_layers(SequenceState& state, const at::Tensor& embeddings, const at::Tensor& positions,
                            const std::vector<AttentionRecorder*>& recorders) const override {
    return language_model->forward_layers(state, embeddings, positions, recorders);
  }
  at::Tensor logits(const at::Tensor& hidden) const override { return language_model->logits(hidden); }
  /// config().summary().
  std::string summary() const override { return config_.summary(); }

  VisionTower vision_tower{nullptr};
  MultiModalProjector multi_modal_projector{nullptr};
  Llama language_model{nullptr};  ///< a plain Llama: load_llama_weights(dir, language_model) loads a text-only one.
  at::Tensor image_newline;       ///< [D]; LLaVA-NeXT's image-row separator, unused for video, kept so checkpoints round-trip.

 private:
  VideoModelConfig config_;
};
TORCH_MODULE(VideoModel);

/// Per layer and frame, the fraction of the frame's P' visual tokens still
/// cached, averaged over KV heads: [L, F] float64 on the CPU.
at::Tensor kept_fraction_per_frame(const SequenceState& state, const VideoPromptLayout& layout);
/// Per layer, the fraction of the prompt's text tokens still cached (mean over KV heads): [L].
std::vector<double> kept_text_fraction(const SequenceState& state, const VideoPromptLayout& layout);

/// What answer_video_question produced and what it cost.
struct VideoAnswer {
  std::vector<int64_t> tokens;  ///< generated ids, the stop token included when one ended it.
  bool stopped = false;         ///< a stop token ended generation.
  VideoPromptLayout layout;     ///< where the frames and the question sit.
  double encode_seconds = 0.0;  ///< tower, pooling, projector and prompt embedding.
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
  std::vector<double> cached_tokens_per_layer;  ///< [L] at the end, mean over KV heads.
  int64_t cache_bytes = 0;       ///< K/V storage allocated at the end.
  int64_t cache_used_bytes = 0;  ///< K/V storage holding tokens at the end.
  int64_t policy_updates = 0;    ///< controller updates (0 without one).
  at::Tensor kept_per_frame;     ///< [L, F] float64, kept_fraction_per_frame at the end.
  std::vector<double> kept_text;  ///< [L], kept_text_fraction at the end.
};

/// Cached video QA: prefills <bos>, the frames' visual tokens and the
/// question (pixels [F, 3, S, S], question [Q] word ids) through controller
/// (reset by the caller for a new clip; null = full cache), then decodes up
/// to options.max_new_tokens (greedy when temperature is 0; stop ids from
/// options, e.g. {Tokenizer::kEos}). When state is given, the final state is
/// left there (for plots).
VideoAnswer answer_video_question(const VideoModel& model, const at::Tensor& pixels, const at::Tensor& question,
                                  const GenerationOptions& options, MemoryController* controller = nullptr,
                                  SequenceState* state = nullptr);

}  // namespace namm
