// train_dt: see train_dt.h
#include "rl/train_dt.h"

#include "core/adamw_state.h"
#include "core/atomic_file.h"
#include "core/parse_number.h"
#include "core/run_lock.h"
#include "core/run_record.h"
#include "core/safetensors.h"
#include "rl/rollout.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>
#include <torch/optim/adamw.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <stdexcept>

namespace namm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kStateFile = kTrainerStateFile;
constexpr const char* kStateFormat = "namm-train-dt-state";
// evaluation episodes reset with seeds far from any data-collection seed
constexpr uint64_t kEvalSeedOffset = 1000003;

// a hash of (seed, step, slot): the windows of a step never depend on earlier steps
uint64_t step_hash(uint64_t seed, int64_t step, int64_t slot) {
  return namm::step_hash(0x5bd1e9955bd1e995ull, seed, step, slot);
}

void check(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("TrainDtOptions: " + message);
}

template <class T>
std::string str(const T& v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

json parse_or_text(const std::string& text) {
  try {
    return json::parse(text);
  } catch (const json::exception&) {
    return text;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// options

DtConfig TrainDtOptions::model_config(int64_t state_dim, int64_t act_dim) const {
  DtConfig c;
  c.state_dim = state_dim;
  c.act_dim = act_dim;
  c.hidden_size = hidden;
  c.n_layer = layers;
  c.n_head = heads;
  c.n_inner = inner;
  c.activation_function = activation;
  c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = dropout;
  c.max_ep_len = max_ep_len;
  c.n_positions = 1024;
  return c;
}

void TrainDtOptions::validate() const {
  check(hidden >= 1, "hidden must be >= 1, got " + str(hidden));
  check(layers >= 1, "layers must be >= 1, got " + str(layers));
  check(heads >= 1 && hidden % heads == 0, "heads must divide hidden " + str(hidden) + ", got " + str(heads));
  check(inner >= 0, "inner must be >= 0, got " + str(inner));
  check(dropout >= 0 && dropout < 1, "dropout must be in [0, 1), got " + str(dropout));
  check(max_ep_len >= 1, "max_ep_len must be >= 1, got " + str(max_ep_len));
  check(context >= 1, "context must be >= 1, got " + str(context));
  check(batch_size >= 1, "batch_size must be >= 1, got " + str(batch_size));
  check(return_scale > 0 && std::isfinite(return_scale), "return_scale must be > 0, got " + str(return_scale));
  check(steps >= 1, "steps must be >= 1, got " + str(steps));
  check(lr > 0 && std::isfinite(lr), "lr must be > 0, got " + str(lr));
  check(weight_decay >= 0, "weight_decay must be >= 0, got " + str(weight_decay));
  check(warmup_steps >= 0, "warmup_steps must be >= 0, got " + str(warmup_steps));
  check(schedule == "constant" || schedule == "linear" || schedule == "cosine",
        "schedule must be constant, linear or cosine, got '" + schedule + "'");
  check(min_lr_ratio >= 0 && min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1], got " + str(min_lr_ratio));
  check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "betas must be in [0, 1), got " + str(beta1) + ", " + str(beta2));
  check(grad_clip >= 0, "grad_clip must be >= 0, got " + str(grad_clip));
  check(threads >= 1, "threads must be >= 1, got " + str(threads));
  check(log_every >= 1, "log_every must be >= 1, got " + str(log_every));
  check(checkpoint_every >= 1, "checkpoint_every must be >= 1, got " + str(checkpoint_every));
  check(eval_every >= 0, "eval_every must be >= 0, got " + str(eval_every));
  check(eval_episodes >= 0, "eval_episodes must be >= 0, got " + str(eval_episodes));
  check(eval_max_steps >= 1, "eval_max_steps must be >= 1, got " + str(eval_max_steps));
  check(std::isfinite(target_return), "target_return must be finite");
  check(!out_dir.empty(), "out_dir is empty");
}

std::string TrainDtOptions::to_json() const {
  const json out = {{"hidden", hidden},
                    {"layers", layers},
                    {"heads", heads},
                    {"inner", inner},
                    {"activation", activation},
                    {"dropout", dropout},
                    {"max_ep_len", max_ep_len},
                    {"data_path", data_path},
                    {"context", context},
                    {"batch_size", batch_size},
                    {"return_scale", return_scale},
                    {"steps", steps},
                    {"lr", lr},
                    {"weight_decay", weight_decay},
                    {"warmup_steps", warmup_steps},
                    {"schedule", schedule},
                    {"min_lr_ratio", min_lr_ratio},
                    {"beta1", beta1},
                    {"beta2", beta2},
                    {"grad_clip", grad_clip},
                    {"seed", seed},
                    {"threads", threads},
                    {"log_every", log_every},
                    {"checkpoint_every", checkpoint_every},
                    {"eval_every", eval_every},
                    {"eval_episodes", eval_episodes},
                    {"eval_max_steps", eval_max_steps},
                    {"target_return", target_return},
                    {"out_dir", out_dir},
                    {"command_line", command_line}};
  return out.dump(2);
}

TrainDtOptions TrainDtOptions::from_json(const std::string& json_text, const std::string& source) {
  json in;
  try {
    in = json::parse(json_text);
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": options are not valid JSON: " + e.what());
  }
  TrainDtOptions o;
  try {
    auto get = [&](const char* key, auto& field) {
      if (in.contains(key)) field = in[key].get<std::decay_t<decltype(field)>>();
    };
    get("hidden", o.hidden);
    get("layers", o.layers);
    get("heads", o.heads);
    get("inner", o.inner);
    get("activation", o.activation);
    get("dropout", o.dropout);
    get("max_ep_len", o.max_ep_len);
    get("data_path", o.data_path);
    get("context", o.context);
    get("batch_size", o.batch_size);
    get("return_scale", o.return_scale);
    get("steps", o.steps);
    get("lr", o.lr);
    get("weight_decay", o.weight_decay);
    get("warmup_steps", o.warmup_steps);
    get("schedule", o.schedule);
    get("min_lr_ratio", o.min_lr_ratio);
    get("beta1", o.beta1);
    get("beta2", o.beta2);
    get("grad_clip", o.grad_clip);
    get("seed", o.seed);
    get("threads", o.threads);
    get("log_every", o.log_every);
    get("checkpoint_every", o.checkpoint_every);
    get("eval_every", o.eval_every);
    get("eval_episodes", o.eval_episodes);
    get("eval_max_steps", o.eval_max_steps);
    get("target_return", o.target_return);
    get("out_dir", o.out_dir);
    get("command_line", o.command_line);
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": bad options field: " + e.what());
  }
  return o;
}

