// train_lm: see train_lm.h
#include "text/train_lm.h"

#include "core/adamw_state.h"
#include "core/atomic_file.h"
#include "core/parse_number.h"
#include "core/memory_budget.h"
#include "core/run_lock.h"
#include "core/run_record.h"
#include "core/safetensors.h"
#include "text/generation.h"
#include "text/llama_checkpoint.h"
#include "text/tasks.h"
#include "text/tokenizer.h"

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
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

namespace namm {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kStateFile = kTrainerStateFile;
constexpr const char* kStateFormat = "namm-train-lm-state";
constexpr int64_t kContextMultiple = 64;

/// A hash of (seed, step, slot, stream): the data of a step never depends on earlier steps.
uint64_t step_hash(uint64_t seed, int64_t step, int64_t slot, uint64_t stream) {
  return mix64(mix64(mix64(seed ^ (stream * 0x632be59bd9b4e019ull)) + static_cast<uint64_t>(step)) +
               static_cast<uint64_t>(slot));
}

/// Uniform in [0, 1) from 53 bits of a hash.
double unit(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

void check(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("TrainLmOptions: " + message);
}

template <class T>
std::string str(const T& v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

// ---------------------------------------------------------------------------
// options

LlamaConfig TrainLmOptions::model_config() const {
  LlamaConfig c;
  c.vocab_size = builtin_tokenizer().vocab_size();
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.rope_theta = rope_theta;
  c.max_position_embeddings = max_positions;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = false;
  return c;
}

std::vector<std::string> TrainLmOptions::task_list() const { return tasks.empty() ? task_names() : tasks; }

std::vector<std::string> TrainLmOptions::distinct_tasks() const {
  std::vector<std::string> distinct;
  for (const std::string& task : task_list())
    if (std::find(distinct.begin(), distinct.end(), task) == distinct.end()) distinct.push_back(task);
  return distinct;
}

void TrainLmOptions::validate() const {
  check(layers >= 1, "layers must be >= 1, got " + str(layers));
  check(hidden >= 2, "hidden must be >= 2, got " + str(hidden));
  check(heads >= 1 && hidden % heads == 0 && (hidden / heads) % 2 == 0,
        "heads must divide hidden into even head widths, got heads " + str(heads) + ", hidden " + str(hidden));
  check(kv_heads >= 1 && heads % kv_heads == 0,
        "kv_heads must divide heads, got kv_heads " + str(kv_heads) + ", heads " + str(heads));
  check(intermediate >= 1, "intermediate must be >= 1, got " + str(intermediate));
  check(rope_theta > 0, "rope_theta must be > 0, got " + str(rope_theta));
  for (const std::string& task : task_list()) {
    min_context_tokens(task);  // throws for an unknown task, naming the known ones
    check(min_context >= min_context_tokens(task), "min_context " + str(min_context) + " is below " + task +
                                                       "'s minimum of " + str(min_context_tokens(task)));
  }
  check(max_context >= min_context,
        "max_context " + str(max_context) + " is below min_context " + str(min_context));
  check(long_fraction >= 0 && long_fraction <= 1, "long_fraction must be in [0, 1], got " + str(long_fraction));
  check(long_fraction == 0 || long_context >= max_context,
        "long_context " + str(long_context) + " is below max_context " + str(max_context));
  const int64_t longest = long_fraction > 0 ? std::max(long_context, max_context) : max_context;
  // a follow-up is at most 12 question tokens, kMaxAnswerTokens answer tokens and <eos>
  const int64_t longest_sequence = longest + kMaxAnswerTokens + (13 + kMaxAnswerTokens) * follow_ups;
  check(max_positions >= longest_sequence,
        "max_positions " + str(max_positions) + " is below the longest training sequence, " + str(longest_sequence) +
            " tokens (a " + str(longest) + "-token prompt, its answer and " + str(follow_ups) + " follow-ups)");
  check(follow_ups >= 0 && follow_ups <= 64, "follow_ups must be in [0, 64], got " + str(follow_ups));
  check(batch_tokens >= 1, "batch_tokens must be >= 1, got " + str(batch_tokens));
  check(steps >= 1, "steps must be >= 1, got " + str(steps));
  check(lr > 0 && std::isfinite(lr), "lr must be > 0, got " + str(lr));
  check(min_lr_ratio >= 0 && min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1], got " + str(min_lr_ratio));
  check(warmup_steps >= 0, "warmup_steps must be >= 0, got " + str(warmup_steps));
  check(weight_decay >= 0, "weight_decay must be >= 0, got " + str(weight_decay));
  check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
        "betas must be in [0, 1), got " + str(beta1) + ", " + str(beta2));
  check(grad_clip >= 0, "grad_clip must be >= 0, got " + str(grad_clip));
  check(context_loss_weight >= 0, "context_loss_weight must be >= 0, got " + str(context_loss_weight));
  check(threads >= 1, "threads must be >= 1, got " + str(threads));
  check(log_every >= 1, "log_every must be >= 1, got " + str(log_every));
  check(checkpoint_every >= 1, "checkpoint_every must be >= 1, got " + str(checkpoint_every));
  check(eval_every >= 0, "eval_every must be >= 0, got " + str(eval_every));
  check(eval_examples >= 0, "eval_examples must be >= 0, got " + str(eval_examples));
  for (int64_t length : eval_lengths) check(length >= 96, "eval length " + str(length) + " is below 96");
  check(!out_dir.empty(), "out_dir is empty");
}

namespace {

json options_json(const TrainLmOptions& o) {
  return json{{"layers", o.layers},
              {"hidden", o.hidden},
              {"heads", o.heads},
              {"kv_heads", o.kv_heads},
              {"intermediate", o.intermediate},
              {"rope_theta", o.rope_theta},
              {"max_positions", o.max_positions},
              {"tasks", o.tasks},
              {"min_context", o.min_context},
              {"max_context", o.max_context},
              {"long_fraction", o.long_fraction},
              {"long_context", o.long_context},
              {"batch_tokens", o.batch_tokens},
              {"steps", o.steps},
              {"follow_ups", o.follow_ups},
              {"lr", o.lr},
              {"min_lr_ratio", o.min_lr_ratio},
              {"warmup_steps", o.warmup_steps},
              {"weight_decay", o.weight_decay},
              {"beta1", o.beta1},
              {"beta2", o.beta2},
              {"grad_clip", o.grad_clip},
              {"context_loss_weight", o.context_loss_weight},
              {"seed", o.seed},
              {"init_from", o.init_from},
              {"threads", o.threads},
              {"log_every", o.log_every},
              {"checkpoint_every", o.checkpoint_every},
              {"eval_every", o.eval_every},
              {"eval_examples", o.eval_examples},
              {"eval_lengths", o.eval_lengths},
              {"out_dir", o.out_dir},
              {"command_line", o.command_line}};
}

// the fields that change the trajectory of the weights
const char* const kResumeFields[] = {"layers",       "hidden",        "heads",        "kv_heads",
                                     "intermediate", "rope_theta",    "max_positions", "tasks",
                                     "min_context",  "max_context",   "long_fraction", "long_context",
                                     "batch_tokens", "steps", "follow_ups",         "lr",            "min_lr_ratio",
                                     "warmup_steps", "weight_decay",  "beta1",         "beta2",
                                     "grad_clip",    "context_loss_weight", "seed",  "init_from"};

}  // namespace

std::string TrainLmOptions::to_json() const { return options_json(*this).dump(2); }

TrainLmOptions TrainLmOptions::from_json(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": options are not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error(source + ": options must be a JSON object");
  TrainLmOptions o;
  json defaults = options_json(o);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!defaults.contains(it.key())) throw std::runtime_error(source + ": unknown option '" + it.key() + "'");
  }
  auto get = [&](const char* key, auto& field) {
    if (!j.contains(key)) return;
    try {
      j.at(key).get_to(field);
    } catch (const json::exception& e) {
      throw std::runtime_error(source + ": option '" + key + "' has the wrong type: " + j.at(key).dump());
    }
  };
  get("layers", o.layers);
  get("hidden", o.hidden);
  get("heads", o.heads);
  get("kv_heads", o.kv_heads);
  get("intermediate", o.intermediate);
  get("rope_theta", o.rope_theta);
  get("max_positions", o.max_positions);
  get("tasks", o.tasks);
  get("min_context", o.min_context);
  get("max_context", o.max_context);
  get("long_fraction", o.long_fraction);
  get("long_context", o.long_context);
  get("batch_tokens", o.batch_tokens);
  get("steps", o.steps);
  // runs made before follow-up questions existed had none
  o.follow_ups = 0;
  get("follow_ups", o.follow_ups);
  get("lr", o.lr);
  get("min_lr_ratio", o.min_lr_ratio);
  get("warmup_steps", o.warmup_steps);
  get("weight_decay", o.weight_decay);
  get("beta1", o.beta1);
  get("beta2", o.beta2);
  get("grad_clip", o.grad_clip);
  get("context_loss_weight", o.context_loss_weight);
  get("seed", o.seed);
  get("init_from", o.init_from);
  get("threads", o.threads);
  get("log_every", o.log_every);
  get("checkpoint_every", o.checkpoint_every);
  get("eval_every", o.eval_every);
  get("eval_examples", o.eval_examples);
  get("eval_lengths", o.eval_lengths);
  get("out_dir", o.out_dir);
  get("command_line", o.command_line);
  return o;
}

