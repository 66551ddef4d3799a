// video_model: see video_model.h
#include "vision/video_model.h"

#include "adapters/memory_controller.h"
#include "text/tokenizer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace namm {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("VideoModelConfig: " + message);
}

int64_t count(const std::vector<at::Tensor>& tensors) {
  int64_t total = 0;
  for (const at::Tensor& t : tensors) total += t.numel();
  return total;
}

}  // namespace

// ---------------------------------------------------------------------------
// config

void VideoModelConfig::validate() const {
  vision.validate();
  text.validate();
  require(is_known_activation(projector_hidden_act),
          "projector_hidden_act '" + projector_hidden_act + "' is not supported");
  require(vision_feature_select_strategy == "default",
          "vision_feature_select_strategy '" + vision_feature_select_strategy +
              "' is not supported (only \"default\": drop CLS; pooling needs a square patch grid)");
  require(spatial_pool_mode == "average",
          "spatial_pool_mode '" + spatial_pool_mode + "' is not supported (only \"average\")");
  require(spatial_pool_stride >= 1 && spatial_pool_stride <= vision.grid(),
          "spatial_pool_stride " + std::to_string(spatial_pool_stride) + " must be in [1, " +
              std::to_string(vision.grid()) + "] (the patch grid side)");
  const int64_t layers = vision.num_hidden_layers;
  require(vision_feature_layer >= -(layers + 1) && vision_feature_layer <= layers,
          "vision_feature_layer " + std::to_string(vision_feature_layer) + " out of range for " +
              std::to_string(layers) + " tower layers");
}

std::string VideoModelConfig::summary() const {
  std::ostringstream out;
  out << "tower: " << vision.summary() << "; layer " << vision_feature_layer << ", " << spatial_pool_mode << " pool "
      << spatial_pool_stride << " -> " << pooled_grid() << "x" << pooled_grid() << " = " << tokens_per_frame()
      << " tokens/frame; projector " << vision.hidden_size << " -> " << text.hidden_size << " (" << projector_hidden_act
      << ")\nlanguage model: " << text.summary();
  return out.str();
}

VideoModelConfig default_video_model_config(const LlamaConfig& text) {
  VideoModelConfig config;
  config.vision.hidden_size = 128;
  config.vision.intermediate_size = 512;
  config.vision.num_hidden_layers = 4;
  config.vision.num_attention_heads = 4;
  config.vision.image_size = 64;
  config.vision.patch_size = 8;
  config.vision.hidden_act = "quick_gelu";
  config.text = text;
  // our prompts splice embeddings by position and never hold a placeholder;
  // <unk> is a valid id a Hugging Face style runtime could use as one
  config.video_token_index = Tokenizer::kUnk;
  config.image_token_index = Tokenizer::kUnk;
  return config;
}

VideoModelConfig default_video_model_config() {
  LlamaConfig text;  // the config of models/lm
  text.vocab_size = builtin_tokenizer().vocab_size();
  text.hidden_size = 256;
  text.intermediate_size = 688;
  text.num_hidden_layers = 4;
  text.num_attention_heads = 4;
  text.num_key_value_heads = 4;
  text.rms_norm_eps = 1e-6;
  text.max_position_embeddings = 16384;
  text.tie_word_embeddings = false;
  return default_video_model_config(text);
}

// ---------------------------------------------------------------------------
// preprocessing and pooling