std::vector<std::string> TrainDtOptions::resume_mismatches(const TrainDtOptions& saved) const {
  std::vector<std::string> out;
  auto cmp = [&](const char* name, const auto& now, const auto& then) {
    if (!(now == then)) out.push_back(std::string(name) + ": saved " + str(then) + ", now " + str(now));
  };
  cmp("hidden", hidden, saved.hidden);
  cmp("layers", layers, saved.layers);
  cmp("heads", heads, saved.heads);
  cmp("inner", inner, saved.inner);
  cmp("activation", activation, saved.activation);
  cmp("dropout", dropout, saved.dropout);
  cmp("max_ep_len", max_ep_len, saved.max_ep_len);
  cmp("data_path", data_path, saved.data_path);
  cmp("context", context, saved.context);
  cmp("batch_size", batch_size, saved.batch_size);
  cmp("return_scale", return_scale, saved.return_scale);
  cmp("steps", steps, saved.steps);
  cmp("lr", lr, saved.lr);
  cmp("weight_decay", weight_decay, saved.weight_decay);
  cmp("warmup_steps", warmup_steps, saved.warmup_steps);
  cmp("schedule", schedule, saved.schedule);
  cmp("min_lr_ratio", min_lr_ratio, saved.min_lr_ratio);
  cmp("beta1", beta1, saved.beta1);
  cmp("beta2", beta2, saved.beta2);
  cmp("grad_clip", grad_clip, saved.grad_clip);
  cmp("seed", seed, saved.seed);
  return out;
}

// ---------------------------------------------------------------------------
// data

