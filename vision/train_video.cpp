// train_video: see train_video.h
#include "vision/train_video.h"

#include "core/adamw_state.h"
#include "core/atomic_file.h"
#include "core/parse_number.h"
#include "core/run_lock.h"
#include "core/run_record.h"
#include "core/safetensors.h"
#include "text/llama_checkpoint.h"
#include "text/text_eval.h"
#include "text/tokenizer.h"
#include "vision/llava_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>
#include <torch/optim/adamw.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace namm {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kStateFile = kTrainerStateFile;
constexpr const char* kStateFormat = "namm-train-video-state";
constexpr double kPi = 3.14159265358979323846;

/// A hash of (seed, step, slot): the data of a step never depends on earlier steps.
uint64_t step_hash(uint64_t seed, int64_t step, int64_t slot) {
  return namm::step_hash(0x5d1f0e7c3a9b2461ull, seed, step, slot);
}

void check(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("TrainVideoOptions: " + message);
}

template <class T>
std::string str(const T& v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// the options as JSON (one place, so to_json, from_json and resume checks agree)
json options_json(const TrainVideoOptions& o) {
  return json{{"lm_dir", o.lm_dir},
              {"lm_layers", o.lm_layers},
              {"lm_hidden", o.lm_hidden},
              {"lm_heads", o.lm_heads},
              {"lm_kv_heads", o.lm_kv_heads},
              {"lm_intermediate", o.lm_intermediate},
              {"vision_layers", o.vision_layers},
              {"vision_width", o.vision_width},
              {"vision_heads", o.vision_heads},
              {"vision_mlp", o.vision_mlp},
              {"image_size", o.image_size},
              {"patch_size", o.patch_size},
              {"kinds", o.kinds},
              {"frames", o.frames},
              {"scene_size", o.scene_size},
              {"scene_seconds", o.scene_seconds},
              {"scene_fps", o.scene_fps},
              {"batch", o.batch},
              {"steps", o.steps},
              {"lr", o.lr},
              {"lm_lr_scale", o.lm_lr_scale},
              {"min_lr_ratio", o.min_lr_ratio},
              {"warmup_steps", o.warmup_steps},
              {"weight_decay", o.weight_decay},
              {"beta1", o.beta1},
              {"beta2", o.beta2},
              {"grad_clip", o.grad_clip},
              {"seed", o.seed},
              {"init_from", o.init_from},
              {"threads", o.threads},
              {"log_every", o.log_every},
              {"checkpoint_every", o.checkpoint_every},
              {"eval_count", o.eval_count},
              {"delay", o.delay},
              {"out_dir", o.out_dir},
              {"command_line", o.command_line}};
}

// fields that shape the weights or the data: they must match to resume
const std::vector<std::string>& resume_fields() {
  static const std::vector<std::string> fields = {
      "lm_layers",  "lm_hidden",   "lm_heads",      "lm_kv_heads",  "lm_intermediate", "vision_layers",
      "vision_width", "vision_heads", "vision_mlp", "image_size",   "patch_size",      "kinds",
      "frames",     "scene_size",  "scene_seconds", "scene_fps",    "batch",           "steps",
      "lr",         "lm_lr_scale", "min_lr_ratio",  "warmup_steps", "weight_decay",    "beta1",
      "beta2",      "grad_clip",   "seed"};
  return fields;
}

}  // namespace

// ---------------------------------------------------------------------------
// options

std::vector<std::string> TrainVideoOptions::kind_list() const { return kinds.empty() ? scene_kinds() : kinds; }

SceneOptions TrainVideoOptions::scene_options() const {
  SceneOptions s;
  s.size = scene_size;
  s.seconds = scene_seconds;
  s.fps = scene_fps;
  s.sample_frames = static_cast<int>(frames);
  return s;
}