std::vector<std::string> TrainLmOptions::resume_mismatches(const TrainLmOptions& saved) const {
  const json now = options_json(*this), then = options_json(saved);
  std::vector<std::string> out;
  for (const char* field : kResumeFields) {
    json a = then.at(field), b = now.at(field);
    // an empty task list means all tasks
    if (std::string(field) == "tasks") {
      a = saved.task_list();
      b = task_list();
    }
    if (a != b) out.push_back(std::string(field) + ": saved " + a.dump() + ", now " + b.dump());
  }
  return out;
}

// ---------------------------------------------------------------------------
// data and schedule

int64_t TrainBatch::tokens() const { return inputs.defined() ? inputs.numel() : 0; }

int64_t train_context_tokens(const TrainLmOptions& options, int64_t step) {
  const double progress =
      options.steps > 1 ? static_cast<double>(step) / static_cast<double>(options.steps - 1) : 1.0;
  const Curriculum curriculum{options.min_context, options.max_context, kContextMultiple};
  const int64_t current = curriculum.context_tokens(progress);
  const uint64_t h = step_hash(options.seed, step, 0, 1);
  const double u = unit(mix64(h));
  const double v = unit(mix64(h + 1));
  const int64_t half_up = (current / 2 + kContextMultiple - 1) / kContextMultiple * kContextMultiple;
  int64_t lo = std::min(current, std::max(options.min_context, half_up)), hi = current;
  // a few steps see prompts up to long_context, so long evaluation lengths are not unseen
  if (options.long_fraction > 0 && u < options.long_fraction && options.long_context > current) {
    lo = current;
    hi = options.long_context;
  }
  const int64_t drawn = lo + static_cast<int64_t>(v * static_cast<double>(hi - lo + 1));
  return std::max(lo, std::min(hi, drawn / kContextMultiple * kContextMultiple));
}