DtTrainingData DtTrainingData::from_dataset(const OfflineDataset& dataset, double return_scale) {
  dataset.validate(dataset.env.empty() ? "offline dataset" : dataset.env + " dataset");
  DtTrainingData out;
  out.env = dataset.env;
  out.state_dim = dataset.observation_size;
  out.act_dim = dataset.action_size;
  const int64_t n = dataset.size();
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor raw_states =
      at::from_blob(const_cast<float*>(dataset.observations.data()), {n, out.state_dim}, f32).clone();  // [N, O]
  out.actions = at::from_blob(const_cast<float*>(dataset.actions.data()), {n, out.act_dim}, f32).clone();  // [N, A]
  // mean/std in float64 over every dataset state, std + 1e-6 as the DT code
  const at::Tensor states64 = raw_states.to(at::kDouble);
  const at::Tensor mean = states64.mean(0);                                  // [O]
  const at::Tensor std_dev = (states64 - mean).pow(2).mean(0).sqrt() + 1e-6;  // [O] population std, as np.std
  out.state_mean.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + out.state_dim);
  out.state_std.assign(std_dev.data_ptr<double>(), std_dev.data_ptr<double>() + out.state_dim);
  out.states = ((states64 - mean) / std_dev).to(at::kFloat).contiguous();  // [N, O]

  out.returns_to_go = at::empty({n}, f32);
  out.timesteps = at::empty({n}, at::kLong);
  out.episode_end.assign(static_cast<size_t>(n), 0);
  float* rtg = out.returns_to_go.data_ptr<float>();
  int64_t* steps = out.timesteps.data_ptr<int64_t>();
  double total = 0.0;
  for (const EpisodeRange& episode : dataset.episodes()) {
    double remaining = 0.0;  // undiscounted, accumulated backwards in double
    for (int64_t i = episode.end - 1; i >= episode.begin; --i) {
      remaining += static_cast<double>(dataset.rewards[static_cast<size_t>(i)]);
      rtg[i] = static_cast<float>(remaining / return_scale);
    }
    for (int64_t i = episode.begin; i < episode.end; ++i) {
      steps[i] = i - episode.begin;
      out.episode_end[static_cast<size_t>(i)] = episode.end;
    }
    ++out.episodes;
    total += episode.episode_return;
    out.max_episode_return = out.episodes == 1 ? episode.episode_return : std::max(out.max_episode_return, episode.episode_return);
  }
  out.mean_episode_return = out.episodes > 0 ? total / static_cast<double>(out.episodes) : 0.0;
  return out;
}

DtTrainBatch make_dt_batch(const DtTrainingData& data, int64_t context, int64_t batch_size, uint64_t seed,
                           int64_t step) {
  const int64_t n = data.size();
  TORCH_CHECK(n >= 1, "make_dt_batch: the dataset is empty");
  TORCH_CHECK(context >= 1 && batch_size >= 1, "make_dt_batch: context ", context, " and batch_size ", batch_size,
              " must be >= 1");
  const int64_t b = batch_size, k = context;
  at::Tensor index = at::zeros({b * k}, at::kLong);  // [B*K] dataset step of each slot (0 for padding)
  at::Tensor mask = at::zeros({b, k}, at::kFloat);   // [B, K]
  int64_t* idx = index.data_ptr<int64_t>();
  float* m = mask.data_ptr<float>();
  DtTrainBatch out;
  for (int64_t row = 0; row < b; ++row) {
    const int64_t start = static_cast<int64_t>(step_hash(seed, step, row) % static_cast<uint64_t>(n));
    const int64_t end = std::min(start + k, data.episode_end[static_cast<size_t>(start)]);
    const int64_t len = end - start;
    const int64_t pad = k - len;  // left padding, as the DT code
    for (int64_t j = 0; j < len; ++j) {
      idx[row * k + pad + j] = start + j;
      m[row * k + pad + j] = 1.0f;
    }
    out.starts.push_back(start);
    out.real_steps += len;
  }
  const at::Tensor real = mask.unsqueeze(-1);  // [B, K, 1]
  out.batch.states = data.states.index_select(0, index).view({b, k, data.state_dim}) * real;        // [B, K, O]
  out.target_actions = data.actions.index_select(0, index).view({b, k, data.act_dim}) * real;       // [B, K, A]
  out.batch.actions = out.target_actions;
  out.batch.returns_to_go = data.returns_to_go.index_select(0, index).view({b, k, 1}) * real;       // [B, K, 1]
  out.batch.timesteps = data.timesteps.index_select(0, index).view({b, k}) * mask.to(at::kLong);    // [B, K]
  out.batch.attention_mask = mask;
  return out;
}