LlamaConfig TrainVideoOptions::fresh_lm_config() const {
  LlamaConfig c;
  c.vocab_size = builtin_tokenizer().vocab_size();
  c.hidden_size = lm_hidden;
  c.intermediate_size = lm_intermediate;
  c.num_hidden_layers = lm_layers;
  c.num_attention_heads = lm_heads;
  c.num_key_value_heads = lm_kv_heads;
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 16384;
  c.tie_word_embeddings = false;
  return c;
}

VideoModelConfig TrainVideoOptions::model_config(const LlamaConfig& text) const {
  VideoModelConfig c = default_video_model_config(text);
  c.vision.num_hidden_layers = vision_layers;
  c.vision.hidden_size = vision_width;
  c.vision.num_attention_heads = vision_heads;
  c.vision.intermediate_size = vision_mlp;
  c.vision.image_size = image_size;
  c.vision.patch_size = patch_size;
  return c;
}

void TrainVideoOptions::validate() const {
  check(lm_layers >= 1, "lm_layers must be >= 1, got " + str(lm_layers));
  check(lm_heads >= 1 && lm_hidden % lm_heads == 0 && (lm_hidden / lm_heads) % 2 == 0,
        "lm_heads must divide lm_hidden into even head widths, got " + str(lm_heads) + ", " + str(lm_hidden));
  check(lm_kv_heads >= 1 && lm_heads % lm_kv_heads == 0,
        "lm_kv_heads must divide lm_heads, got " + str(lm_kv_heads) + ", " + str(lm_heads));
  check(lm_intermediate >= 1, "lm_intermediate must be >= 1, got " + str(lm_intermediate));
  check(vision_layers >= 2, "vision_layers must be >= 2 (features come from the penultimate layer), got " +
                                str(vision_layers));
  check(vision_heads >= 1 && vision_width % vision_heads == 0,
        "vision_heads must divide vision_width, got " + str(vision_heads) + ", " + str(vision_width));
  check(vision_mlp >= 1, "vision_mlp must be >= 1, got " + str(vision_mlp));
  check(patch_size >= 1 && image_size >= patch_size && image_size % patch_size == 0 && image_size / patch_size >= 2,
        "image_size must be a multiple of patch_size with at least 2x2 patches, got " + str(image_size) + " and " +
            str(patch_size));
  for (const std::string& kind : kind_list()) scene_choices(kind);  // throws for an unknown kind
  check(frames >= 2, "frames must be >= 2, got " + str(frames));
  check_scene_options(scene_options());
  check(batch >= 1, "batch must be >= 1, got " + str(batch));
  check(steps >= 1, "steps must be >= 1, got " + str(steps));
  check(lr > 0 && std::isfinite(lr), "lr must be > 0, got " + str(lr));
  check(lm_lr_scale >= 0 && std::isfinite(lm_lr_scale), "lm_lr_scale must be >= 0, got " + str(lm_lr_scale));
  check(min_lr_ratio >= 0 && min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1], got " + str(min_lr_ratio));
  check(warmup_steps >= 0, "warmup_steps must be >= 0, got " + str(warmup_steps));
  check(weight_decay >= 0, "weight_decay must be >= 0, got " + str(weight_decay));
  check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
        "betas must be in [0, 1), got " + str(beta1) + ", " + str(beta2));
  check(grad_clip >= 0, "grad_clip must be >= 0, got " + str(grad_clip));
  check(threads >= 1, "threads must be >= 1, got " + str(threads));
  check(log_every >= 1, "log_every must be >= 1, got " + str(log_every));
  check(checkpoint_every >= 1, "checkpoint_every must be >= 1, got " + str(checkpoint_every));
  check(eval_count >= 0, "eval_count must be >= 0, got " + str(eval_count));
  check(delay >= 1, "delay must be >= 1, got " + str(delay));
  check(!out_dir.empty(), "out_dir is empty");
}

std::string TrainVideoOptions::to_json() const { return options_json(*this).dump(2); }