TrainBatch make_train_batch(const TrainLmOptions& options, int64_t step) {
  const std::vector<std::string> tasks = options.task_list();
  TrainBatch batch;
  batch.context = train_context_tokens(options, step);
  const int64_t n = std::max<int64_t>(1, options.batch_tokens / batch.context);
  const int64_t n_tasks = static_cast<int64_t>(tasks.size());
  const int64_t first_task = static_cast<int64_t>(step_hash(options.seed, step, 0, 2) % static_cast<uint64_t>(n_tasks));
  std::vector<std::vector<int64_t>> sequences;
  std::vector<std::vector<TokenSpan>> answer_spans;
  int64_t longest = 0;
  for (int64_t i = 0; i < n; ++i) {
    const std::string& task = tasks[(first_task + i) % n_tasks];
    const int64_t index = static_cast<int64_t>(step_hash(options.seed, step, i, 3) & ((uint64_t{1} << 36) - 1));
    const TaskExample example = make_example(task, Split::kTrain, index, batch.context);
    batch.tasks.push_back(task);
    batch.indices.push_back(index);
    answer_spans.emplace_back();
    sequences.push_back(
        training_sequence(example, follow_up_questions(example, options.follow_ups), &answer_spans.back()));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(sequences.back().size()) - 1);
  }
  // [B, T]: sequences end at different places (answers of 1..6 tokens,
  // follow-ups); the tail is <pad>, which no mask selects and causal
  // attention never reads
  batch.inputs = at::full({n, longest}, Tokenizer::kPad, at::kLong);
  batch.targets = at::full({n, longest}, Tokenizer::kPad, at::kLong);
  batch.answer_mask = at::zeros({n, longest}, at::kBool);
  batch.answer_question = at::full({n, longest}, -1, at::kLong);
  batch.context_mask = at::zeros({n, longest}, at::kBool);
  auto in = batch.inputs.accessor<int64_t, 2>();
  auto out = batch.targets.accessor<int64_t, 2>();
  auto answer = batch.answer_mask.accessor<bool, 2>();
  auto question = batch.answer_question.accessor<int64_t, 2>();
  auto context = batch.context_mask.accessor<bool, 2>();
  for (int64_t b = 0; b < n; ++b) {
    const std::vector<int64_t>& seq = sequences[b];
    const int64_t len = static_cast<int64_t>(seq.size()) - 1;
    for (int64_t t = 0; t < len; ++t) {
      in[b][t] = seq[t];
      out[b][t] = seq[t + 1];
      context[b][t] = true;
    }
    // the target at t is seq[t + 1]: an answer span [begin, end) is predicted
    // from t = begin - 1 to end - 2
    for (size_t q = 0; q < answer_spans[b].size(); ++q) {
      const TokenSpan span = answer_spans[b][q];
      for (int64_t t = span.begin - 1; t < span.end - 1; ++t) {
        answer[b][t] = true;
        question[b][t] = static_cast<int64_t>(q);
        context[b][t] = false;
      }
    }
  }
  return batch;
}

double learning_rate(const TrainLmOptions& options, int64_t step) {
  if (step < options.warmup_steps) return options.lr * static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps + 1);
  const int64_t decay_steps = std::max<int64_t>(1, options.steps - options.warmup_steps);
  const double progress = std::min(1.0, static_cast<double>(step - options.warmup_steps) / static_cast<double>(decay_steps));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return options.lr * (options.min_lr_ratio + (1.0 - options.min_lr_ratio) * cosine);
}

// ---------------------------------------------------------------------------
// evaluation

std::string EvalReport::to_json() const {
  json cells_json = json::array();
  for (const EvalCell& c : cells) {
    cells_json.push_back({{"task", c.task},
                          {"metric", task_metric(c.task) == TaskMetric::kF1 ? "f1" : "exact"},
                          {"context", c.context},
                          {"examples", c.examples},
                          {"score", c.score},
                          {"chance", c.chance},
                          {"pick_chance", c.pick_chance},
                          {"seconds", c.seconds}});
  }
  return json{{"step", step}, {"cells", cells_json}}.dump(2);
}