at::Tensor masked_action_mse(const at::Tensor& preds, const at::Tensor& targets, const at::Tensor& mask) {
  TORCH_CHECK(preds.sizes() == targets.sizes() && preds.dim() == 3, "masked_action_mse: preds ", preds.sizes(),
              " and targets ", targets.sizes(), " must be the same [B, K, A]");
  const at::Tensor m = mask.to(preds.device(), preds.scalar_type()).unsqueeze(-1);  // [B, K, 1]
  const at::Tensor squared = (preds - targets.to(preds.device(), preds.scalar_type())).pow(2) * m;
  return squared.sum() / (m.sum() * static_cast<double>(preds.size(2))).clamp_min(1.0);
}

double dt_learning_rate(const TrainDtOptions& options, int64_t step) {
  if (step < options.warmup_steps) {
    return options.lr * static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps);
  }
  if (options.schedule == "constant") return options.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, options.steps - options.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - options.warmup_steps) / span);
  const double floor = options.min_lr_ratio;
  if (options.schedule == "linear") return options.lr * (1.0 - (1.0 - floor) * progress);
  return options.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + std::cos(M_PI * progress)));
}

// ---------------------------------------------------------------------------
// trainer

struct DtTrainer::Optim {
  std::vector<std::string> names;      // Hugging Face names, registration order
  std::vector<at::Tensor> parameters;  // same order
  std::unique_ptr<torch::optim::AdamW> adamw;
  double session_tokens = 0.0;
  double session_seconds = 0.0;
};

DtTrainer::DtTrainer(TrainDtOptions options, std::ostream* progress, std::shared_ptr<const OfflineDataset> data)
    : options_(std::move(options)), progress_(progress), optim_(std::make_unique<Optim>()) {
  options_.validate();
  // before any work: one run per folder, and never over a trained model
  run_lock_ = claim_training_folder(options_.out_dir, "", options_.force);
  session_start_ = now_seconds();
  at::set_num_threads(options_.threads);
  git_commit_ = git_commit((fs::path(NAMM_SCENES_DIR) / "..").string());
  if (!data) {
    if (options_.data_path.empty()) throw std::invalid_argument("train-dt: no dataset (--data)");
    data = std::make_shared<const OfflineDataset>(load_offline_dataset(options_.data_path));
  }
  data_ = DtTrainingData::from_dataset(*data, options_.return_scale);
  data_metadata_ = data->metadata_json;
  {
    // initial weights are a function of the seed alone
    at::manual_seed(options_.seed);
    model_ = DecisionTransformer(options_.model_config(data_.state_dim, data_.act_dim));
  }
  for (const auto& [name, p] : model_->hf_named_parameters()) {
    optim_->names.push_back(name);
    optim_->parameters.push_back(p);
  }
  // the DT code decays every parameter
  optim_->adamw = std::make_unique<torch::optim::AdamW>(
      optim_->parameters, torch::optim::AdamWOptions(options_.lr)
                              .betas({options_.beta1, options_.beta2})
                              .eps(1e-8)
                              .weight_decay(options_.weight_decay));
  dropout_generator_ = at::detail::createCPUGenerator(mix64(options_.seed ^ 0xd1b54a32d192ed03ull));

  fs::create_directories(options_.out_dir);
  const std::string state_path = (fs::path(options_.out_dir) / kStateFile).string();
  if (fs::exists(state_path)) resume(state_path);
  write_file_atomically((fs::path(options_.out_dir) / "options.json").string(), options_.to_json() + "\n");
  if (progress_ != nullptr) {
    *progress_ << (resumed_ ? "resuming " : "training ") << model_->config().summary() << " on " << data_.env << " ("
               << data_.size() << " steps, " << data_.episodes << " episodes) in " << options_.out_dir
               << (resumed_ ? " from step " + str(step_) : "") << ", context " << options_.context << ", batch "
               << options_.batch_size << ", " << options_.threads << " thread" << (options_.threads == 1 ? "" : "s")
               << "\n"
               << std::flush;
  }
}

DtTrainer::~DtTrainer() = default;