TrainVideoOptions TrainVideoOptions::from_json(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": not JSON: " + e.what());
  }
  TrainVideoOptions o;
  try {
    auto get = [&](const char* key, auto& field) {
      if (j.contains(key)) field = j.at(key).get<std::decay_t<decltype(field)>>();
    };
    get("lm_dir", o.lm_dir);
    get("lm_layers", o.lm_layers);
    get("lm_hidden", o.lm_hidden);
    get("lm_heads", o.lm_heads);
    get("lm_kv_heads", o.lm_kv_heads);
    get("lm_intermediate", o.lm_intermediate);
    get("vision_layers", o.vision_layers);
    get("vision_width", o.vision_width);
    get("vision_heads", o.vision_heads);
    get("vision_mlp", o.vision_mlp);
    get("image_size", o.image_size);
    get("patch_size", o.patch_size);
    get("kinds", o.kinds);
    get("frames", o.frames);
    get("scene_size", o.scene_size);
    get("scene_seconds", o.scene_seconds);
    get("scene_fps", o.scene_fps);
    get("batch", o.batch);
    get("steps", o.steps);
    get("lr", o.lr);
    get("lm_lr_scale", o.lm_lr_scale);
    get("min_lr_ratio", o.min_lr_ratio);
    get("warmup_steps", o.warmup_steps);
    get("weight_decay", o.weight_decay);
    get("beta1", o.beta1);
    get("beta2", o.beta2);
    get("grad_clip", o.grad_clip);
    get("seed", o.seed);
    get("init_from", o.init_from);
    get("threads", o.threads);
    get("log_every", o.log_every);
    get("checkpoint_every", o.checkpoint_every);
    get("eval_count", o.eval_count);
    get("delay", o.delay);
    get("out_dir", o.out_dir);
    get("command_line", o.command_line);
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": bad field: " + e.what());
  }
  return o;
}