std::string EvalReport::to_markdown() const {
  std::vector<int64_t> lengths;
  std::vector<std::string> tasks;
  for (const EvalCell& c : cells) {
    if (std::find(lengths.begin(), lengths.end(), c.context) == lengths.end()) lengths.push_back(c.context);
    if (std::find(tasks.begin(), tasks.end(), c.task) == tasks.end()) tasks.push_back(c.task);
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(3);
  s << "# Full-cache greedy accuracy (validation split), step " << step << "\n\n";
  s << "| task | metric |";
  for (int64_t l : lengths) s << " " << l << " tokens |";
  s << " chance | pick-a-record |\n|---|---|";
  for (size_t i = 0; i < lengths.size() + 2; ++i) s << "---|";
  s << "\n";
  for (const std::string& task : tasks) {
    s << "| " << task << " | " << (task_metric(task) == TaskMetric::kF1 ? "token F1" : "exact") << " |";
    double chance = 0, pick = -1;
    for (int64_t l : lengths) {
      const EvalCell* cell = nullptr;
      for (const EvalCell& c : cells)
        if (c.task == task && c.context == l) cell = &c;
      if (cell == nullptr) {
        s << " - |";
        continue;
      }
      s << " " << cell->score << " (n=" << cell->examples << ") |";
      chance = cell->chance;
      pick = std::max(pick, cell->pick_chance);
    }
    s << " " << std::setprecision(4) << chance << " | ";
    if (pick >= 0) s << "<= " << pick;
    else s << "-";
    s << std::setprecision(3) << " |\n";
  }
  s << "\nchance: the mean score of a uniform guess of the right form (random digits of the answer's "
       "length, a random name for each name in a variable walk; a count in 1..9). pick-a-record: 1 / (candidate records in the prompt), the score of "
       "copying the value of a random record (largest over the lengths, i.e. the shortest context).\n";
  return s.str();
}

namespace {

/// Mean score of a uniform guess of the answer's form, analytic for exact match, sampled for F1.
double form_chance(const TaskExample& ex) {
  if (ex.task == "counting") return 1.0 / 9.0;
  const std::vector<int64_t>& digits = [] {
    static std::vector<int64_t> d;
    if (d.empty())
      for (int i = 0; i < 10; ++i) d.push_back(builtin_tokenizer().id(std::to_string(i)));
    return d;
  }();
  if (task_metric(ex.task) == TaskMetric::kExact) {
    // each digit one of 10; each name of a variable walk one of the names;
    // the walk's "=" and "," are its form, given
    const Tokenizer& tokenizer = builtin_tokenizer();
    const int64_t equals = tokenizer.id("="), comma = tokenizer.id(",");
    const double names = static_cast<double>(builtin_vocabulary().names.size());
    double chance = 1.0;
    for (int64_t id : ex.answer) {
      if (id == equals || id == comma) continue;
      chance /= std::find(digits.begin(), digits.end(), id) != digits.end() ? 10.0 : names;
    }
    return chance;
  }
  std::mt19937_64 rng(ex.seed);
  constexpr int kDraws = 256;
  double total = 0;
  for (int k = 0; k < kDraws; ++k) {
    std::vector<int64_t> guess;
    for (size_t i = 0; i < ex.answer.size(); ++i) guess.push_back(digits[rng() % 10]);
    total += score_f1(guess, ex.answer);
  }
  return total / kDraws;
}

double pick_chance(const TaskExample& ex) {
  if (ex.task == "kv_retrieval" || ex.task == "needle" || ex.task == "passage_retrieval" || ex.task == "kv_update")
    return 1.0 / static_cast<double>(1 + ex.num_distractors);
  return -1.0;
}

}  // namespace

EvalReport evaluate_lm(const Llama& model, const std::vector<std::string>& tasks,
                       const std::vector<int64_t>& lengths, int64_t examples) {
  EvalReport report;
  GenerationOptions generation;
  generation.max_new_tokens = kMaxAnswerTokens;
  generation.stop_token_ids = {Tokenizer::kEos};
  for (int64_t length : lengths) {
    for (const std::string& task : tasks) {
      if (length < min_context_tokens(task)) continue;
      const double start = now_seconds();
      EvalCell cell;
      cell.task = task;
      cell.context = length;
      cell.examples = examples;
      double picks = 0;
      for (int64_t i = 0; i < examples; ++i) {
        const TaskExample ex = make_example(task, Split::kValidation, i, length);
        const at::Tensor prompt = at::tensor(ex.prompt, at::kLong);
        const GenerationResult result = generate(*model, prompt, generation);
        cell.score += score_task(task, result.tokens, ex.answer);
        cell.chance += form_chance(ex);
        picks += pick_chance(ex);
      }
      if (examples > 0) {
        cell.score /= static_cast<double>(examples);
        cell.chance /= static_cast<double>(examples);
        cell.pick_chance = picks < 0 ? -1.0 : picks / static_cast<double>(examples);
      }
      cell.seconds = now_seconds() - start;
      report.cells.push_back(cell);
    }
  }
  return report;
}

// ---------------------------------------------------------------------------
// the trainer

struct Trainer::Optim {
  std::vector<std::string> names;      // Hugging Face names, registration order
  std::vector<at::Tensor> parameters;  // same order
  std::unique_ptr<torch::optim::AdamW> adamw;

  torch::optim::AdamWParamState& state_of(size_t i) {
    auto& states = adamw->state();
    const auto it = states.find(c10::guts::to_string(parameters[i].unsafeGetTensorImpl()));
    TORCH_CHECK(it != states.end(), "AdamW holds no state for ", names[i]);
    return static_cast<torch::optim::AdamWParamState&>(*it->second);
  }
};

std::string grown_layer_source(const std::string& name, int64_t from_layers, int64_t to_layers) {
  if (from_layers < 1 || to_layers < from_layers)
    throw std::invalid_argument("grown_layer_source: cannot grow " + std::to_string(from_layers) + " layers into " +
                                std::to_string(to_layers));
  static const std::string kPrefix = "model.layers.";
  if (to_layers == from_layers || name.compare(0, kPrefix.size(), kPrefix) != 0) return name;
  const size_t dot = name.find('.', kPrefix.size());
  const int64_t layer = std::stoll(name.substr(kPrefix.size(), dot - kPrefix.size()));
  // old layer j lands at floor(j * to / from): the first j whose place is
  // at or after this layer tells whether an old one sits here
  const int64_t j = (layer * from_layers + to_layers - 1) / to_layers;
  if (j >= from_layers || j * to_layers / from_layers != layer) return "";
  return kPrefix + std::to_string(j) + name.substr(dot);
}

Trainer::Trainer(TrainLmOptions options, std::ostream* progress)
    : options_(std::move(options)), progress_(progress), optim_(std::make_unique<Optim>()) {
  options_.validate();
  // before any work: one run per folder, and never over a trained model
  run_lock_ = claim_training_folder(options_.out_dir, options_.init_from, options_.force);
  session_start_ = now_seconds();
  at::set_num_threads(options_.threads);
  git_commit_ = git_commit();
  // sizes before allocation: the start checkpoint against its weights, then
  // the model with its gradients and two AdamW moments (4 copies)
  if (!options_.init_from.empty()) {
    check_llama_checkpoint_sizes(options_.init_from,
                                 read_llama_config((fs::path(options_.init_from) / "config.json").string()));
  }
  require_memory(4.0 * 4.0 * llama_parameter_count(options_.model_config()),
                 "train-lm: the model (" + options_.model_config().summary() + ") with its gradients and optimizer");
  {
    // a step's activations kept for backward: per token and layer the
    // residual-stream tensors, the SwiGLU ones and a row of attention
    // probabilities per head over the longest prompt
    const LlamaConfig c = options_.model_config();
    const double longest = static_cast<double>(std::max(options_.max_context, options_.long_context)) + 64.0;
    const double per_token_layer = 20.0 * static_cast<double>(c.hidden_size) +
                                   6.0 * static_cast<double>(c.intermediate_size) +
                                   3.0 * static_cast<double>(c.num_attention_heads) * longest;
    require_memory(4.0 * static_cast<double>(options_.batch_tokens) * static_cast<double>(c.num_hidden_layers) *
                       per_token_layer,
                   "train-lm: --batch-tokens " + std::to_string(options_.batch_tokens) + " (a step's activations)");
  }
  {
    // initial weights are a function of the seed alone
    at::manual_seed(options_.seed);
    model_ = Llama(options_.model_config());
  }
  if (!options_.init_from.empty() && !fs::exists(fs::path(options_.out_dir) / kStateFile)) {
    // a previous stage's weights; the optimizer starts afresh
    const LlamaCheckpoint start = load_llama_checkpoint(options_.init_from);
    const auto source = start.model->hf_named_parameters();
    if (start.config.num_hidden_layers > options_.layers)
      throw std::runtime_error(options_.init_from + ": cannot start from it: it has " +
                               std::to_string(start.config.num_hidden_layers) + " layers, the run asks for " +
                               std::to_string(options_.layers));
    // more layers than the checkpoint: its layers are spread out and the new
    // ones start as identity blocks, so the grown model computes what it did
    at::NoGradGuard no_grad;
    for (const auto& [name, p] : model_->hf_named_parameters()) {
      const std::string from = grown_layer_source(name, start.config.num_hidden_layers, options_.layers);
      if (from.empty()) {
        // an inserted layer starts as the identity: its attention and MLP
        // write nothing into the residual stream until training makes them
        const auto ends_with = [&name = name](const std::string& tail) {
          return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
        };
        if (ends_with("self_attn.o_proj.weight") || ends_with("mlp.down_proj.weight")) p.zero_();
        continue;
      }
      auto it = std::find_if(source.begin(), source.end(), [&](const auto& item) { return item.first == from; });
      if (it == source.end() || !it->second.sizes().equals(p.sizes())) {
        throw std::runtime_error(options_.init_from + ": cannot start from it: tensor " + from +
                                 (it == source.end() ? " is missing" : " has shape " + c10::str(it->second.sizes()) +
                                                                           ", the run needs " + c10::str(p.sizes())));
      }
      p.copy_(it->second);
    }
  }
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& [name, p] : model_->hf_named_parameters()) {
    optim_->names.push_back(name);
    optim_->parameters.push_back(p);
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  auto adam_options = [&](double decay_rate) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(options_.lr)
            .betas({options_.beta1, options_.beta2})
            .eps(1e-8)
            .weight_decay(decay_rate));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, adam_options(options_.weight_decay));
  if (!no_decay.empty()) groups.emplace_back(no_decay, adam_options(0.0));
  optim_->adamw = std::make_unique<torch::optim::AdamW>(groups);

  fs::create_directories(options_.out_dir);
  const std::string state_path = (fs::path(options_.out_dir) / kStateFile).string();
  if (fs::exists(state_path)) resume(state_path);
  write_file_atomically((fs::path(options_.out_dir) / "options.json").string(), options_.to_json() + "\n");
  if (progress_ != nullptr) {
    *progress_ << (resumed_ ? "resuming " : "training ") << options_.model_config().summary() << " in "
               << options_.out_dir << (resumed_ ? " from step " + std::to_string(step_) : "") << ", "
               << options_.threads << " threads\n"
               << std::flush;
  }
}

