// video_qa: see video_qa.h. OpenCV (the picture) lives only in this file.
#include "vision/video_qa.h"

#include "adapters/memory_controller.h"
#include "core/atomic_file.h"
#include "core/namm_model.h"
#include "core/namm_provenance.h"
#include "text/text_eval.h"
#include "text/tokenizer.h"
#include "vision/llava_checkpoint.h"
#include "vision/video_decoder.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace namm {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

// "12.3%" with the given decimals
std::string percent(double fraction, int decimals = 1) {
  if (!std::isfinite(fraction)) return "-";
  std::ostringstream out;
  out << std::fixed << std::setprecision(decimals) << 100.0 * fraction << "%";
  return out.str();
}

std::string fixed(double value, int decimals) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(decimals) << value;
  return out.str();
}

json number_or_null(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }

}  // namespace

// ---------------------------------------------------------------------------
// frames

std::vector<int64_t> uniform_frame_indices(int64_t num_frames, int64_t samples) {
  if (num_frames < 1 || samples < 1) {
    throw std::invalid_argument("uniform_frame_indices: need num_frames >= 1 and samples >= 1, got " +
                                std::to_string(num_frames) + " and " + std::to_string(samples));
  }
  // t_i = (i + 0.5) * N / fps / K; the frame on screen then is floor(t_i * fps),
  // computed in integers so no rounding can move a sample across a frame edge
  std::vector<int64_t> out(static_cast<size_t>(samples));
  for (int64_t i = 0; i < samples; ++i) out[static_cast<size_t>(i)] = (2 * i + 1) * num_frames / (2 * samples);
  return out;
}

SampledClip sample_scene(const VideoScene& scene, int64_t frames) {
  SampledClip clip;
  clip.source = scene.kind + "/" + to_string(scene.split) + "/" + std::to_string(scene.index);
  clip.width = scene.width;
  clip.height = scene.height;
  for (int64_t index : uniform_frame_indices(scene.num_frames(), frames)) {
    clip.frames_rgb.push_back(scene.frames_rgb[static_cast<size_t>(index)]);
    clip.frame_indices.push_back(index);
    clip.timestamps.push_back(scene.fps > 0 ? static_cast<double>(index) / scene.fps : 0.0);
    clip.informative.push_back(scene.informative[static_cast<size_t>(index)]);
  }
  return clip;
}

SampledClip read_clip(const std::string& path, int64_t frames, const std::vector<int64_t>* informative_frames) {
  if (frames < 1) throw std::invalid_argument("read_clip: frames must be >= 1, got " + std::to_string(frames));
  // a model sees frames of a few hundred pixels: a 4K clip is scaled while it
  // is decoded, so memory is bounded by what the model uses, not the clip
  const VideoInfo info = probe_video(path);
  int width = 0, height = 0;  // native
  if (std::max(info.width, info.height) > kMaxDecodedSide) (info.width >= info.height ? width : height) = kMaxDecodedSide;
  std::vector<DecodedFrame> decoded = sample_frames_uniform(path, static_cast<int>(frames), width, height);
  SampledClip clip;
  clip.source = path;
  clip.width = decoded.front().width;
  clip.height = decoded.front().height;
  for (DecodedFrame& frame : decoded) {
    clip.frame_indices.push_back(frame.index);
    clip.timestamps.push_back(frame.timestamp_seconds);
    clip.frames_rgb.push_back(std::move(frame.rgb));
    if (informative_frames != nullptr) {
      clip.informative.push_back(
          std::binary_search(informative_frames->begin(), informative_frames->end(), frame.index));
    }
  }
  return clip;
}

at::Tensor clip_pixels(const SampledClip& clip, int64_t image_size) {
  return preprocess_frames(clip.frames_rgb, clip.width, clip.height, image_size);  // [K, 3, S, S]
}

std::vector<int64_t> encode_question(const std::string& question) {
  std::vector<int64_t> ids;
  try {
    ids = builtin_tokenizer().encode(question);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("question: ") + e.what() +
                                "; the model knows only its builtin vocabulary (text/tokenizer.h)");
  }
  if (ids.empty()) throw std::invalid_argument("question: it is empty");
  for (int64_t id : ids) {
    if (id < Tokenizer::kNumSpecial) {
      throw std::invalid_argument("question: it holds the special token '" + builtin_tokenizer().token(id) +
                                  "'; write plain words");
    }
  }
  return ids;
}

bool namm_tuned_on_video(const std::string& provenance_json) {
  DomainVocabulary video{{"video", "vision", "visual", "clip", "scene", "frame", "llava"}, scene_kinds()};
  return provenance_names_domain(provenance_json, video);
}