std::vector<std::string> TrainVideoOptions::resume_mismatches(const TrainVideoOptions& saved) const {
  const json now = options_json(*this);
  const json then = options_json(saved);
  std::vector<std::string> out;
  for (const std::string& field : resume_fields()) {
    if (now.at(field) != then.at(field)) {
      out.push_back(field + ": saved " + then.at(field).dump() + ", now " + now.at(field).dump());
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// data

VideoTrainBatch make_video_train_batch(const TrainVideoOptions& options, int64_t step) {
  const std::vector<std::string> kinds = options.kind_list();
  const SceneOptions scene_options = options.scene_options();
  const Tokenizer& tokenizer = builtin_tokenizer();
  const auto num_kinds = static_cast<uint64_t>(kinds.size());
  const uint64_t offset = step_hash(options.seed, step, -1) % num_kinds;
  VideoTrainBatch out;
  std::vector<at::Tensor> pixels;
  std::vector<std::vector<int64_t>> questions, answers;
  for (int64_t slot = 0; slot < options.batch; ++slot) {
    const std::string& kind = kinds[static_cast<size_t>((offset + static_cast<uint64_t>(slot)) % num_kinds)];
    const auto index = static_cast<int64_t>(step_hash(options.seed, step, slot) >> 24);  // < 2^40
    const VideoScene scene = make_scene(kind, Split::kTrain, index, scene_options);
    const SampledClip clip = sample_scene(scene, options.frames);
    pixels.push_back(clip_pixels(clip, options.image_size));  // [K, 3, S, S]
    questions.push_back(tokenizer.encode(scene.question));
    answers.push_back(tokenizer.encode(scene.answer));
    out.kinds.push_back(kind);
    out.indices.push_back(index);
  }
  out.batch = make_video_qa_batch(at::stack(pixels), questions, answers);  // pixels [B, K, 3, S, S]
  return out;
}

double video_learning_rate(const TrainVideoOptions& options, int64_t step) {
  if (step < options.warmup_steps) {
    return options.lr * static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps + 1);
  }
  const double span = static_cast<double>(std::max<int64_t>(options.steps - options.warmup_steps, 1));
  const double progress = std::clamp(static_cast<double>(step - options.warmup_steps) / span, 0.0, 1.0);
  const double floor = options.lr * options.min_lr_ratio;
  return floor + (options.lr - floor) * 0.5 * (1.0 + std::cos(kPi * progress));
}

// ---------------------------------------------------------------------------
// trainer

struct VideoTrainer::Optim {
  std::vector<std::string> names;      // HF names of every saved tensor
  std::vector<at::Tensor> parameters;  // same order
  std::vector<bool> trained;           // whether the optimizer holds it (image_newline is unused)
  std::vector<double> group_scale;     // per AdamW group: lr multiplier
  std::unique_ptr<torch::optim::AdamW> adamw;
};

VideoTrainer::VideoTrainer(TrainVideoOptions options, std::ostream* progress)
    : options_(std::move(options)), progress_(progress), optim_(std::make_unique<Optim>()) {
  options_.validate();
  // before any work: one run per folder, and never over a trained model
  run_lock_ = claim_training_folder(options_.out_dir, options_.init_from, options_.force);
  session_start_ = now_seconds();
  at::set_num_threads(options_.threads);
  git_commit_ = git_commit();

  LlamaCheckpoint lm;
  const bool from_lm = !options_.lm_dir.empty();
  if (from_lm) {
    lm.model = load_task_model(options_.lm_dir);  // checks the vocabulary
    lm.config = lm.model->config();
    const fs::path record = fs::path(options_.lm_dir) / "provenance.json";
    if (fs::exists(record)) lm_provenance_json_ = read_file(record.string());
  }
  {
    // initial weights are a function of the seed alone, then the language host's are copied in
    at::manual_seed(options_.seed);
    model_ = VideoModel(options_.model_config(from_lm ? lm.config : options_.fresh_lm_config()));
  }
  if (from_lm) {
    at::NoGradGuard no_grad;
    const auto source = lm.model->hf_named_parameters();
    const auto target = model_->language_model->hf_named_parameters();
    for (size_t i = 0; i < target.size(); ++i) {
      TORCH_CHECK(source[i].first == target[i].first && source[i].second.sizes() == target[i].second.sizes(),
                  options_.lm_dir, ": tensor ", source[i].first, " does not fit the video model's ", target[i].first);
      target[i].second.copy_(source[i].second);
    }
  }

  if (!options_.init_from.empty() && !fs::exists(fs::path(options_.out_dir) / kStateFile)) {
    // an earlier stage's weights; the optimizer starts afresh
    const LlavaCheckpoint start = load_llava_checkpoint(options_.init_from);
    const auto source = start.model->hf_named_parameters();
    at::NoGradGuard no_grad;
    for (const auto& [name, p] : model_->hf_named_parameters()) {
      const auto it = std::find_if(source.begin(), source.end(), [&](const auto& item) { return item.first == name; });
      if (it == source.end() || !it->second.sizes().equals(p.sizes())) {
        throw std::runtime_error(options_.init_from + ": cannot start from it: tensor " + name +
                                 (it == source.end() ? " is missing"
                                                     : " has shape " + c10::str(it->second.sizes()) + ", the run needs " +
                                                           c10::str(p.sizes())));
      }
      p.copy_(it->second);
    }
  }

  std::vector<at::Tensor> groups_params[4];  // {tower+projector, LM} x {decay, no decay}
  for (const auto& [name, p] : model_->hf_named_parameters()) {
    optim_->names.push_back(name);
    optim_->parameters.push_back(p);
    const bool trained = name != "image_newline";
    optim_->trained.push_back(trained);
    if (!trained) continue;
    const bool is_lm = name.rfind("language_model.", 0) == 0;
    groups_params[(is_lm ? 2 : 0) + (p.dim() >= 2 ? 0 : 1)].push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (int g = 0; g < 4; ++g) {
    if (groups_params[g].empty()) continue;
    const bool is_lm = g >= 2;
    if (is_lm && options_.lm_lr_scale == 0) {
      for (at::Tensor& p : groups_params[g]) p.requires_grad_(false);  // a frozen language model
      continue;
    }
    auto adam = std::make_unique<torch::optim::AdamWOptions>(options_.lr);
    adam->betas({options_.beta1, options_.beta2}).eps(1e-8).weight_decay(g % 2 == 0 ? options_.weight_decay : 0.0);
    groups.emplace_back(groups_params[g], std::move(adam));
    optim_->group_scale.push_back(is_lm ? options_.lm_lr_scale : 1.0);
  }
  optim_->adamw = std::make_unique<torch::optim::AdamW>(groups);

  fs::create_directories(options_.out_dir);
  const std::string state_path = (fs::path(options_.out_dir) / kStateFile).string();
  if (fs::exists(state_path)) resume(state_path);
  write_file_atomically((fs::path(options_.out_dir) / "options.json").string(), options_.to_json() + "\n");
  if (progress_ != nullptr) {
    const VideoModelParameterCounts counts = model_->parameter_counts();
    *progress_ << (resumed_ ? "resuming " : "training ") << "video model in " << options_.out_dir
               << (resumed_ ? " from step " + std::to_string(step_) : "") << ", " << options_.threads << " thread"
               << (options_.threads == 1 ? "" : "s") << "\n"
               << model_->config().summary() << "\nparameters: tower " << counts.vision << ", projector "
               << counts.projector << ", language model " << counts.language
               << (from_lm ? " (from " + options_.lm_dir + ")" : " (fresh)") << "\n"
               << std::flush;
  }
}

VideoTrainer::~VideoTrainer() = default;

void VideoTrainer::resume(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);
  auto meta = [&](const std::string& key) {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw std::runtime_error(path + ": not a train-video state (no '" + key + "' metadata)");
    return it->second;
  };
  if (meta("format") != kStateFormat) {
    throw std::runtime_error(path + ": not a train-video state (format '" + meta("format") + "')");
  }
  const TrainVideoOptions saved = TrainVideoOptions::from_json(meta("options"), path);
  throw_if_resume_options_differ(path, options_.resume_mismatches(saved));
  restore_adamw_state(file, *optim_->adamw, optim_->parameters, optim_->names, optim_->trained);
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  generator.set_state(file.at("rng/torch_cpu"));
  try {
    step_ = parse_int64(meta("step"), path + ": metadata step");
    clips_seen_ = parse_int64(meta("clips_seen"), path + ": metadata clips_seen");
    elapsed_before_ = parse_finite_double(meta("elapsed_seconds"), path + ": metadata elapsed_seconds");
  } catch (const std::logic_error&) {
    throw std::runtime_error(path + ": bad step / clips_seen / elapsed_seconds metadata");
  }
  resumed_ = true;
  const fs::path eval_path = fs::path(options_.out_dir) / "eval.json";
  if (fs::exists(eval_path)) last_eval_json_ = read_file(eval_path.string());

  // records past the checkpoint belong to the interrupted session and will be redone
  keep_log_records_up_to((fs::path(options_.out_dir) / "train_log.jsonl").string(), step_);
}

VideoStepStats VideoTrainer::train_step() {
  const double start = now_seconds();
  const VideoTrainBatch data = make_video_train_batch(options_, step_);
  const double data_seconds = now_seconds() - start;
  const double lr = video_learning_rate(options_, step_);
  auto& groups = optim_->adamw->param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    static_cast<torch::optim::AdamWOptions&>(groups[g].options()).lr(lr * optim_->group_scale[g]);
  }

  optim_->adamw->zero_grad();
  const VideoLoss loss = model_->answer_loss(data.batch);
  const double loss_value = loss.loss.item<double>();
  if (!std::isfinite(loss_value)) {
    throw std::runtime_error("train-video: loss is " + str(loss_value) + " at step " + str(step_) + "; lower --lr");
  }
  loss.loss.backward();

  // global norm clipping, as torch.nn.utils.clip_grad_norm_
  double grad_norm = 0;
  {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> norms;
    for (const at::Tensor& p : optim_->parameters) {
      if (p.grad().defined()) norms.push_back(p.grad().norm());
    }
    grad_norm = norms.empty() ? 0.0 : at::stack(norms).norm().item<double>();
    if (options_.grad_clip > 0 && grad_norm > options_.grad_clip) {
      const double scale = options_.grad_clip / (grad_norm + 1e-6);
      for (const at::Tensor& p : optim_->parameters) {
        if (p.grad().defined()) p.grad().mul_(scale);
      }
    }
  }
  optim_->adamw->step();
  ++step_;
  clips_seen_ += options_.batch;

  VideoStepStats stats;
  stats.step = step_;
  stats.loss = loss_value;
  stats.grad_norm = grad_norm;
  stats.lr = lr;
  stats.clips = options_.batch;
  stats.per_kind["all"] = {loss.correct_answers, options_.batch};
  stats.data_seconds = data_seconds;
  stats.seconds = now_seconds() - start;
  log_progress(stats);
  if (step_ % options_.checkpoint_every == 0 || step_ == options_.steps) save_checkpoint();
  return stats;
}

void VideoTrainer::log_progress(const VideoStepStats& stats) {
  window_.push_back(stats);
  if (step_ % options_.log_every != 0 && step_ != options_.steps) return;
  double loss = 0, seconds = 0, data_seconds = 0, grad = 0;
  int64_t right = 0, clips = 0;
  for (const VideoStepStats& s : window_) {
    loss += s.loss;
    seconds += s.seconds;
    data_seconds += s.data_seconds;
    grad += s.grad_norm;
    for (const auto& [kind, c] : s.per_kind) {
      right += c[0];
      clips += c[1];
    }
  }
  const double n = static_cast<double>(window_.size());
  const double elapsed = elapsed_before_ + now_seconds() - session_start_;
  const double eta = seconds / n * static_cast<double>(options_.steps - step_);
  const double accuracy = clips > 0 ? static_cast<double>(right) / static_cast<double>(clips) : 0.0;
  const json record = {{"kind", "train"},
                       {"step", step_},
                       {"steps", options_.steps},
                       {"loss", loss / n},
                       {"answer_acc", accuracy},
                       {"grad_norm", grad / n},
                       {"lr", stats.lr},
                       {"seconds_per_step", seconds / n},
                       {"data_seconds_per_step", data_seconds / n},
                       {"clips_seen", clips_seen_},
                       {"elapsed_seconds", elapsed},
                       {"eta_seconds", eta}};
  append_log(record.dump());
  if (progress_ != nullptr) {
    char line[256];
    std::snprintf(line, sizeof line,
                  "step %lld/%lld  loss %.4f  answer-acc %.3f  lr %.2e  |g| %.2f  %.2f s/step (data %.2f)  "
                  "elapsed %s  eta %s",
                  static_cast<long long>(step_), static_cast<long long>(options_.steps), loss / n, accuracy, stats.lr,
                  grad / n, seconds / n, data_seconds / n, format_duration(elapsed).c_str(),
                  format_duration(eta).c_str());
    *progress_ << line << "\n" << std::flush;
  }
  window_.clear();
}

void VideoTrainer::append_log(const std::string& json_line) {
  const std::string path = (fs::path(options_.out_dir) / "train_log.jsonl").string();
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) throw std::runtime_error(path + ": cannot open for appending");
  std::fputs((json_line + "\n").c_str(), f);
  std::fclose(f);
}