Trainer::~Trainer() = default;

int64_t Trainer::step() const { return step_; }
bool Trainer::resumed() const { return resumed_; }

void Trainer::resume(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);
  auto meta = [&](const std::string& key) {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw std::runtime_error(path + ": not a train-lm state (no '" + key + "' metadata)");
    return it->second;
  };
  if (meta("format") != kStateFormat)
    throw std::runtime_error(path + ": not a train-lm state (format '" + meta("format") + "')");
  const TrainLmOptions saved = TrainLmOptions::from_json(meta("options"), path);
  throw_if_resume_options_differ(path, options_.resume_mismatches(saved));
  restore_adamw_state(file, *optim_->adamw, optim_->parameters, optim_->names);
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  generator.set_state(file.at("rng/torch_cpu"));
  try {
    step_ = parse_int64(meta("step"), path + ": metadata step");
    tokens_seen_ = parse_int64(meta("tokens_seen"), path + ": metadata tokens_seen");
    elapsed_before_ = parse_finite_double(meta("elapsed_seconds"), path + ": metadata elapsed_seconds");
  } catch (const std::logic_error&) {
    throw std::runtime_error(path + ": bad step / tokens_seen / elapsed_seconds metadata");
  }
  resumed_ = true;
  const fs::path eval_path = fs::path(options_.out_dir) / "eval.json";
  if (fs::exists(eval_path)) last_eval_json_ = read_file(eval_path.string());

  // records past the checkpoint belong to the interrupted session and will be redone
  keep_log_records_up_to((fs::path(options_.out_dir) / "train_log.jsonl").string(), step_);
}