VideoModel load_video_model(const std::string& dir) {
  LlavaCheckpoint checkpoint = load_llava_checkpoint(dir);
  const Tokenizer& tokenizer = builtin_tokenizer();
  if (checkpoint.config.text.vocab_size < tokenizer.vocab_size()) {
    throw std::runtime_error(dir + ": vocabulary of " + std::to_string(checkpoint.config.text.vocab_size) +
                             " tokens, the questions need the builtin " + std::to_string(tokenizer.vocab_size()));
  }
  const std::string tokenizer_path = (fs::path(dir) / "tokenizer.json").string();
  if (fs::exists(tokenizer_path)) {
    try {
      tokenizer.check_same_vocabulary(Tokenizer::load(tokenizer_path));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(tokenizer_path + ": not the builtin vocabulary: " + e.what());
    }
  }
  checkpoint.model->eval();
  return checkpoint.model;
}

// ---------------------------------------------------------------------------
// answering

void VideoQaOptions::validate() const {
  auto fail = [](const std::string& what) { throw std::invalid_argument("VideoQaOptions: " + what); };
  if (delay < 1) fail("delay must be >= 1, got " + std::to_string(delay));
  if (prompt_chunk < 1) fail("prompt_chunk must be >= 1, got " + std::to_string(prompt_chunk));
  if (max_answer_tokens < 1) fail("max_answer_tokens must be >= 1, got " + std::to_string(max_answer_tokens));
  const std::vector<std::string>& names = policy_names();
  if (std::find(names.begin(), names.end(), policy.name) == names.end()) fail("unknown policy '" + policy.name + "'");
  if (policy.budget.fraction < 0 || policy.budget.fraction > 1 ||
      (policy.budget.fraction == 0 && policy.budget.tokens < 1)) {
    fail("budget must be a fraction in (0, 1] or at least 1 token, got " + policy.budget.to_string());
  }
  if (policy.name == "namm") {
    if (!policy.namm_model) fail("policy namm needs a NAMM model");
    const int64_t hop = policy.namm_model->config.spectrogram.hop;
    if (delay % hop != 0) {
      fail("delay " + std::to_string(delay) + " is not a multiple of the NAMM's STFT hop " + std::to_string(hop));
    }
  }
}

at::Tensor video_prompt_embeddings(const VideoModel& model, const at::Tensor& pixels,
                                   const std::vector<int64_t>& question) {
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::tensor(question, at::kLong);  // [Q]
  return model->prompt_embeddings(pixels.to(model->device()), ids);  // [T, D]
}

VideoQaOutcome answer_video_prompt(const VideoModel& model, const at::Tensor& embeds, int64_t num_frames,
                                   int64_t question_words, const VideoQaOptions& options,
                                   const std::vector<bool>& informative, SequenceState* state_out) {
  options.validate();
  const VideoPromptLayout layout = model->layout(num_frames, question_words);
  TORCH_CHECK(embeds.dim() == 2 && embeds.size(0) == layout.length(), "answer_video_prompt: embeds must be [",
              layout.length(), ", D] for ", num_frames, " frames and ", question_words, " question words, got ",
              embeds.sizes());
  if (!informative.empty() && static_cast<int64_t>(informative.size()) != num_frames) {
    throw std::invalid_argument("answer_video_prompt: " + std::to_string(informative.size()) +
                                " informative marks for " + std::to_string(num_frames) + " frames");
  }
  at::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  MemoryController controller(make_policy(options.policy), static_cast<int>(model->num_layers()),
                              ControllerOptions{options.delay, /*record_statistics=*/false});

  VideoQaOutcome out;
  out.policy = options.policy.name;
  out.layout = layout;
  SequenceState state = model->new_state();
  auto phase = std::chrono::steady_clock::now();
  const at::Tensor logits = prefill_embeddings(*model, state, embeds, options.prompt_chunk, &controller);  // [V]
  out.prefill_seconds = seconds_since(phase);

  phase = std::chrono::steady_clock::now();
  at::Generator unused = at::detail::createCPUGenerator(0);  // greedy draws nothing
  Continuation answer = continue_sequence(*model, state, logits,
                                          greedy_answer_options(options.max_answer_tokens, Tokenizer::kEos), unused,
                                          &controller);
  std::vector<int64_t> generated = std::move(answer.tokens);
  if (answer.stopped) generated.pop_back();  // the answer without its <eos>
  out.decode_seconds = seconds_since(phase);
  out.answer_ids = generated;
  out.answer = builtin_tokenizer().decode(generated, /*skip_special=*/false);

  // memory at answer time
  out.tokens_seen = state.caches.empty() ? 0 : state.caches.front().tokens_appended();
  out.cached_tokens = state.mean_cached_tokens();
  out.final_cache_fraction = out.tokens_seen > 0 ? out.cached_tokens / static_cast<double>(out.tokens_seen) : 1.0;
  out.retained_fraction = controller.mean_retained_fraction();
  out.policy_updates = controller.num_updates();
  out.kv_bytes_used = state.used_bytes();
  for (const LayerKvCache& cache : state.caches) {
    out.kv_bytes_full += cache.tokens_appended() * cache.num_heads() * cache.head_dim() * 2 *
                         static_cast<int64_t>(c10::elementSize(cache.options().dtype));
  }
  out.kept_per_frame = kept_fraction_per_frame(state, layout);  // [L, K]
  out.kept_text = kept_text_fraction(state, layout);
  out.visual_kept_fraction = out.kept_per_frame.numel() > 0 ? out.kept_per_frame.mean().item<double>() : 1.0;

  // which visual tokens went, per layer and KV head
  const int64_t begin = layout.visual_begin();
  const int64_t end = layout.visual_end();
  std::vector<char> present(static_cast<size_t>(end - begin));
  for (const LayerKvCache& cache : state.caches) {
    for (int64_t h = 0; h < cache.num_heads(); ++h) {
      std::fill(present.begin(), present.end(), 0);
      for (int64_t position : cache.position_list(h)) {
        if (position >= begin && position < end) present[static_cast<size_t>(position - begin)] = 1;
      }
      out.visual_tokens_total += end - begin;
      for (int64_t p = begin; p < end; ++p) {
        if (present[static_cast<size_t>(p - begin)]) continue;
        ++out.evicted_visual;
        const int64_t frame = layout.frame_of(p);
        if (!informative.empty() && !informative[static_cast<size_t>(frame)]) ++out.evicted_uninformative;
      }
    }
  }
  out.seconds = seconds_since(start);
  if (state_out != nullptr) *state_out = std::move(state);
  return out;
}