at::Tensor preprocess_frames(const at::Tensor& rgb, int64_t image_size, c10::Device device) {
  TORCH_CHECK(rgb.dim() == 4 && rgb.size(3) == 3 && rgb.size(0) >= 1 && rgb.size(1) >= 1 && rgb.size(2) >= 1,
              "preprocess_frames: rgb must be [F, H, W, 3], got ", rgb.sizes());
  TORCH_CHECK(rgb.scalar_type() == at::kByte, "preprocess_frames: rgb must be uint8, got ", rgb.scalar_type());
  TORCH_CHECK(image_size >= 1, "preprocess_frames: image_size must be >= 1, got ", image_size);
  at::NoGradGuard no_grad;
  const int64_t h = rgb.size(1);
  const int64_t w = rgb.size(2);
  at::Tensor x = rgb.to(device).permute({0, 3, 1, 2}).to(at::kFloat).contiguous();  // [F, 3, H, W] in 0..255
  // shorter side to S, keeping the aspect ratio (as CLIPImageProcessor's shortest_edge)
  const double scale = static_cast<double>(image_size) / static_cast<double>(std::min(h, w));
  const int64_t new_h = h <= w ? image_size : static_cast<int64_t>(std::lround(static_cast<double>(h) * scale));
  const int64_t new_w = w < h ? image_size : static_cast<int64_t>(std::lround(static_cast<double>(w) * scale));
  if (new_h != h || new_w != w) {
    x = at::_upsample_bicubic2d_aa(x, {new_h, new_w}, /*align_corners=*/false).clamp(0.0, 255.0);  // [F, 3, H', W']
  }
  const int64_t top = (new_h - image_size) / 2;
  const int64_t left = (new_w - image_size) / 2;
  x = x.narrow(2, top, image_size).narrow(3, left, image_size);  // [F, 3, S, S]
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  const at::Tensor mean = at::tensor({kClipMean[0], kClipMean[1], kClipMean[2]}, opts.dtype(at::kDouble)).to(opts).view({1, 3, 1, 1});
  const at::Tensor std = at::tensor({kClipStd[0], kClipStd[1], kClipStd[2]}, opts.dtype(at::kDouble)).to(opts).view({1, 3, 1, 1});
  return ((x / 255.0 - mean) / std).contiguous();
}

at::Tensor preprocess_frames(const std::vector<std::vector<uint8_t>>& frames, int width, int height,
                             int64_t image_size, c10::Device device) {
  if (frames.empty()) throw std::invalid_argument("preprocess_frames: no frames");
  if (width < 1 || height < 1) {
    throw std::invalid_argument("preprocess_frames: bad frame size " + std::to_string(width) + "x" +
                                std::to_string(height));
  }
  const size_t bytes = static_cast<size_t>(width) * static_cast<size_t>(height) * 3;
  at::Tensor rgb = at::empty({static_cast<int64_t>(frames.size()), height, width, 3}, at::kByte);  // [F, H, W, 3]
  for (size_t i = 0; i < frames.size(); ++i) {
    if (frames[i].size() != bytes) {
      throw std::invalid_argument("preprocess_frames: frame " + std::to_string(i) + " holds " +
                                  std::to_string(frames[i].size()) + " bytes, expected " + std::to_string(bytes) +
                                  " for " + std::to_string(width) + "x" + std::to_string(height) + " RGB");
    }
    std::copy(frames[i].begin(), frames[i].end(), rgb[static_cast<int64_t>(i)].data_ptr<uint8_t>());
  }
  return preprocess_frames(rgb, image_size, device);
}

at::Tensor spatial_pool(const at::Tensor& features, int64_t stride) {
  TORCH_CHECK(features.dim() == 3, "spatial_pool: features must be [N, P, C], got ", features.sizes());
  const int64_t n = features.size(0);
  const int64_t p = features.size(1);
  const int64_t c = features.size(2);
  const auto g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(p))));
  TORCH_CHECK(g * g == p, "spatial_pool: ", p, " patches do not form a square grid");
  TORCH_CHECK(stride >= 1 && stride <= g, "spatial_pool: stride ", stride, " must be in [1, ", g, "]");
  if (stride == 1) return features;
  const at::Tensor grid = features.view({n, g, g, c}).permute({0, 3, 1, 2});  // [N, C, g, g]
  return at::avg_pool2d(grid, {stride, stride}, {stride, stride})           // [N, C, g', g']
      .flatten(2)
      .transpose(1, 2)
      .contiguous();  // [N, P', C]
}