StepStats Trainer::train_step() {
  const double start = now_seconds();
  const TrainBatch batch = make_train_batch(options_, step_);
  const double lr = learning_rate(options_, step_);
  for (auto& group : optim_->adamw->param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

  optim_->adamw->zero_grad();
  const at::Tensor logits = model_->forward(batch.inputs);  // [B, T, V]
  const int64_t vocab = logits.size(-1);
  const at::Tensor flat = logits.reshape({-1, vocab});      // [B*T, V]
  const at::Tensor targets = batch.targets.reshape({-1});   // [B*T]
  const at::Tensor answer_rows = batch.answer_mask.reshape({-1}).nonzero().squeeze(1);  // [N]
  const at::Tensor answer_logits = flat.index_select(0, answer_rows);                  // [N, V]
  const at::Tensor answer_targets = targets.index_select(0, answer_rows);              // [N]
  const at::Tensor answer_loss = at::cross_entropy_loss(answer_logits, answer_targets);
  const at::Tensor context_targets = at::where(batch.context_mask.reshape({-1}), targets, at::full({}, -100, at::kLong));
  at::Tensor loss = answer_loss;
  at::Tensor context_loss;
  if (options_.context_loss_weight > 0) {
    context_loss = at::cross_entropy_loss(flat, context_targets);
    loss = answer_loss + options_.context_loss_weight * context_loss;
  } else {
    at::NoGradGuard no_grad;
    context_loss = at::cross_entropy_loss(flat.detach(), context_targets);
  }
  const double loss_value = loss.item<double>();
  if (!std::isfinite(loss_value))
    throw std::runtime_error("train-lm: loss is " + str(loss_value) + " at step " + str(step_) + " (context " +
                             str(batch.context) + "); lower --lr");
  loss.backward();

  // global norm clipping, as torch.nn.utils.clip_grad_norm_
  double grad_norm = 0;
  {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> norms;
    for (const at::Tensor& p : optim_->parameters)
      if (p.grad().defined()) norms.push_back(p.grad().norm());
    grad_norm = at::stack(norms).norm().item<double>();
    if (options_.grad_clip > 0 && grad_norm > options_.grad_clip) {
      const double scale = options_.grad_clip / (grad_norm + 1e-6);
      for (const at::Tensor& p : optim_->parameters)
        if (p.grad().defined()) p.grad().mul_(scale);
    }
  }
  optim_->adamw->step();
  ++step_;
  tokens_seen_ += batch.tokens();

  StepStats stats;
  stats.step = step_;
  stats.loss = loss_value;
  stats.answer_loss = answer_loss.item<double>();
  stats.context_loss = context_loss.item<double>();
  stats.grad_norm = grad_norm;
  stats.lr = lr;
  stats.context = batch.context;
  stats.tokens = batch.tokens();
  {
    // per task: answer tokens right, and questions whose every answer token
    // is right (under teacher forcing that is exactly a correct greedy answer)
    const at::Tensor right = (answer_logits.detach().argmax(-1) == answer_targets).to(at::kLong);  // [N]
    const at::Tensor rows = at::div(answer_rows, batch.inputs.size(1), "floor");                   // [N] sequence of each
    const at::Tensor questions = batch.answer_question.reshape({-1}).index_select(0, answer_rows);  // [N]
    auto r = right.accessor<int64_t, 1>();
    auto s = rows.accessor<int64_t, 1>();
    auto q = questions.accessor<int64_t, 1>();
    std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> per_question;  // (seq, q) -> (right, total)
    for (int64_t i = 0; i < right.size(0); ++i) {
      auto& cell = per_question[{s[i], q[i]}];
      cell.first += r[i];
      cell.second += 1;
    }
    for (const auto& [key, counts] : per_question) {
      auto& cell = stats.per_task[batch.tasks[static_cast<size_t>(key.first)]];
      cell[0] += counts.first;
      cell[1] += counts.second;
      cell[2] += counts.first == counts.second ? 1 : 0;
      cell[3] += 1;
      if (key.second == 0) {
        cell[4] += counts.first == counts.second ? 1 : 0;
        cell[5] += 1;
      }
    }
  }
  stats.seconds = now_seconds() - start;
  log_progress(stats);
  if (step_ % options_.checkpoint_every == 0 || step_ == options_.steps) save_checkpoint();
  if (options_.eval_every > 0 && step_ % options_.eval_every == 0 && step_ < options_.steps) evaluate_and_record();
  return stats;
}

void Trainer::log_progress(const StepStats& stats) {
  window_.push_back(stats);
  if (step_ % options_.log_every != 0 && step_ != options_.steps) return;
  double loss = 0, answer_loss = 0, context_loss = 0, seconds = 0, grad = 0;
  int64_t tokens = 0, right = 0, total = 0;
  std::map<std::string, std::array<int64_t, 6>> per_task;
  for (const StepStats& s : window_) {
    loss += s.loss;
    answer_loss += s.answer_loss;
    context_loss += s.context_loss;
    seconds += s.seconds;
    grad += s.grad_norm;
    tokens += s.tokens;
    for (const auto& [task, c] : s.per_task) {
      auto& t = per_task[task];
      for (size_t k = 0; k < t.size(); ++k) t[k] += c[k];
      right += c[0];
      total += c[1];
    }
  }
  const double n = static_cast<double>(window_.size());
  const double elapsed = elapsed_before_ + now_seconds() - session_start_;
  const double eta = seconds / n * static_cast<double>(options_.steps - step_);
  json tasks_json = json::object();
  std::ostringstream task_line;
  for (const auto& [task, c] : per_task) {
    tasks_json[task] = {{"answer_token_acc", c[1] ? static_cast<double>(c[0]) / c[1] : 0.0},
                        {"answer_exact", c[3] ? static_cast<double>(c[2]) / c[3] : 0.0},
                        {"questions", c[3]},
                        {"first_question_exact", c[5] ? static_cast<double>(c[4]) / c[5] : 0.0},
                        {"first_questions", c[5]}};
  }
  const json record = {{"kind", "train"},
                       {"step", step_},
                       {"steps", options_.steps},
                       {"loss", loss / n},
                       {"answer_loss", answer_loss / n},
                       {"context_loss", context_loss / n},
                       {"answer_token_acc", total ? static_cast<double>(right) / total : 0.0},
                       {"grad_norm", grad / n},
                       {"lr", stats.lr},
                       {"context", stats.context},
                       {"tokens_per_second", static_cast<double>(tokens) / seconds},
                       {"seconds_per_step", seconds / n},
                       {"tokens_seen", tokens_seen_},
                       {"elapsed_seconds", elapsed},
                       {"eta_seconds", eta},
                       {"tasks", tasks_json}};
  append_log(record.dump());
  if (progress_ != nullptr) {
    char line[256];
    std::snprintf(line, sizeof line,
                  "step %lld/%lld  loss %.4f (answer %.4f, context %.4f)  answer-acc %.3f  ctx %lld  lr %.2e  "
                  "%.0f tok/s  %.1f s/step  elapsed %s  eta %s",
                  static_cast<long long>(step_), static_cast<long long>(options_.steps), loss / n, answer_loss / n,
                  context_loss / n, total ? static_cast<double>(right) / total : 0.0,
                  static_cast<long long>(stats.context), stats.lr, static_cast<double>(tokens) / seconds,
                  seconds / n, format_duration(elapsed).c_str(), format_duration(eta).c_str());
    *progress_ << line << "\n" << std::flush;
  }
  window_.clear();
}

void Trainer::append_log(const std::string& json_line) {
  const std::string path = (fs::path(options_.out_dir) / "train_log.jsonl").string();
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) throw std::runtime_error(path + ": cannot open for appending");
  std::fputs((json_line + "\n").c_str(), f);
  std::fclose(f);
}