VideoQaOutcome answer_clip(const VideoModel& model, const SampledClip& clip, const std::vector<int64_t>& question,
                           const VideoQaOptions& options) {
  options.validate();
  const auto start = std::chrono::steady_clock::now();
  const at::Tensor pixels = clip_pixels(clip, model->config().vision.image_size);  // [K, 3, S, S]
  const at::Tensor embeds = video_prompt_embeddings(model, pixels, question);      // [T, D]
  const double encode = seconds_since(start);
  VideoQaOutcome out = answer_video_prompt(model, embeds, clip.num_frames(), static_cast<int64_t>(question.size()),
                                           options, clip.informative);
  out.encode_seconds = encode;
  out.seconds += encode;
  return out;
}

// ---------------------------------------------------------------------------
// the picture

namespace {

// geometry shared by video_qa_picture_size and the drawing
struct PictureLayout {
  int margin = 16, label_w = 56, gap = 8, text_col = 72;
  int title_h = 96;
  int tile = 112, per_row = 16, rows = 1;
  int caption_h = 50;        // two text lines and the bar under each tile
  int strip_title_h = 28, strip_row_h = 24, layers = 0;
  int legend_h = 52;
  int frames = 0;

  int cell_w() const { return tile + gap; }
  int film_w() const { return per_row * cell_w(); }
  int width() const { return 2 * margin + label_w + film_w() + text_col; }
  int film_top() const { return margin + title_h; }
  int film_h() const { return rows * (tile + caption_h); }
  int strip_top() const { return film_top() + film_h() + 8; }
  int strip_h() const { return strip_title_h + layers * strip_row_h; }
  int legend_top() const { return strip_top() + strip_h() + 12; }
  int height() const { return legend_top() + legend_h + margin; }
  // the layer strip's cell for frame f: the tile's column when all frames fit in one row
  int strip_cell_x(int f) const {
    return margin + label_w + static_cast<int>(static_cast<int64_t>(f) * film_w() / std::max(frames, 1));
  }
  int strip_cell_w(int f) const { return strip_cell_x(f + 1) - strip_cell_x(f) - (rows == 1 ? gap : 2); }
};

PictureLayout picture_layout(int64_t frames, int64_t layers, const VideoQaPictureOptions& options) {
  if (frames < 1 || layers < 1 || options.tile < 32 || options.frames_per_row < 1) {
    throw std::invalid_argument("video QA picture: need frames >= 1, layers >= 1, tile >= 32 and frames_per_row >= 1, got " +
                                std::to_string(frames) + ", " + std::to_string(layers) + ", " +
                                std::to_string(options.tile) + ", " + std::to_string(options.frames_per_row));
  }
  PictureLayout g;
  g.tile = options.tile;
  g.frames = static_cast<int>(frames);
  g.per_row = static_cast<int>(std::min<int64_t>(frames, options.frames_per_row));
  g.rows = static_cast<int>((frames + g.per_row - 1) / g.per_row);
  g.layers = static_cast<int>(layers);
  return g;
}

// viridis-like colour of a kept share in [0, 1] (BGR), from OpenCV's own map
cv::Scalar share_colour(double share) {
  static const cv::Mat lut = [] {
    cv::Mat ramp(1, 256, CV_8UC1);
    for (int i = 0; i < 256; ++i) ramp.at<uint8_t>(0, i) = static_cast<uint8_t>(i);
    cv::Mat coloured;
    cv::applyColorMap(ramp, coloured, cv::COLORMAP_VIRIDIS);
    return coloured;
  }();
  const int i = std::clamp(static_cast<int>(std::lround(share * 255.0)), 0, 255);
  const cv::Vec3b c = lut.at<cv::Vec3b>(0, i);
  return {static_cast<double>(c[0]), static_cast<double>(c[1]), static_cast<double>(c[2])};
}

void text(cv::Mat& image, const std::string& s, int x, int y, double scale, const cv::Scalar& colour,
          int thickness = 1) {
  cv::putText(image, s, {x, y}, cv::FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv::LINE_AA);
}

// the largest text scale <= scale at which s fits in width pixels
double fit_scale(const std::string& s, int width, double scale, int thickness = 1) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(s, cv::FONT_HERSHEY_SIMPLEX, scale, thickness, &baseline);
  return size.width <= width ? scale : std::max(0.25, scale * width / std::max(size.width, 1));
}