// ---------------------------------------------------------------------------
// layout

int64_t VideoPromptLayout::frame_of(int64_t position) const {
  if (position < visual_begin() || position >= visual_end() || tokens_per_frame <= 0) return -1;
  return (position - visual_begin()) / tokens_per_frame;
}

std::vector<int64_t> VideoPromptLayout::frame_of_positions() const {
  std::vector<int64_t> out(static_cast<size_t>(length()));
  for (int64_t p = 0; p < length(); ++p) out[static_cast<size_t>(p)] = frame_of(p);
  return out;
}

// ---------------------------------------------------------------------------
// modules

MultiModalProjectorImpl::MultiModalProjectorImpl(int64_t vision_width, int64_t text_width, const std::string& act,
                                                 bool bias)
    : act(act) {
  linear_1 = register_module("linear_1", torch::nn::Linear(torch::nn::LinearOptions(vision_width, text_width).bias(bias)));
  linear_2 = register_module("linear_2", torch::nn::Linear(torch::nn::LinearOptions(text_width, text_width).bias(bias)));
}

at::Tensor MultiModalProjectorImpl::forward(const at::Tensor& x) const {
  const at::Tensor hidden = apply_activation(act, at::linear(x, linear_1->weight, linear_1->bias));  // [..., D]
  return at::linear(hidden, linear_2->weight, linear_2->bias);                                        // [..., D]
}

VideoModelImpl::VideoModelImpl(const VideoModelConfig& config) : config_(config) {
  config_.validate();
  vision_tower = register_module("vision_tower", VisionTower(config_.vision));
  multi_modal_projector = register_module(
      "multi_modal_projector", MultiModalProjector(config_.vision.hidden_size, config_.text.hidden_size,
                                                   config_.projector_hidden_act, config_.multimodal_projector_bias));
  language_model = register_module("language_model", Llama(config_.text));
  // LLaVA-NeXT initialises it as randn / sqrt(D); here it never enters the video path
  image_newline = register_parameter("image_newline", at::randn({config_.text.hidden_size}) /
                                                          std::sqrt(static_cast<double>(config_.text.hidden_size)));
  at::NoGradGuard no_grad;
  for (const torch::nn::Linear& linear : {multi_modal_projector->linear_1, multi_modal_projector->linear_2}) {
    linear->weight.normal_(0.0, config_.text.initializer_range);
    if (linear->bias.defined()) linear->bias.zero_();
  }
}

c10::Device VideoModelImpl::device() const { return language_model->embed_tokens->weight.device(); }

at::Tensor VideoModelImpl::encode_frames(const at::Tensor& pixels) const {
  const at::Tensor features = vision_tower->forward(pixels, config_.vision_feature_layer, /*drop_cls=*/true);  // [N, P, C]
  return multi_modal_projector->forward(spatial_pool(features, config_.spatial_pool_stride));               // [N, P', D]
}

VideoPromptLayout VideoModelImpl::layout(int64_t num_frames, int64_t question_words) const {
  VideoPromptLayout out;
  out.num_frames = num_frames;
  out.tokens_per_frame = config_.tokens_per_frame();
  out.question_words = question_words;
  return out;
}