DtSidecar DtTrainer::sidecar() const {
  DtSidecar s;
  s.env = data_.env;
  s.state_mean = data_.state_mean;
  s.state_std = data_.state_std;
  s.return_scale = options_.return_scale;
  s.target_return = options_.target_return;
  if (s.target_return == 0.0 && (s.env == "hopper" || s.env == "walker2d")) s.target_return = default_target_return(s.env);
  s.context = options_.context;
  const json provenance = {{"trained_with", "namm train-dt (rl/train_dt.cpp)"},
                           {"command_line", options_.command_line},
                           {"seed", options_.seed},
                           {"git_commit", git_commit_},
                           {"data", options_.data_path},
                           {"steps_done", step_}};
  s.provenance_json = provenance.dump();
  return s;
}

void DtTrainer::resume(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);
  auto meta = [&](const std::string& key) {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw std::runtime_error(path + ": not a train-dt state (no '" + key + "' metadata)");
    return it->second;
  };
  if (meta("format") != kStateFormat) throw std::runtime_error(path + ": not a train-dt state (format '" + meta("format") + "')");
  const TrainDtOptions saved = TrainDtOptions::from_json(meta("options"), path);
  throw_if_resume_options_differ(path, options_.resume_mismatches(saved));
  if (meta("data_steps") != std::to_string(data_.size())) {
    throw std::runtime_error(path + ": the checkpoint was trained on a dataset of " + meta("data_steps") +
                             " steps, this one has " + std::to_string(data_.size()));
  }
  restore_adamw_state(file, *optim_->adamw, optim_->parameters, optim_->names);
  dropout_generator_.set_state(file.at("rng/dropout"));
  try {
    step_ = parse_int64(meta("step"), path + ": metadata step");
    elapsed_before_ = parse_finite_double(meta("elapsed_seconds"), path + ": metadata elapsed_seconds");
  } catch (const std::logic_error&) {
    throw std::runtime_error(path + ": bad step / elapsed_seconds metadata");
  }
  resumed_ = true;
  const auto last_eval = file.metadata.find("last_eval");
  if (last_eval != file.metadata.end()) last_eval_json_ = last_eval->second;

  // records past the checkpoint belong to the interrupted session and will be redone
  keep_log_records_up_to((fs::path(options_.out_dir) / "train_log.jsonl").string(), step_);
}