int64_t Trainer::train(const std::function<bool()>& should_stop) {
  while (step_ < options_.steps) {
    if (should_stop && should_stop()) break;
    train_step();
  }
  if (step_ % options_.checkpoint_every != 0 && step_ != options_.steps) save_checkpoint();
  return step_;
}

void Trainer::save_checkpoint() {
  const double elapsed = elapsed_before_ + now_seconds() - session_start_;
  std::map<std::string, at::Tensor> tensors;
  add_adamw_state(*optim_->adamw, optim_->parameters, optim_->names, tensors);
  tensors["rng/torch_cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  const std::map<std::string, std::string> metadata = {{"format", kStateFormat},
                                                       {"version", "1"},
                                                       {"step", std::to_string(step_)},
                                                       {"tokens_seen", std::to_string(tokens_seen_)},
                                                       {"elapsed_seconds", str(elapsed)},
                                                       {"options", options_.to_json()},
                                                       {"git_commit", git_commit_}};
  // one file, written atomically: weights, moments and step can never disagree
  write_safetensors((fs::path(options_.out_dir) / kStateFile).string(), tensors, metadata);
  save_llama_checkpoint(options_.out_dir, model_,
                        {{"namm.step", std::to_string(step_)},
                         {"namm.tokens_seen", std::to_string(tokens_seen_)},
                         {"namm.seed", std::to_string(options_.seed)},
                         {"namm.git_commit", git_commit_},
                         {"namm.command_line", options_.command_line},
                         {"namm.tasks", json(options_.task_list()).dump()},
                         {"namm.trained_with", "namm train-lm (text/train_lm.cpp)"}});
  builtin_tokenizer().save((fs::path(options_.out_dir) / "tokenizer.json").string());
  write_provenance();
}