int64_t VideoTrainer::train(const std::function<bool()>& should_stop) {
  while (step_ < options_.steps) {
    if (should_stop && should_stop()) break;
    train_step();
  }
  if (step_ % options_.checkpoint_every != 0 && step_ != options_.steps) save_checkpoint();
  return step_;
}

void VideoTrainer::save_checkpoint() {
  const double elapsed = elapsed_before_ + now_seconds() - session_start_;
  std::map<std::string, at::Tensor> tensors;
  add_adamw_state(*optim_->adamw, optim_->parameters, optim_->names, tensors);
  tensors["rng/torch_cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  const std::map<std::string, std::string> metadata = {{"format", kStateFormat},
                                                       {"version", "1"},
                                                       {"step", std::to_string(step_)},
                                                       {"clips_seen", std::to_string(clips_seen_)},
                                                       {"elapsed_seconds", str(elapsed)},
                                                       {"options", options_.to_json()},
                                                       {"git_commit", git_commit_}};
  // one file, written atomically: weights, moments and step can never disagree
  write_safetensors((fs::path(options_.out_dir) / kStateFile).string(), tensors, metadata);
  save_llava_checkpoint(options_.out_dir, model_,
                        {{"namm.step", std::to_string(step_)},
                         {"namm.clips_seen", std::to_string(clips_seen_)},
                         {"namm.seed", std::to_string(options_.seed)},
                         {"namm.git_commit", git_commit_},
                         {"namm.command_line", options_.command_line},
                         {"namm.kinds", json(options_.kind_list()).dump()},
                         {"namm.trained_with", "namm train-video (vision/train_video.cpp)"}});
  builtin_tokenizer().save((fs::path(options_.out_dir) / "tokenizer.json").string());
  write_provenance();
}