at::Tensor VideoModelImpl::prompt_embeddings(const at::Tensor& pixels, const at::Tensor& question) const {
  TORCH_CHECK(pixels.dim() == 4 && pixels.size(0) >= 1, "VideoModel: pixels must be [F, 3, S, S] with F >= 1, got ",
              pixels.sizes());
  TORCH_CHECK(question.dim() == 1, "VideoModel: question must be [Q] word ids, got ", question.sizes());
  const at::Tensor visual = encode_frames(pixels).flatten(0, 1);  // [F*P', D]
  const at::Tensor ids = question.to(at::kCPU, at::kLong);
  if (ids.numel() > 0) {
    const int64_t lowest = ids.min().item<int64_t>();
    const int64_t highest = ids.max().item<int64_t>();
    TORCH_CHECK(lowest >= 0 && highest < config_.text.vocab_size, "VideoModel: question ids must be in [0, ",
                config_.text.vocab_size, "), got ", lowest, "..", highest);
  }
  const at::Tensor head = at::full({1}, Tokenizer::kBos, at::kLong);                                       // <bos>
  const at::Tensor tail = at::cat({at::full({1}, Tokenizer::kQ, at::kLong), ids, at::full({1}, Tokenizer::kA, at::kLong)});  // [Q + 2]
  return at::cat({language_model->embed(head), visual.to(language_model->embed_tokens->weight.scalar_type()),
                  language_model->embed(tail)},
                 0);  // [T, D]
}

at::Tensor VideoModelImpl::forward(const at::Tensor& pixels, const at::Tensor& text) const {
  TORCH_CHECK(pixels.dim() == 5 && pixels.size(0) >= 1 && pixels.size(1) >= 1,
              "VideoModel::forward: pixels must be [B, F, 3, S, S], got ", pixels.sizes());
  TORCH_CHECK(text.dim() == 2 && text.size(0) == pixels.size(0), "VideoModel::forward: text must be [",
              pixels.size(0), ", Tt], got ", text.sizes());
  const int64_t batch = pixels.size(0);
  const int64_t frames = pixels.size(1);
  const at::Tensor visual = encode_frames(pixels.flatten(0, 1))  // [B*F, P', D]
                                .view({batch, frames * config_.tokens_per_frame(), config_.text.hidden_size});  // [B, F*P', D]
  const at::Tensor bos = language_model->embed(at::full({batch, 1}, Tokenizer::kBos, at::kLong));  // [B, 1, D]
  const at::Tensor embeds = at::cat({bos, visual.to(bos.scalar_type()), language_model->embed(text)}, 1);  // [B, T, D]
  return language_model->forward_embeddings(embeds);  // [B, T, V]
}

VideoLoss VideoModelImpl::answer_loss(const VideoQaBatch& batch) const {
  const at::Tensor& pixels = batch.pixels;
  TORCH_CHECK(pixels.dim() == 5, "VideoModel::answer_loss: pixels must be [B, F, 3, S, S], got ", pixels.sizes());
  const int64_t b = pixels.size(0);
  const int64_t frames = pixels.size(1);
  TORCH_CHECK(batch.text.dim() == 2 && batch.text.size(0) == b && batch.target_mask.sizes() == batch.text.sizes(),
              "VideoModel::answer_loss: text ", batch.text.sizes(), " and target_mask ", batch.target_mask.sizes(),
              " must both be [", b, ", Tt]");
  const int64_t tt = batch.text.size(1);
  const int64_t d = config_.text.hidden_size;
  const at::Device dev = device();

  const at::Tensor visual = encode_frames(pixels.flatten(0, 1)).view({b, frames * config_.tokens_per_frame(), d});  // [B, F*P', D]
  const at::Tensor bos = language_model->embed(at::full({b, 1}, Tokenizer::kBos, at::kLong));  // [B, 1, D]
  const at::Tensor embeds = at::cat({bos, visual.to(bos.scalar_type()), language_model->embed(batch.text)}, 1);  // [B, T, D]
  const at::Tensor hidden = language_model->forward_hidden(embeds);  // [B, T, D]
  // text token j sits at 1 + F*P' + j and is predicted from the position before it
  const int64_t first = frames * config_.tokens_per_frame();
  const at::Tensor predicting = hidden.narrow(1, first, tt).reshape({b * tt, d});  // [B*Tt, D]
  const at::Tensor mask = batch.target_mask.to(dev, at::kBool).reshape({b * tt});   // [B*Tt]
  const at::Tensor index = mask.nonzero().squeeze(1);                               // [M]
  TORCH_CHECK(index.numel() > 0, "VideoModel::answer_loss: target_mask selects no token");
  const at::Tensor targets = batch.text.to(dev, at::kLong).reshape({b * tt}).index_select(0, index);  // [M]
  const at::Tensor logits =
      at::linear(predicting.index_select(0, index), language_model->output_weight()).to(at::kFloat);  // [M, V]

  VideoLoss out;
  out.loss = at::nll_loss(at::log_softmax(logits, -1), targets);
  out.tokens = index.numel();
  at::NoGradGuard no_grad;
  const at::Tensor right = (logits.argmax(-1) == targets);  // [M]
  out.correct_tokens = right.sum().item<int64_t>();
  // a clip is right when none of its target tokens is wrong
  at::Tensor wrong = at::zeros({b * tt}, at::TensorOptions().dtype(at::kLong).device(dev));
  wrong.index_put_({index}, (~right).to(at::kLong));
  const at::Tensor clip_wrong = wrong.view({b, tt}).sum(1);               // [B]
  const at::Tensor has_target = batch.target_mask.to(dev, at::kBool).any(1);  // [B]
  out.correct_answers = ((clip_wrong == 0) & has_target).sum().item<int64_t>();
  return out;
}