void Trainer::write_provenance() const {
  const double elapsed = elapsed_before_ + now_seconds() - session_start_;
  const LlamaConfig config = options_.model_config();
  int64_t parameters = 0;
  for (const at::Tensor& p : optim_->parameters) parameters += p.numel();
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
  json provenance = {
      {"what", "Llama-style host trained from scratch by `namm train-lm` on the synthetic long-context task suite"},
      {"command_line", options_.command_line},
      {"seed", options_.seed},
      {"git_commit", git_commit_.empty() ? json(nullptr) : json(git_commit_)},
      {"model", {{"summary", config.summary()}, {"parameters", parameters}, {"config", json::parse(llama_config_json(config))}}},
      {"tokenizer", {{"kind", "builtin word-level"}, {"vocab_size", builtin_tokenizer().vocab_size()},
                     {"fingerprint", builtin_tokenizer().fingerprint()}}},
      {"data",
       {{"generator", "text/tasks.h make_example(task, train split, index, context_tokens)"},
        {"tasks", options_.task_list()},
        {"split", "train (validation split for evaluation; seed ranges disjoint by construction)"},
        {"sequence", "training_sequence: prompt + answer + <eos>, then up to follow_ups further questions about the same context (follow_up_questions), each + answer + <eos>"},
        {"curriculum", "context grows geometrically from min_context to max_context over the run; each step draws "
                       "uniformly in [current/2, current], or with probability long_fraction in [current, long_context]; "
                       "multiples of 64"},
        {"min_context", options_.min_context},
        {"max_context", options_.max_context},
        {"long_fraction", options_.long_fraction},
        {"long_context", options_.long_context},
        {"batch_tokens", options_.batch_tokens},
        {"follow_ups", options_.follow_ups},
        {"example_index", "hash(seed, step, slot) mod 2^36; tasks round-robin from a hashed offset"}}},
      {"objective", {{"answer_loss", "mean cross-entropy over answer tokens and the closing <eos>"},
                     {"context_loss_weight", options_.context_loss_weight}}},
      {"optimizer", {{"kind", "AdamW (torch::optim)"}, {"lr", options_.lr}, {"warmup_steps", options_.warmup_steps},
                     {"schedule", "linear warm-up, cosine to lr * min_lr_ratio"}, {"min_lr_ratio", options_.min_lr_ratio},
                     {"betas", {options_.beta1, options_.beta2}}, {"weight_decay", options_.weight_decay},
                     {"grad_clip", options_.grad_clip}}},
      {"init_from", options_.init_from.empty() ? json(nullptr) : json(options_.init_from)},
      {"init_from_provenance", init_provenance},
      {"steps_done", step_},
      {"steps_total", options_.steps},
      {"tokens_seen", tokens_seen_},
      {"wall_seconds", elapsed},
      {"threads", options_.threads},
      {"torch_version", TORCH_VERSION},
      {"written", utc_now()},
      {"last_eval", last_eval_json_.empty() ? json(nullptr) : json::parse(last_eval_json_)}};
  write_file_atomically((fs::path(options_.out_dir) / "provenance.json").string(), provenance.dump(2) + "\n");
}

EvalReport Trainer::evaluate_and_record() {
  const double start = now_seconds();
  EvalReport report = evaluate_lm(model_, options_.distinct_tasks(), options_.eval_lengths, options_.eval_examples);
  report.step = step_;
  const std::string out = options_.out_dir;
  write_file_atomically((fs::path(out) / "eval.json").string(), report.to_json() + "\n");
  write_file_atomically((fs::path(out) / "eval.md").string(), report.to_markdown());
  json record = json::parse(report.to_json());
  record["kind"] = "eval";
  record["seconds"] = now_seconds() - start;
  append_log(record.dump());
  last_eval_json_ = report.to_json();
  write_provenance();
  if (progress_ != nullptr) {
    std::ostringstream line;
    line << std::fixed << std::setprecision(3) << "eval step " << step_ << ":";
    for (const EvalCell& c : report.cells) line << " " << c.task << "@" << c.context << "=" << c.score;
    line << " (" << std::setprecision(0) << now_seconds() - start << " s)";
    *progress_ << line.str() << "\n" << std::flush;
  }
  return report;
}

}  // namespace namm