void VideoTrainer::write_provenance() const {
  const double elapsed = elapsed_before_ + now_seconds() - session_start_;
  const VideoModelParameterCounts counts = model_->parameter_counts();
  json lm_record = nullptr;
  if (!lm_provenance_json_.empty()) {
    try {
      lm_record = json::parse(lm_provenance_json_);
    } catch (const json::exception&) {
      lm_record = "unreadable";
    }
  }
  json metrics = nullptr;
  if (!last_eval_json_.empty()) {
    const json eval = json::parse(last_eval_json_);
    const json& full = eval.at("rows").at(0);
    metrics = {{"split", eval.at("split")},
               {"clips", eval.at("clips")},
               {"accuracy", full.at("accuracy")},
               {"chance", eval.at("chance")},
               {"kinds", full.at("kinds")}};
  }
  // the stage this run started from, as its own record said
  json init_provenance = nullptr;
  if (!options_.init_from.empty()) {
    const fs::path path = fs::path(options_.init_from) / "provenance.json";
    try {
      if (fs::exists(path)) init_provenance = json::parse(read_file(path.string()));
    } catch (const std::exception&) {
      init_provenance = "unreadable: " + path.string();
    }
  }
  const SceneOptions scene = options_.scene_options();
  json provenance = {
      {"what", "LLaVA-NeXT-Video style video host trained by `namm train-video` on the synthetic video QA scenes"},
      {"domain", "video"},
      {"command_line", options_.command_line},
      {"seed", options_.seed},
      {"git_commit", git_commit_.empty() ? json(nullptr) : json(git_commit_)},
      {"model", {{"summary", model_->config().summary()},
                 {"parameters", {{"vision", counts.vision}, {"projector", counts.projector},
                                 {"language", counts.language}, {"total", counts.total()}}},
                 {"config", json::parse(llava_config_json(model_->config()))}}},
      {"language_model_init", options_.lm_dir.empty() ? json("fresh (random)") : json(options_.lm_dir)},
      {"init_from", options_.init_from.empty() ? json(nullptr) : json(options_.init_from)},
      {"init_from_provenance", init_provenance},
      {"language_model_provenance", lm_record},
      {"tokenizer", {{"kind", "builtin word-level"}, {"vocab_size", builtin_tokenizer().vocab_size()},
                     {"fingerprint", builtin_tokenizer().fingerprint()}}},
      {"data",
       {{"generator", "vision/video_scenes.h make_scene(kind, train split, index, options), rendered in memory"},
        {"kinds", options_.kind_list()},
        {"split", "train (validation split for evaluation; seeds disjoint by construction)"},
        {"scene", {{"size", scene.size}, {"seconds", scene.seconds}, {"fps", scene.fps},
                   {"sample_frames", scene.sample_frames}}},
        {"frames_per_clip", options_.frames},
        {"sampling", "uniform_frame_indices: the frame on screen at (i + 0.5) * duration / K, as the FFmpeg decoder"},
        {"preprocess", "preprocess_frames: bicubic (antialiased) resize of the shorter side to image_size, centre crop, "
                       "CLIP mean/std"},
        {"batch", options_.batch},
        {"scene_index", "hash(seed, step, slot) >> 24 (< 2^40); kinds round-robin from a hashed offset"}}},
      {"objective", "mean cross-entropy over the answer word and <eos> after <bos> <video> <q> question <a> (full cache)"},
      {"optimizer", {{"kind", "AdamW (torch::optim)"}, {"lr", options_.lr}, {"lm_lr_scale", options_.lm_lr_scale},
                     {"warmup_steps", options_.warmup_steps}, {"schedule", "linear warm-up, cosine to lr * min_lr_ratio"},
                     {"min_lr_ratio", options_.min_lr_ratio}, {"betas", {options_.beta1, options_.beta2}},
                     {"weight_decay", options_.weight_decay}, {"grad_clip", options_.grad_clip}}},
      {"steps_done", step_},
      {"steps_total", options_.steps},
      {"clips_seen", clips_seen_},
      {"wall_seconds", elapsed},
      {"seconds_per_step", step_ > 0 ? json(elapsed / static_cast<double>(step_)) : json(nullptr)},
      {"threads", options_.threads},
      {"torch_version", TORCH_VERSION},
      {"written", utc_now()},
      {"metrics", metrics}};
  write_file_atomically((fs::path(options_.out_dir) / "provenance.json").string(), provenance.dump(2) + "\n");
}