const cv::Scalar kInk{30, 30, 30};
const cv::Scalar kGrey{110, 110, 110};
const cv::Scalar kRed{40, 40, 220};
const cv::Scalar kGreen{60, 160, 60};

}  // namespace

std::pair<int, int> video_qa_picture_size(int64_t frames, int64_t layers, const VideoQaPictureOptions& options) {
  const PictureLayout g = picture_layout(frames, layers, options);
  return {g.width(), g.height()};
}

void write_video_qa_picture(const std::string& path, const SampledClip& clip, const VideoQaOutcome& outcome,
                            const VideoQaPictureCaption& caption, const VideoQaPictureOptions& options) {
  const at::Tensor kept = outcome.kept_per_frame.to(at::kDouble).contiguous();  // [L, K]
  const int64_t frames = clip.num_frames();
  if (kept.dim() != 2 || kept.size(1) != frames) {
    throw std::invalid_argument("video QA picture: kept_per_frame must be [L, " + std::to_string(frames) + "], got " +
                                c10::str(kept.sizes()));
  }
  const int64_t layers = kept.size(0);
  const PictureLayout g = picture_layout(frames, layers, options);
  cv::Mat image(g.height(), g.width(), CV_8UC3, cv::Scalar(250, 250, 250));
  const at::Tensor per_frame = kept.mean(0);  // [K] mean over layers
  const double* share = per_frame.data_ptr<double>();
  const double* grid = kept.data_ptr<double>();

  // title
  int dropped = 0;
  for (int64_t f = 0; f < frames; ++f) dropped += share[f] < options.drop_threshold ? 1 : 0;
  std::string headline = "policy " + caption.policy + "   budget " + (caption.budget.empty() ? "-" : caption.budget);
  if (caption.delay > 0) headline += "   update every " + std::to_string(caption.delay) + " tokens";
  headline += "   answer: " + (outcome.answer.empty() ? std::string("(none)") : outcome.answer);
  if (!caption.expected.empty()) {
    headline += outcome.answer == caption.expected ? "  (right)" : "  (expected " + caption.expected + ")";
  }
  const int title_w = g.width() - 2 * g.margin;
  text(image, headline, g.margin, g.margin + 22, fit_scale(headline, title_w, 0.75, 2), kInk, 2);
  const std::string question = "Q: " + caption.question;
  text(image, question, g.margin, g.margin + 50, fit_scale(question, title_w, 0.6), kInk);
  const std::string memory =
      "KV kept " + fixed(outcome.cached_tokens, 1) + " of " + std::to_string(outcome.tokens_seen) + " tokens (" +
      percent(outcome.final_cache_fraction) + "), " + fixed(outcome.kv_bytes_used / 1024.0, 1) + " of " +
      fixed(outcome.kv_bytes_full / 1024.0, 1) + " KiB;  visual tokens kept " + percent(outcome.visual_kept_fraction) +
      ";  frames dropped (<" + percent(options.drop_threshold, 0) + " kept): " + std::to_string(dropped) + " of " +
      std::to_string(frames) + ";  " + std::to_string(outcome.policy_updates) + " updates";
  text(image, memory, g.margin, g.margin + 76, fit_scale(memory, title_w, 0.55), kGrey);

  // filmstrip: each frame upscaled into its tile, with its kept share
  for (int64_t f = 0; f < frames; ++f) {
    const int row = static_cast<int>(f) / g.per_row;
    const int col = static_cast<int>(f) % g.per_row;
    const int x = g.margin + g.label_w + col * g.cell_w();
    const int y = g.film_top() + row * (g.tile + g.caption_h);
    const cv::Mat rgb(clip.height, clip.width, CV_8UC3,
                      const_cast<uint8_t*>(clip.frames_rgb[static_cast<size_t>(f)].data()));
    cv::Mat bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    // fit into the tile keeping the aspect ratio, centred
    const double scale = std::min(static_cast<double>(g.tile) / clip.width, static_cast<double>(g.tile) / clip.height);
    const int w = std::max(1, static_cast<int>(std::lround(clip.width * scale)));
    const int h = std::max(1, static_cast<int>(std::lround(clip.height * scale)));
    cv::Mat scaled;
    cv::resize(bgr, scaled, {w, h}, 0, 0, scale >= 1.0 ? cv::INTER_NEAREST : cv::INTER_AREA);
    const bool is_dropped = share[f] < options.drop_threshold;
    if (is_dropped) scaled.convertTo(scaled, -1, 0.3, 175);  // washed out
    const cv::Rect tile_rect(x, y, g.tile, g.tile);
    image(tile_rect).setTo(cv::Scalar(225, 225, 225));
    scaled.copyTo(image(cv::Rect(x + (g.tile - w) / 2, y + (g.tile - h) / 2, w, h)));
    if (is_dropped) {
      cv::line(image, {x + 6, y + 6}, {x + g.tile - 7, y + g.tile - 7}, kRed, 4, cv::LINE_AA);
      cv::line(image, {x + g.tile - 7, y + 6}, {x + 6, y + g.tile - 7}, kRed, 4, cv::LINE_AA);
      cv::rectangle(image, tile_rect, kRed, 2);
    } else {
      cv::rectangle(image, tile_rect, share_colour(share[f]), 2);
    }
    if (!clip.informative.empty() && clip.informative[static_cast<size_t>(f)]) {
      // the generator's mark: the event is visible here
      image(cv::Rect(x + 2, y + 2, std::min(50, g.tile - 4), 18)).setTo(kGreen);
      text(image, "event", x + 5, y + 16, 0.45, cv::Scalar(255, 255, 255), 1);
    }
    const double t = f < static_cast<int64_t>(clip.timestamps.size()) ? clip.timestamps[static_cast<size_t>(f)] : 0.0;
    const int64_t index = f < static_cast<int64_t>(clip.frame_indices.size()) ? clip.frame_indices[static_cast<size_t>(f)] : f;
    const std::string label = "#" + std::to_string(index) + "  " + fixed(t, 2) + "s";
    text(image, label, x, y + g.tile + 15, fit_scale(label, g.tile, 0.42), kGrey);
    const std::string kept_label = "kept " + percent(share[f], 0);
    text(image, kept_label, x, y + g.tile + 32, 0.5, is_dropped ? kRed : kInk, is_dropped ? 2 : 1);
    const cv::Rect bar(x, y + g.tile + 38, g.tile, 8);
    image(bar).setTo(cv::Scalar(215, 215, 215));
    const int filled = static_cast<int>(std::lround(share[f] * g.tile));
    if (filled > 0) image(cv::Rect(x, bar.y, filled, bar.height)).setTo(is_dropped ? kRed : share_colour(share[f]));
  }
  if (g.rows >= 1) text(image, "frames", g.margin, g.film_top() + g.tile / 2, 0.45, kGrey);

  // per-layer strip: rows = layers, cells = frames, then the text tokens
  const int strip_y = g.strip_top();
  text(image, "kept share of each frame's visual tokens per layer (mean over KV heads); last column: prompt text tokens",
       g.margin, strip_y + 18, 0.5, kInk);
  for (int l = 0; l < g.layers; ++l) {
    const int y = strip_y + g.strip_title_h + l * g.strip_row_h;
    text(image, "layer " + std::to_string(l), g.margin, y + 16, 0.45, kGrey);
    for (int f = 0; f < g.frames; ++f) {
      const double v = grid[static_cast<int64_t>(l) * frames + f];
      const cv::Rect cell(g.strip_cell_x(f), y, std::max(g.strip_cell_w(f), 2), g.strip_row_h - 3);
      image(cell).setTo(share_colour(v));
      if (v < options.drop_threshold) cv::rectangle(image, cell, kRed, 2);
      if (cell.width >= 34) {
        const cv::Scalar ink = v > 0.6 ? kInk : cv::Scalar(245, 245, 245);
        text(image, percent(v, 0), cell.x + 4, y + 15, 0.4, ink);
      }
    }
    const double t = static_cast<size_t>(l) < outcome.kept_text.size() ? outcome.kept_text[static_cast<size_t>(l)] : 1.0;
    const cv::Rect cell(g.margin + g.label_w + g.film_w(), y, g.text_col - 4, g.strip_row_h - 3);
    image(cell).setTo(share_colour(t));
    text(image, "txt " + percent(t, 0), cell.x + 3, y + 15, 0.38, t > 0.6 ? kInk : cv::Scalar(245, 245, 245));
  }

  // colour scale and the dropped mark
  const int ly = g.legend_top();
  const int lx = g.margin + g.label_w;
  const int lw = std::min(320, g.film_w() / 2);
  for (int i = 0; i < lw; ++i) {
    cv::line(image, {lx + i, ly}, {lx + i, ly + 14}, share_colour(static_cast<double>(i) / (lw - 1)));
  }
  text(image, "0%", lx, ly + 32, 0.45, kGrey);
  text(image, "kept", lx + lw / 2 - 16, ly + 32, 0.45, kGrey);
  text(image, "100%", lx + lw - 38, ly + 32, 0.45, kGrey);
  const int mx = lx + lw + 40;
  cv::rectangle(image, cv::Rect(mx, ly, 28, 16), kRed, 2);
  cv::line(image, {mx + 3, ly + 3}, {mx + 25, ly + 13}, kRed, 2);
  cv::line(image, {mx + 25, ly + 3}, {mx + 3, ly + 13}, kRed, 2);
  text(image, "dropped frame: under " + percent(options.drop_threshold, 0) + " of its visual tokens kept",
       mx + 38, ly + 14, 0.45, kGrey);
  if (!clip.informative.empty()) {
    text(image, "event: the generator marked this frame informative", mx + 38, ly + 36, 0.45, kGreen);
  }
  text(image, clip.source, g.margin, g.height() - 8, fit_scale(clip.source, g.width() - 2 * g.margin, 0.4), kGrey);

  std::vector<uint8_t> png;
  if (!cv::imencode(".png", image, png)) throw std::runtime_error(path + ": cannot encode PNG");
  write_file_atomically(path, std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
}

// ---------------------------------------------------------------------------
// evaluation

void VideoEvalOptions::validate() const {
  auto fail = [](const std::string& what) { throw std::invalid_argument("VideoEvalOptions: " + what); };
  for (const std::string& kind : kinds) scene_choices(kind);  // throws for an unknown kind
  if (count < 1) fail("count must be >= 1, got " + std::to_string(count));
  if (frames < 1) fail("frames must be >= 1, got " + std::to_string(frames));
  if (threads < 1) fail("threads must be >= 1, got " + std::to_string(threads));
  if (policies.empty()) fail("no policies");
  const std::vector<std::string>& names = policy_names();
  for (const std::string& p : policies) {
    if (std::find(names.begin(), names.end(), p) == names.end()) fail("unknown policy '" + p + "'");
  }
  if (index_path.empty()) {
    SceneOptions s = scene;
    s.sample_frames = static_cast<int>(frames);
    check_scene_options(s);
  }
  VideoQaOptions qa_check = qa;
  qa_check.policy = PolicySpec{};
  qa_check.validate();
}

namespace {

// one clip of the evaluation, encoded once and answered under every policy
struct EvalItem {
  std::string kind;
  std::string split;
  std::vector<int64_t> question, answer;
  double chance = 0.0;
  std::vector<bool> informative;  // [K]
  at::Tensor embeds;              // [T, D]
};

}  // namespace

VideoEvaluation evaluate_video(const VideoModel& model, std::shared_ptr<const NammModel> namm,
                               const VideoEvalOptions& options, std::ostream* progress) {
  options.validate();
  const std::vector<std::string> kinds = options.kinds.empty() ? scene_kinds() : options.kinds;
  const Tokenizer& tokenizer = builtin_tokenizer();
  const int64_t image_size = model->config().vision.image_size;

  // the clips: scenes rendered in memory, or the entries of an index
  struct Source {
    std::string kind;
    int64_t index = 0;
    const SceneIndexEntry* entry = nullptr;
  };
  std::vector<Source> sources;
  SceneIndex scene_index;
  if (options.index_path.empty()) {
    for (const std::string& kind : kinds) {
      for (int64_t i = 0; i < options.count; ++i) sources.push_back({kind, i, nullptr});
    }
  } else {
    scene_index = read_scene_index(options.index_path);
    for (const std::string& kind : kinds) {
      int64_t taken = 0;
      for (const SceneIndexEntry& entry : scene_index.clips) {
        if (entry.kind != kind || taken >= options.count) continue;
        sources.push_back({kind, entry.index, &entry});
        ++taken;
      }
    }
    if (sources.empty()) throw std::runtime_error(options.index_path + ": no clip of the requested kinds");
  }
  const auto num_clips = static_cast<int64_t>(sources.size());
  std::vector<EvalItem> items(static_cast<size_t>(num_clips));
  SceneOptions scene_options = options.scene;
  scene_options.sample_frames = static_cast<int>(options.frames);
  const fs::path index_dir = options.index_path.empty() ? fs::path() : fs::path(options.index_path).parent_path();

  auto start = std::chrono::steady_clock::now();
  parallel_for_items(num_clips, options.threads, [&](int64_t c) {
    const Source& source = sources[static_cast<size_t>(c)];
    EvalItem& item = items[static_cast<size_t>(c)];
    item.kind = source.kind;
    SampledClip clip;
    std::string question, answer;
    size_t choices = 0;
    if (source.entry == nullptr) {
      const VideoScene scene = make_scene(source.kind, options.split, source.index, scene_options);
      clip = sample_scene(scene, options.frames);
      question = scene.question;
      answer = scene.answer;
      choices = scene.choices.size();
      item.split = to_string(options.split);
    } else {
      const SceneIndexEntry& e = *source.entry;
      clip = read_clip((index_dir / e.clip).string(), options.frames, &e.informative_frames);
      question = e.question;
      answer = e.answer;
      choices = e.choices.size();
      item.split = to_string(e.split);
    }
    item.question = tokenizer.encode(question);
    item.answer = tokenizer.encode(answer);
    item.chance = choices > 0 ? 1.0 / static_cast<double>(choices) : 0.0;
    item.informative = clip.informative;
    item.embeds = video_prompt_embeddings(model, clip_pixels(clip, image_size), item.question);  // [T, D]
  });

  VideoEvaluation result;
  result.source = options.index_path.empty() ? "rendered" : options.index_path;
  result.clips = num_clips;
  result.frames = options.frames;
  result.delay = options.qa.delay;
  result.kinds = kinds;
  result.encode_seconds_per_clip = seconds_since(start) / static_cast<double>(num_clips);
  result.split = items.front().split;
  double uninformative = 0.0;
  for (const EvalItem& item : items) {
    if (item.split != result.split) result.split = "mixed";
    result.chance += item.chance;
    double u = 0.0;
    for (bool informative : item.informative) u += informative ? 0.0 : 1.0;
    uninformative += item.informative.empty() ? std::numeric_limits<double>::quiet_NaN()
                                              : u / static_cast<double>(item.informative.size());
  }
  result.chance /= static_cast<double>(num_clips);
  result.uninformative_visual_share = uninformative / static_cast<double>(num_clips);

  // the NAMM first: its measured memory sets the baselines' budget
  std::vector<std::string> order;
  const bool has_namm = std::find(options.policies.begin(), options.policies.end(), "namm") != options.policies.end();
  if (has_namm) {
    if (!namm) throw std::invalid_argument("evaluate_video: policy namm listed but no NAMM model given");
    order.push_back("namm");
  }
  for (const std::string& p : options.policies) {
    if (p != "namm") order.push_back(p);
  }
  Budget budget = options.fallback_budget;
  std::map<std::string, VideoEvalRow> rows;
  for (const std::string& name : order) {
    VideoQaOptions qa = options.qa;
    qa.policy = PolicySpec{};
    qa.policy.name = name;
    qa.policy.budget = budget;
    qa.policy.namm_model = namm;
    std::vector<VideoQaOutcome> outcomes(static_cast<size_t>(num_clips));
    start = std::chrono::steady_clock::now();
    parallel_for_items(num_clips, options.threads, [&](int64_t c) {
      const EvalItem& item = items[static_cast<size_t>(c)];
      VideoQaOptions mine = qa;
      mine.policy.seed = options.seed + static_cast<uint64_t>(c);
      outcomes[static_cast<size_t>(c)] =
          answer_video_prompt(model, item.embeds, options.frames, static_cast<int64_t>(item.question.size()), mine,
                              item.informative);
    });
    const double seconds = seconds_since(start);

    VideoEvalRow row;
    row.policy = name;
    row.budget = name == "full" || name == "namm" ? "-" : budget.to_string();
    int64_t correct = 0;
    double retained = 0, final_cache = 0, visual = 0, answer_seconds = 0;
    for (int64_t c = 0; c < num_clips; ++c) {
      const EvalItem& item = items[static_cast<size_t>(c)];
      const VideoQaOutcome& o = outcomes[static_cast<size_t>(c)];
      const bool right = o.answer_ids == item.answer;
      VideoKindScore& k = row.kinds[item.kind];
      k.clips += 1;
      k.correct += right ? 1 : 0;
      k.chance += item.chance;
      correct += right ? 1 : 0;
      retained += o.retained_fraction;
      final_cache += o.final_cache_fraction;
      visual += o.visual_kept_fraction;
      row.evicted_visual += o.evicted_visual;
      row.evicted_uninformative += o.evicted_uninformative;
      answer_seconds += o.seconds;
    }
    for (auto& [kind, k] : row.kinds) {
      k.accuracy = static_cast<double>(k.correct) / static_cast<double>(k.clips);
      k.chance /= static_cast<double>(k.clips);
    }
    const auto n = static_cast<double>(num_clips);
    row.accuracy = static_cast<double>(correct) / n;
    row.mean_retained_fraction = retained / n;
    row.mean_final_cache_fraction = final_cache / n;
    row.mean_visual_kept_fraction = visual / n;
    const bool marks_known = std::all_of(items.begin(), items.end(), [](const EvalItem& i) { return !i.informative.empty(); });
    row.uninformative_eviction_share =
        row.evicted_visual > 0 && marks_known
            ? static_cast<double>(row.evicted_uninformative) / static_cast<double>(row.evicted_visual)
            : std::numeric_limits<double>::quiet_NaN();
    row.seconds_per_clip = answer_seconds / n;
    if (name == "namm") {
      result.namm_retained_fraction = row.mean_retained_fraction;
      budget = Budget{0, std::clamp(row.mean_retained_fraction, 1e-6, 1.0)};
    }
    if (progress != nullptr) {
      *progress << std::left << std::setw(10) << name << " accuracy " << percent(row.accuracy) << "  KV retained "
                << percent(row.mean_retained_fraction) << " (at answer " << percent(row.mean_final_cache_fraction)
                << ")  evicted visual from uninformative frames " << percent(row.uninformative_eviction_share)
                << "  budget " << row.budget << "  (" << fixed(seconds, 1) << " s)\n"
                << std::flush;
    }
    rows[name] = std::move(row);
  }
  for (const std::string& name : options.policies) result.rows.push_back(rows.at(name));
  return result;
}

std::string VideoEvaluation::to_json() const {
  json out;
  out["split"] = split;
  out["source"] = source;
  out["clips"] = clips;
  out["frames"] = frames;
  out["delay"] = delay;
  out["kinds"] = kinds;
  out["chance"] = chance;
  out["uninformative_visual_share"] = number_or_null(uninformative_visual_share);
  out["namm_retained_fraction"] = namm_retained_fraction;
  out["encode_seconds_per_clip"] = encode_seconds_per_clip;
  out["rows"] = json::array();
  for (const VideoEvalRow& row : rows) {
    json r;
    r["policy"] = row.policy;
    r["budget"] = row.budget;
    r["accuracy"] = row.accuracy;
    json k = json::object();
    for (const auto& [kind, score] : row.kinds) {
      k[kind] = {{"clips", score.clips}, {"correct", score.correct}, {"accuracy", score.accuracy},
                 {"chance", score.chance}};
    }
    r["kinds"] = k;
    r["mean_retained_fraction"] = row.mean_retained_fraction;
    r["mean_final_cache_fraction"] = row.mean_final_cache_fraction;
    r["mean_visual_kept_fraction"] = row.mean_visual_kept_fraction;
    r["evicted_visual"] = row.evicted_visual;
    r["evicted_uninformative"] = row.evicted_uninformative;
    r["uninformative_eviction_share"] = number_or_null(row.uninformative_eviction_share);
    r["seconds_per_clip"] = row.seconds_per_clip;
    out["rows"].push_back(r);
  }
  return out.dump(2);
}

std::string VideoEvaluation::to_markdown() const {
  std::ostringstream out;
  out << "Video QA, " << split << " split (" << source << "): " << clips << " clips, " << frames
      << " frames each, memory update every " << delay << " tokens.\n"
      << "Accuracy is exact match of the greedy answer; chance = 1 / choices. KV retained: mean over policy updates of "
         "cached / seen tokens; at answer: cached when the answer is read. Last column: share of the evicted visual "
         "tokens that came from frames without the event (frame-blind eviction gives "
      << percent(uninformative_visual_share) << ").\n\n";
  out << "| policy | budget | accuracy |";
  for (const std::string& kind : kinds) out << " " << kind << " |";
  out << " KV retained | KV at answer | visual kept | evicted from uninformative frames |\n|---|---|---|";
  for (size_t i = 0; i < kinds.size(); ++i) out << "---|";
  out << "---|---|---|---|\n";
  out << "| chance | | " << percent(chance) << " |";
  for (const std::string& kind : kinds) {
    double c = 0.0;
    for (const VideoEvalRow& row : rows) {
      const auto it = row.kinds.find(kind);
      if (it != row.kinds.end()) c = it->second.chance;
    }
    out << " " << percent(c) << " |";
  }
  out << " | | | |\n";
  for (const VideoEvalRow& row : rows) {
    out << "| " << row.policy << " | " << row.budget << " | " << percent(row.accuracy) << " |";
    for (const std::string& kind : kinds) {
      const auto it = row.kinds.find(kind);
      out << " " << (it == row.kinds.end() ? "-" : percent(it->second.accuracy)) << " |";
    }
    out << " " << percent(row.mean_retained_fraction) << " | " << percent(row.mean_final_cache_fraction) << " | "
        << percent(row.mean_visual_kept_fraction) << " | " << percent(row.uninformative_eviction_share) << " |\n";
  }
  return out.str();
}

}  // namespace namm