DtStepStats DtTrainer::train_step() {
  const double start = now_seconds();
  const DtTrainBatch batch = make_dt_batch(data_, options_.context, options_.batch_size, options_.seed, step_);
  const double lr = dt_learning_rate(options_, step_);
  for (auto& group : optim_->adamw->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

  optim_->adamw->zero_grad();
  const DtOutput out = model_->forward(batch.batch, /*train=*/true, dropout_generator_);
  const at::Tensor loss = masked_action_mse(out.action_preds, batch.target_actions, batch.batch.attention_mask);
  const double loss_value = loss.item<double>();
  if (!std::isfinite(loss_value)) {
    throw std::runtime_error("train-dt: loss is " + str(loss_value) + " at step " + str(step_) + "; lower --lr");
  }
  loss.backward();

  // global norm clipping, as torch.nn.utils.clip_grad_norm_
  double grad_norm = 0.0;
  {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> norms;
    for (const at::Tensor& p : optim_->parameters) {
      if (p.grad().defined()) norms.push_back(p.grad().norm());
    }
    grad_norm = at::stack(norms).norm().item<double>();
    if (options_.grad_clip > 0 && grad_norm > options_.grad_clip) {
      const double scale = options_.grad_clip / (grad_norm + 1e-6);
      for (const at::Tensor& p : optim_->parameters) {
        if (p.grad().defined()) p.grad().mul_(scale);
      }
    }
  }
  optim_->adamw->step();
  ++step_;

  DtStepStats stats;
  stats.step = step_;
  stats.loss = loss_value;
  stats.grad_norm = grad_norm;
  stats.lr = lr;
  stats.tokens = options_.batch_size * options_.context * kDtTokensPerStep;
  stats.seconds = now_seconds() - start;
  optim_->session_tokens += static_cast<double>(stats.tokens);
  optim_->session_seconds += stats.seconds;
  log_progress(stats);
  if (step_ % options_.checkpoint_every == 0 || step_ == options_.steps) save_checkpoint();
  if (options_.eval_every > 0 && step_ % options_.eval_every == 0 && step_ < options_.steps) evaluate_and_record();
  return stats;
}

void DtTrainer::log_progress(const DtStepStats& stats) {
  window_.push_back(stats);
  if (step_ % options_.log_every != 0 && step_ != options_.steps) return;
  double loss = 0, seconds = 0, grad = 0;
  int64_t tokens = 0;
  for (const DtStepStats& s : window_) {
    loss += s.loss;
    seconds += s.seconds;
    grad += s.grad_norm;
    tokens += s.tokens;
  }
  const double n = static_cast<double>(window_.size());
  const double elapsed = elapsed_before_ + now_seconds() - session_start_;
  const double eta = seconds / n * static_cast<double>(options_.steps - step_);
  const json record = {{"kind", "train"},
                       {"step", step_},
                       {"steps", options_.steps},
                       {"loss", loss / n},
                       {"grad_norm", grad / n},
                       {"lr", stats.lr},
                       {"tokens_per_second", static_cast<double>(tokens) / seconds},
                       {"seconds_per_step", seconds / n},
                       {"elapsed_seconds", elapsed},
                       {"eta_seconds", eta}};
  append_log(record.dump());
  if (progress_ != nullptr) {
    char line[256];
    std::snprintf(line, sizeof line, "step %lld/%lld  loss %.5f  grad %.3f  lr %.2e  %.0f tok/s  %.3f s/step  elapsed %s  eta %s",
                  static_cast<long long>(step_), static_cast<long long>(options_.steps), loss / n, grad / n, stats.lr,
                  static_cast<double>(tokens) / seconds, seconds / n, format_duration(elapsed).c_str(),
                  format_duration(eta).c_str());
    *progress_ << line << "\n" << std::flush;
  }
  window_.clear();
}

void DtTrainer::append_log(const std::string& json_line) const {
  const std::string path = (fs::path(options_.out_dir) / "train_log.jsonl").string();
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) throw std::runtime_error(path + ": cannot open for appending");
  std::fputs((json_line + "\n").c_str(), f);
  std::fclose(f);
}

int64_t DtTrainer::train(const std::function<bool()>& should_stop) {
  while (step_ < options_.steps) {
    if (should_stop && should_stop()) break;
    train_step();
  }
  if (step_ % options_.checkpoint_every != 0 && step_ != options_.steps) save_checkpoint();
  if (step_ == options_.steps && options_.eval_episodes > 0) evaluate_and_record();
  return step_;
}

void DtTrainer::save_checkpoint() {
  const double elapsed = elapsed_before_ + now_seconds() - session_start_;
  std::map<std::string, at::Tensor> tensors;
  add_adamw_state(*optim_->adamw, optim_->parameters, optim_->names, tensors);
  tensors["rng/dropout"] = dropout_generator_.get_state();
  std::map<std::string, std::string> metadata = {{"format", kStateFormat},
                                                 {"version", "1"},
                                                 {"step", std::to_string(step_)},
                                                 {"elapsed_seconds", str(elapsed)},
                                                 {"options", options_.to_json()},
                                                 {"data_steps", std::to_string(data_.size())},
                                                 {"git_commit", git_commit_}};
  if (!last_eval_json_.empty()) metadata["last_eval"] = last_eval_json_;
  // one file, written atomically: weights, moments, generator and step never disagree
  write_safetensors((fs::path(options_.out_dir) / kStateFile).string(), tensors, metadata);
  save_dt_checkpoint(options_.out_dir, model_, sidecar(),
                     {{"namm.step", std::to_string(step_)},
                      {"namm.seed", std::to_string(options_.seed)},
                      {"namm.git_commit", git_commit_},
                      {"namm.command_line", options_.command_line},
                      {"namm.data", options_.data_path},
                      {"namm.trained_with", "namm train-dt (rl/train_dt.cpp)"}});
  write_provenance();
}