VideoModelParameterCounts VideoModelImpl::parameter_counts() const {
  VideoModelParameterCounts out;
  out.vision = count(vision_tower->parameters());
  out.projector = count(multi_modal_projector->parameters());
  out.language = count(language_model->parameters());
  out.other = image_newline.numel();
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> VideoModelImpl::hf_named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& [name, t] : vision_tower->hf_named_parameters()) out.emplace_back("vision_tower." + name, t);
  for (const auto& item : multi_modal_projector->named_parameters()) {
    out.emplace_back("multi_modal_projector." + item.key(), item.value());
  }
  for (auto& [name, t] : language_model->hf_named_parameters()) out.emplace_back("language_model." + name, t);
  out.emplace_back("image_newline", image_newline);
  return out;
}

// ---------------------------------------------------------------------------
// batches

VideoQaBatch make_video_qa_batch(const at::Tensor& pixels, const std::vector<std::vector<int64_t>>& questions,
                                 const std::vector<std::vector<int64_t>>& answers) {
  if (pixels.dim() != 5) {
    std::ostringstream shape;
    shape << pixels.sizes();
    throw std::invalid_argument("make_video_qa_batch: pixels must be [B, F, 3, S, S], got " + shape.str());
  }
  const auto b = static_cast<size_t>(pixels.size(0));
  if (questions.size() != b || answers.size() != b) {
    throw std::invalid_argument("make_video_qa_batch: " + std::to_string(b) + " clips but " +
                                std::to_string(questions.size()) + " questions and " + std::to_string(answers.size()) +
                                " answers");
  }
  size_t longest = 0;
  for (size_t i = 0; i < b; ++i) {
    if (answers[i].empty()) throw std::invalid_argument("make_video_qa_batch: answer " + std::to_string(i) + " is empty");
    longest = std::max(longest, questions[i].size() + answers[i].size() + 3);  // <q> <a> <eos>
  }
  const auto tt = static_cast<int64_t>(longest);
  VideoQaBatch batch;
  batch.pixels = pixels;
  batch.text = at::full({static_cast<int64_t>(b), tt}, Tokenizer::kPad, at::kLong);  // [B, Tt]
  batch.target_mask = at::zeros({static_cast<int64_t>(b), tt}, at::kBool);           // [B, Tt]
  for (size_t i = 0; i < b; ++i) {
    int64_t* text = batch.text[static_cast<int64_t>(i)].data_ptr<int64_t>();
    bool* mask = batch.target_mask[static_cast<int64_t>(i)].data_ptr<bool>();
    size_t j = 0;
    text[j++] = Tokenizer::kQ;
    for (int64_t id : questions[i]) text[j++] = id;
    text[j++] = Tokenizer::kA;
    for (int64_t id : answers[i]) {
      mask[j] = true;
      text[j++] = id;
    }
    mask[j] = true;
    text[j++] = Tokenizer::kEos;
  }
  return batch;
}