VideoEvaluation VideoTrainer::evaluate_and_record() {
  const double start = now_seconds();
  VideoEvalOptions eval;
  eval.kinds = options_.kind_list();
  eval.split = Split::kValidation;
  eval.count = std::max<int64_t>(options_.eval_count, 1);
  eval.frames = options_.frames;
  eval.scene = options_.scene_options();
  eval.policies = {"full"};
  eval.qa.delay = options_.delay;
  eval.threads = options_.threads;
  model_->eval();
  VideoEvaluation report = evaluate_video(model_, nullptr, eval);
  model_->train();
  const std::string out = options_.out_dir;
  last_eval_json_ = report.to_json();
  write_file_atomically((fs::path(out) / "eval.json").string(), last_eval_json_ + "\n");
  write_file_atomically((fs::path(out) / "eval.md").string(), report.to_markdown());
  json record = json::parse(last_eval_json_);
  record["kind"] = "eval";
  record["step"] = step_;
  record["seconds"] = now_seconds() - start;
  append_log(record.dump());
  write_provenance();
  if (progress_ != nullptr) {
    std::ostringstream line;
    line << std::fixed << std::setprecision(3) << "eval step " << step_ << " (validation, full cache): accuracy "
         << report.rows.front().accuracy << " (chance " << report.chance << ");";
    for (const auto& [kind, score] : report.rows.front().kinds) {
      line << " " << kind << " " << score.accuracy << "/" << score.chance;
    }
    line << " (" << std::setprecision(0) << now_seconds() - start << " s)";
    *progress_ << line.str() << "\n" << std::flush;
  }
  return report;
}

}  // namespace namm