void DtTrainer::write_provenance() const {
  const double elapsed = elapsed_before_ + now_seconds() - session_start_;
  const DtConfig& config = model_->config();
  int64_t parameters = 0;
  for (const at::Tensor& p : optim_->parameters) parameters += p.numel();
  const json provenance = {
      {"what", "Decision Transformer trained by `namm train-dt` on an offline dataset"},
      {"command_line", options_.command_line},
      {"seed", options_.seed},
      {"git_commit", git_commit_.empty() ? json(nullptr) : json(git_commit_)},
      {"model", {{"summary", config.summary()}, {"parameters", parameters}, {"config", json::parse(dt_config_json(config))}}},
      {"data",
       {{"path", options_.data_path},
        {"env", data_.env},
        {"steps", data_.size()},
        {"episodes", data_.episodes},
        {"mean_episode_return", data_.mean_episode_return},
        {"max_episode_return", data_.max_episode_return},
        {"dataset_provenance", parse_or_text(data_metadata_.empty() ? "{}" : data_metadata_)}}},
      {"sampling", {{"context", options_.context}, {"batch_size", options_.batch_size},
                    {"windows", "start at a uniformly drawn dataset step, cut at the episode end, left-padded with a mask"},
                    {"return_scale", options_.return_scale},
                    {"state_normalisation", "dataset mean / (std + 1e-6)"}}},
      {"objective", "mean squared error of the predicted actions of real steps"},
      {"optimizer", {{"kind", "AdamW (torch::optim), every parameter decayed"},
                     {"lr", options_.lr}, {"weight_decay", options_.weight_decay},
                     {"warmup_steps", options_.warmup_steps}, {"schedule", options_.schedule},
                     {"min_lr_ratio", options_.min_lr_ratio}, {"betas", {options_.beta1, options_.beta2}},
                     {"grad_clip", options_.grad_clip}, {"dropout", options_.dropout}}},
      {"steps_done", step_},
      {"steps_total", options_.steps},
      {"wall_seconds", elapsed},
      {"tokens_per_second", optim_->session_seconds > 0 ? optim_->session_tokens / optim_->session_seconds : 0.0},
      {"threads", options_.threads},
      {"torch_version", TORCH_VERSION},
      {"written", utc_now()},
      {"last_eval", last_eval_json_.empty() ? json(nullptr) : parse_or_text(last_eval_json_)}};
  write_file_atomically((fs::path(options_.out_dir) / "provenance.json").string(), provenance.dump(2) + "\n");
}

void DtTrainer::evaluate_and_record() {
  if (options_.eval_episodes <= 0) return;
  if (data_.env != "hopper" && data_.env != "walker2d") return;  // nothing to roll out in
  const double start = now_seconds();
  const DtSidecar side = sidecar();
  RolloutOptions rollout;
  rollout.episodes = options_.eval_episodes;
  rollout.seed = kEvalSeedOffset + options_.seed * 1000;
  rollout.max_steps = options_.eval_max_steps;
  rollout.record_token_kinds = false;
  rollout.window = options_.context;
  const RolloutReport window = run_rollouts(model_, side, data_.env, rollout);
  rollout.window = 0;  // the full cache kept across the episode
  const RolloutReport full = run_rollouts(model_, side, data_.env, rollout);
  const json record = {{"kind", "eval"},
                       {"step", step_},
                       {"episodes", options_.eval_episodes},
                       {"seed", rollout.seed},
                       {"target_return", window.target_return},
                       {"window", {{"context", options_.context},
                                   {"mean_return", window.mean_return()},
                                   {"mean_normalized_score", window.mean_score()},
                                   {"std_normalized_score", window.std_score()}}},
                       {"full_cache", {{"mean_return", full.mean_return()},
                                       {"mean_normalized_score", full.mean_score()},
                                       {"std_normalized_score", full.std_score()}}},
                       {"seconds", now_seconds() - start}};
  append_log(record.dump());
  last_eval_json_ = record.dump();
  write_provenance();
  if (progress_ != nullptr) {
    std::ostringstream line;
    line << std::fixed << std::setprecision(1) << "eval step " << step_ << ": window-" << options_.context
         << " score " << window.mean_score() << " (return " << window.mean_return() << "), full cache score "
         << full.mean_score() << " (return " << full.mean_return() << ") over " << options_.eval_episodes
         << " episodes (" << now_seconds() - start << " s)";
    *progress_ << line.str() << "\n" << std::flush;
  }
}

}  // namespace namm