// ---------------------------------------------------------------------------
// cached inference

at::Tensor kept_fraction_per_frame(const SequenceState& state, const VideoPromptLayout& layout) {
  const auto layers = static_cast<int64_t>(state.caches.size());
  const int64_t frames = layout.num_frames;
  at::Tensor out = at::zeros({layers, std::max<int64_t>(frames, 0)}, at::kDouble);  // [L, F]
  if (frames <= 0 || layout.tokens_per_frame <= 0) return out;
  double* data = out.data_ptr<double>();
  for (int64_t l = 0; l < layers; ++l) {
    const LayerKvCache& cache = state.caches[static_cast<size_t>(l)];
    for (int64_t h = 0; h < cache.num_heads(); ++h) {
      for (int64_t position : cache.position_list(h)) {
        const int64_t f = layout.frame_of(position);
        if (f >= 0) data[l * frames + f] += 1.0;
      }
    }
    for (int64_t f = 0; f < frames; ++f) {
      data[l * frames + f] /= static_cast<double>(cache.num_heads() * layout.tokens_per_frame);
    }
  }
  return out;
}

std::vector<double> kept_text_fraction(const SequenceState& state, const VideoPromptLayout& layout) {
  std::vector<double> out;
  for (const LayerKvCache& cache : state.caches) {
    double kept = 0.0;
    for (int64_t h = 0; h < cache.num_heads(); ++h) {
      for (int64_t position : cache.position_list(h)) {
        if (position < layout.length() && layout.frame_of(position) < 0) kept += 1.0;
      }
    }
    out.push_back(kept / static_cast<double>(cache.num_heads() * layout.text_tokens()));
  }
  return out;
}

VideoAnswer answer_video_question(const VideoModel& model, const at::Tensor& pixels, const at::Tensor& question,
                                  const GenerationOptions& options, MemoryController* controller, SequenceState* state_out) {
  if (options.max_new_tokens < 0 || options.prompt_chunk < 1 || !(options.temperature >= 0.0) || options.top_k < 0) {
    throw std::invalid_argument("answer_video_question: bad options (max_new_tokens " +
                                std::to_string(options.max_new_tokens) + ", prompt_chunk " +
                                std::to_string(options.prompt_chunk) + ", temperature " +
                                std::to_string(options.temperature) + ", top_k " + std::to_string(options.top_k) + ")");
  }
  at::NoGradGuard no_grad;
  at::Generator generator = at::detail::createCPUGenerator(options.seed);
  VideoAnswer result;
  result.layout = model->layout(pixels.size(0), question.size(0));

  auto start = std::chrono::steady_clock::now();
  const at::Tensor embeds = model->prompt_embeddings(pixels, question);  // [T, D]
  result.encode_seconds = seconds_since(start);

  SequenceState state = model->new_state();
  start = std::chrono::steady_clock::now();
  const at::Tensor logits = prefill_embeddings(*model, state, embeds, options.prompt_chunk, controller);  // [V]
  result.prefill_seconds = seconds_since(start);

  start = std::chrono::steady_clock::now();
  Continuation continuation = continue_sequence(*model, state, logits, options, generator, controller);
  result.tokens = std::move(continuation.tokens);
  result.stopped = continuation.stopped;
  result.decode_seconds = seconds_since(start);

  result.cached_tokens_per_layer = state.cached_tokens_per_layer();
  result.cache_bytes = state.bytes();
  result.cache_used_bytes = state.used_bytes();
  result.policy_updates = controller != nullptr ? controller->num_updates() : 0;
  result.kept_per_frame = kept_fraction_per_frame(state, result.layout);
  result.kept_text = kept_text_fraction(state, result.layout);
  if (state_out != nullptr) *state_out = std::move(state);
  return result;
}

}  // namespace namm
