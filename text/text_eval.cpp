// text_eval: see text_eval.h
#include "text/text_eval.h"

#include "adapters/memory_controller.h"
#include "core/namm_model.h"
#include "text/generation.h"
#include "text/llama_checkpoint.h"
#include "text/tokenizer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <limits>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace namm {
namespace {

// Records attention and never updates: the stand-in policy while the shared
// prefix is fed (its controller's delay lies beyond the prefix).
class RecordOnlyPolicy : public MemoryPolicy {
 public:
  std::string name() const override { return "record-only"; }
  PolicyNeeds needs() const override { return {true, false}; }
  LayerDecision update(const LayerObservation&) override {
    throw std::logic_error("RecordOnlyPolicy::update: the shared prefix must end before any update");
  }
  void reset() override {}
};

at::Tensor prompt_tensor(const TaskExample& example) {
  if (example.prompt.empty()) throw std::invalid_argument("example " + example.task + " #" +
                                                          std::to_string(example.index) + " has an empty prompt");
  return at::tensor(example.prompt, at::kLong);  // [T]
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// mean over tasks of score / full score, leaving out tasks where full scored 0.
double normalized_score(const std::map<std::string, TaskSummary>& tasks,
                        const std::map<std::string, TaskSummary>* full) {
  if (full == nullptr) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0.0;
  int64_t counted = 0;
  for (const auto& [task, summary] : tasks) {
    const auto it = full->find(task);
    if (it == full->end() || !(it->second.mean_score > 0.0)) continue;
    sum += summary.mean_score / it->second.mean_score;
    ++counted;
  }
  return counted > 0 ? sum / static_cast<double>(counted) : std::numeric_limits<double>::quiet_NaN();
}

std::string format_number(double value, int digits) {
  if (!std::isfinite(value)) return "-";
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", digits, value);
  return buffer;
}

}  // namespace

TimedPolicy::TimedPolicy(std::unique_ptr<MemoryPolicy> inner) : inner_(std::move(inner)) {
  if (!inner_) throw std::invalid_argument("TimedPolicy: policy is null");
}

LayerDecision TimedPolicy::update(const LayerObservation& observation) {
  const auto start = std::chrono::steady_clock::now();
  LayerDecision decision = inner_->update(observation);
  seconds_ += seconds_since(start);
  return decision;
}

void AnswerOptions::validate() const {
  if (delay < 1) throw std::invalid_argument("AnswerOptions: delay must be >= 1, got " + std::to_string(delay));
  if (prompt_chunk < 1) {
    throw std::invalid_argument("AnswerOptions: prompt_chunk must be >= 1, got " + std::to_string(prompt_chunk));
  }
  if (max_answer_tokens < 1) {
    throw std::invalid_argument("AnswerOptions: max_answer_tokens must be >= 1, got " +
                                std::to_string(max_answer_tokens));
  }
}

SharedPrefix prefill_shared_prefix(const CausalLm& model, const TaskExample& example, const AnswerOptions& options) {
  options.validate();
  const at::Tensor prompt = prompt_tensor(example);  // [T]
  const int64_t total = prompt.size(0);
  SharedPrefix prefix;
  prefix.length = std::min(options.delay, total);
  // a delay past the prefix: attention is recorded, no update runs
  ControllerOptions recording;
  recording.delay = prefix.length + 1;
  recording.record_statistics = false;
  const int num_layers = static_cast<int>(model.num_layers());
  MemoryController recorder(std::make_unique<RecordOnlyPolicy>(), num_layers, recording);
  prefix.state = model.new_state();
  // the same chunks as a controller with the real delay would cut
  prefix.logits = prefill_tokens(model, prefix.state, prompt.narrow(0, 0, prefix.length), options.prompt_chunk,
                                 &recorder);  // [V]
  prefix.attention.resize(static_cast<size_t>(num_layers));
  for (int l = 0; l < num_layers; ++l) {
    const LayerKvCache& cache = prefix.state.caches[static_cast<size_t>(l)];
    for (int64_t h = 0; h < cache.num_heads(); ++h) {
      prefix.attention[static_cast<size_t>(l)].push_back(recorder.recorder(l)->rows(h, cache));  // [Q, T]
    }
  }
  return prefix;
}

ExampleOutcome answer_with_controller(const CausalLm& model, const TaskExample& example, MemoryController& controller,
                                      const AnswerOptions& options, const SharedPrefix* prefix) {
  options.validate();
  if (controller.options().delay != options.delay) {
    throw std::invalid_argument("answer_with_controller: controller delay " +
                                std::to_string(controller.options().delay) + " != options.delay " +
                                std::to_string(options.delay));
  }
  if (controller.tokens_seen() != 0) {
    throw std::invalid_argument("answer_with_controller: the controller has seen " +
                                std::to_string(controller.tokens_seen()) + " tokens (reset it first)");
  }
  const auto start = std::chrono::steady_clock::now();
  const at::Tensor prompt = prompt_tensor(example);  // [T]
  const int64_t total = prompt.size(0);

  SequenceState state;
  at::Tensor logits;  // [V]
  if (prefix != nullptr) {
    if (prefix->length != std::min(options.delay, total)) {
      throw std::invalid_argument("answer_with_controller: shared prefix of " + std::to_string(prefix->length) +
                                  " tokens, expected min(delay, T) = " +
                                  std::to_string(std::min(options.delay, total)));
    }
    state = prefix->state;  // deep copy: LayerKvCache copies own their storage
    if (controller.policy().needs().attention) {
      for (int l = 0; l < controller.num_layers(); ++l) {
        AttentionRecorder* recorder = controller.recorder(l);
        const auto& rows = prefix->attention[static_cast<size_t>(l)];
        recorder->set_num_heads(static_cast<int64_t>(rows.size()));
        const int64_t epoch = state.caches[static_cast<size_t>(l)].eviction_epoch();
        // a private copy: a policy gets these very rows and candidates run in parallel
        for (size_t h = 0; h < rows.size(); ++h) recorder->record(static_cast<int64_t>(h), rows[h].clone(), epoch);
      }
    }
    controller.after_tokens(prefix->length, state.caches);  // the first update, if the prefix reaches it
    logits = prefix->length < total
                 ? prefill_tokens(model, state, prompt.narrow(0, prefix->length, total - prefix->length),
                                  options.prompt_chunk, &controller)
                 : prefix->logits;
  } else {
    state = model.new_state();
    logits = prefill_tokens(model, state, prompt, options.prompt_chunk, &controller);
  }

  ExampleOutcome outcome;
  outcome.task = example.task;
  outcome.prefill_seconds = seconds_since(start);
  const auto decode_start = std::chrono::steady_clock::now();
  at::Generator unused = at::detail::createCPUGenerator(0);  // greedy draws nothing
  const Continuation answer = continue_sequence(
      model, state, logits, greedy_answer_options(options.max_answer_tokens, Tokenizer::kEos), unused, &controller);
  outcome.decode_seconds = seconds_since(decode_start);
  outcome.prediction = trim_prediction(answer.tokens);
  outcome.score = score_task(example.task, outcome.prediction, example.answer);
  outcome.retained_fraction = controller.mean_retained_fraction();
  const double seen = static_cast<double>(controller.tokens_seen());
  double fraction_sum = 0.0;
  int64_t heads = 0;
  for (const LayerKvCache& cache : state.caches) {
    for (int64_t h = 0; h < cache.num_heads(); ++h, ++heads) {
      fraction_sum += static_cast<double>(cache.length(h)) / seen;
    }
  }
  outcome.final_cache_fraction = heads > 0 ? fraction_sum / static_cast<double>(heads) : 1.0;
  outcome.policy_updates = controller.num_updates();
  if (const auto* timed = dynamic_cast<const TimedPolicy*>(&controller.policy())) {
    outcome.policy_seconds = timed->seconds();
  }
  outcome.seconds = seconds_since(start);
  return outcome;
}

ExampleOutcome answer_example(const CausalLm& model, const TaskExample& example, const PolicySpec& policy,
                              const AnswerOptions& options) {
  ControllerOptions controller_options;
  controller_options.delay = options.delay;
  controller_options.record_statistics = false;
  MemoryController controller(std::make_unique<TimedPolicy>(make_policy(policy)), static_cast<int>(model.num_layers()),
                              controller_options);
  return answer_with_controller(model, example, controller, options);
}

void parallel_for_items(int64_t count, int threads, const std::function<void(int64_t)>& fn) {
  if (threads < 1) throw std::invalid_argument("parallel_for_items: threads must be >= 1, got " + std::to_string(threads));
  if (count <= 0) return;
  const int saved_threads = at::get_num_threads();
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  const int workers = static_cast<int>(std::min<int64_t>(threads, count));
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(workers));
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      // one intra-op thread per worker: parallelism comes from the items, and
      // every item computes the same way whatever the thread count
      at::init_num_threads();
      at::set_num_threads(1);
      for (;;) {
        const int64_t item = next.fetch_add(1);
        if (item >= count || failed.load()) break;
        try {
          fn(item);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
          failed = true;
        }
      }
    });
  }
  for (std::thread& worker : pool) worker.join();
  at::set_num_threads(saved_threads);
  if (error) std::rethrow_exception(error);
}

std::vector<PolicyEvaluation> evaluate_policies(const CausalLm& model, const std::vector<TaskExample>& examples,
                                                const std::vector<PolicySpec>& policies, int threads,
                                                const AnswerOptions& options) {
  options.validate();
  const int64_t num_examples = static_cast<int64_t>(examples.size());
  std::vector<PolicyEvaluation> results(policies.size());
  for (size_t p = 0; p < policies.size(); ++p) {
    results[p].policy = policies[p].name;
    results[p].outcomes.resize(examples.size());
    make_policy(policies[p]);  // an unknown name or missing model fails here, before any work
  }
  // each item writes its own slot, so the results do not depend on the schedule
  parallel_for_items(static_cast<int64_t>(policies.size()) * num_examples, threads, [&](int64_t item) {
    const size_t p = static_cast<size_t>(item / num_examples);
    const size_t e = static_cast<size_t>(item % num_examples);
    results[p].outcomes[e] = answer_example(model, examples[e], policies[p], options);
  });
  for (PolicyEvaluation& result : results) {
    double retained = 0.0;
    for (size_t e = 0; e < examples.size(); ++e) {
      const ExampleOutcome& outcome = result.outcomes[e];
      const int64_t length = static_cast<int64_t>(examples[e].prompt.size());
      for (TaskSummary* summary : {&result.tasks[outcome.task], &result.tasks_by_length[length][outcome.task]}) {
        summary->examples += 1;
        summary->mean_score += outcome.score;
        summary->mean_retained_fraction += outcome.retained_fraction;
        summary->mean_final_cache_fraction += outcome.final_cache_fraction;
      }
      retained += outcome.retained_fraction;
    }
    const auto to_means = [](std::map<std::string, TaskSummary>& tasks) {
      for (auto& [task, summary] : tasks) {
        const double n = static_cast<double>(summary.examples);
        summary.mean_score /= n;
        summary.mean_retained_fraction /= n;
        summary.mean_final_cache_fraction /= n;
      }
    };
    to_means(result.tasks);
    for (auto& [length, tasks] : result.tasks_by_length) to_means(tasks);
    result.mean_retained_fraction = num_examples > 0 ? retained / static_cast<double>(num_examples) : 1.0;
  }
  return results;
}

TextComparison compare_policies(const CausalLm& model, std::shared_ptr<const NammModel> namm,
                                const TextComparisonOptions& options) {
  options.answer.validate();
  if (options.tasks.empty()) throw std::invalid_argument("compare_policies: no tasks");
  if (options.context_tokens.empty()) throw std::invalid_argument("compare_policies: no context lengths");
  if (options.examples_per_task < 1) {
    throw std::invalid_argument("compare_policies: examples_per_task must be >= 1, got " +
                                std::to_string(options.examples_per_task));
  }
  TextComparison comparison;
  comparison.tasks = options.tasks;
  comparison.context_tokens = options.context_tokens;
  comparison.examples_per_task = options.examples_per_task;
  comparison.split = to_string(options.split);

  std::vector<TaskExample> examples;
  for (const std::string& task : options.tasks) {
    for (int64_t context : options.context_tokens) {
      for (TaskExample& example :
           make_examples(task, options.split, 0, options.examples_per_task, context)) {
        examples.push_back(std::move(example));
      }
    }
  }

  const bool with_namm = std::find(options.policies.begin(), options.policies.end(), "namm") != options.policies.end();
  std::shared_ptr<const NammModel> frozen;
  if (with_namm) {
    if (!namm) throw std::invalid_argument("compare_policies: policy 'namm' listed but no NAMM model given");
    // evaluation must not learn feature statistics from the test split
    auto copy = std::make_shared<NammModel>(*namm);
    copy->normalizer.freeze();
    frozen = copy;
  }

  std::map<std::string, PolicyEvaluation> evaluations;
  std::map<std::string, std::string> budgets;
  Budget budget = options.fallback_budget;
  if (with_namm) {
    PolicySpec spec;
    spec.name = "namm";
    spec.namm_model = frozen;
    evaluations["namm"] = evaluate_policies(model, examples, {spec}, options.threads, options.answer).front();
    budgets["namm"] = "-";
    comparison.namm_retained_fraction = evaluations["namm"].mean_retained_fraction;
    // a NAMM that evicted everything but the newest token still needs a valid fraction
    budget = Budget{0, std::clamp(comparison.namm_retained_fraction, 1e-6, 1.0)};
  }
  std::vector<PolicySpec> others;
  for (const std::string& name : options.policies) {
    if (name == "namm") continue;
    PolicySpec spec;
    spec.name = name;
    spec.budget = budget;
    spec.seed = options.seed;
    others.push_back(spec);
    budgets[name] = name == "full" ? "-" : budget.to_string();
  }
  for (PolicyEvaluation& evaluation : evaluate_policies(model, examples, others, options.threads, options.answer)) {
    const std::string name = evaluation.policy;
    evaluations[name] = std::move(evaluation);
  }

  // decoded once per example, shared by every policy's predictions
  const Tokenizer& tokenizer = builtin_tokenizer();
  std::vector<std::string> questions;
  questions.reserve(examples.size());
  for (const TaskExample& example : examples)
    questions.push_back(tokenizer.decode(
        std::vector<int64_t>(example.prompt.begin() + example.question_begin, example.prompt.end())));

  const auto full = evaluations.find("full");
  for (const std::string& name : options.policies) {
    const PolicyEvaluation& evaluation = evaluations.at(name);
    ComparisonRow row;
    row.policy = name;
    row.budget = budgets[name];
    row.tasks = evaluation.tasks;
    row.mean_normalized_score = normalized_score(row.tasks, full != evaluations.end() ? &full->second.tasks : nullptr);
    row.mean_retained_fraction = evaluation.mean_retained_fraction;
    for (const auto& [length, tasks] : evaluation.tasks_by_length) {
      LengthSummary& at_length = row.by_length[length];
      const std::map<std::string, TaskSummary>* full_at_length = nullptr;
      if (full != evaluations.end()) {
        const auto found = full->second.tasks_by_length.find(length);
        if (found != full->second.tasks_by_length.end()) full_at_length = &found->second;
      }
      at_length.mean_normalized_score = normalized_score(tasks, full_at_length);
      double retained = 0.0;
      for (const auto& [task, summary] : tasks) {
        at_length.examples += summary.examples;
        retained += summary.mean_retained_fraction * static_cast<double>(summary.examples);
      }
      at_length.mean_retained_fraction = at_length.examples > 0 ? retained / static_cast<double>(at_length.examples) : 1.0;
    }
    comparison.rows.push_back(std::move(row));
    for (size_t e = 0; e < examples.size(); ++e) {
      const TaskExample& example = examples[e];
      const ExampleOutcome& outcome = evaluation.outcomes[e];
      ExamplePrediction prediction;
      prediction.policy = name;
      prediction.task = example.task;
      prediction.context_tokens = static_cast<int64_t>(example.prompt.size());
      prediction.index = example.index;
      prediction.question = questions[e];
      prediction.answer = example.answer_text;
      prediction.prediction = tokenizer.decode(outcome.prediction);
      prediction.score = outcome.score;
      prediction.retained_fraction = outcome.retained_fraction;
      comparison.predictions.push_back(std::move(prediction));
    }
  }
  return comparison;
}

std::string TextComparison::predictions_jsonl() const {
  std::string out;
  for (const ExamplePrediction& p : predictions) {
    const nlohmann::json line = {{"policy", p.policy},
                                 {"task", p.task},
                                 {"context_tokens", p.context_tokens},
                                 {"index", p.index},
                                 {"question", p.question},
                                 {"answer", p.answer},
                                 {"prediction", p.prediction},
                                 {"score", p.score},
                                 {"retained_fraction", p.retained_fraction}};
    out += line.dump() + "\n";
  }
  return out;
}

Llama load_task_model(const std::string& dir) {
  LlamaCheckpoint checkpoint = load_llama_checkpoint(dir);
  const Tokenizer& tokenizer = builtin_tokenizer();
  if (checkpoint.config.vocab_size < tokenizer.vocab_size()) {
    throw std::runtime_error(dir + ": vocabulary of " + std::to_string(checkpoint.config.vocab_size) +
                             " tokens, the tasks need the builtin " + std::to_string(tokenizer.vocab_size()));
  }
  const std::string tokenizer_path = (std::filesystem::path(dir) / "tokenizer.json").string();
  if (std::filesystem::exists(tokenizer_path)) {
    try {
      tokenizer.check_same_vocabulary(Tokenizer::load(tokenizer_path));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(tokenizer_path + ": not the builtin task vocabulary: " + e.what());
    }
  }
  return checkpoint.model;
}

std::string TextComparison::to_json() const {
  nlohmann::json out;
  out["tasks"] = tasks;
  out["context_tokens"] = context_tokens;
  out["examples_per_task"] = examples_per_task;
  out["split"] = split;
  out["namm_retained_fraction"] = namm_retained_fraction;
  out["rows"] = nlohmann::json::array();
  const auto number = [](double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(); };
  for (const ComparisonRow& row : rows) {
    nlohmann::json r;
    r["policy"] = row.policy;
    r["budget"] = row.budget;
    r["mean_normalized_score"] = number(row.mean_normalized_score);
    r["mean_retained_fraction"] = row.mean_retained_fraction;
    nlohmann::json per_task = nlohmann::json::object();
    for (const auto& [task, summary] : row.tasks) {
      per_task[task] = {{"examples", summary.examples},
                        {"score", summary.mean_score},
                        {"retained_fraction", summary.mean_retained_fraction},
                        {"final_cache_fraction", summary.mean_final_cache_fraction}};
    }
    r["tasks"] = per_task;
    nlohmann::json per_length = nlohmann::json::object();
    for (const auto& [length, summary] : row.by_length) {
      per_length[std::to_string(length)] = {{"examples", summary.examples},
                                            {"normalized_score", number(summary.mean_normalized_score)},
                                            {"retained_fraction", summary.mean_retained_fraction}};
    }
    r["by_context_tokens"] = per_length;
    out["rows"].push_back(r);
  }
  return out.dump(2) + "\n";
}

std::string TextComparison::to_markdown() const {
  std::ostringstream out;
  out << "| policy | budget |";
  for (const std::string& task : tasks) out << " " << task << " |";
  out << " norm. score vs full | KV retained |\n|---|---|";
  for (size_t i = 0; i < tasks.size(); ++i) out << "---:|";
  out << "---:|---:|\n";
  for (const ComparisonRow& row : rows) {
    out << "| " << row.policy << " | " << row.budget << " |";
    for (const std::string& task : tasks) {
      const auto it = row.tasks.find(task);
      out << " " << (it == row.tasks.end() ? "-" : format_number(it->second.mean_score, 3)) << " |";
    }
    out << " " << format_number(row.mean_normalized_score, 3) << " | "
        << format_number(100.0 * row.mean_retained_fraction, 1) << "% |\n";
  }
  out << "\n" << split << " split, " << examples_per_task << " examples per task and context length (";
  for (size_t i = 0; i < context_tokens.size(); ++i) out << (i ? ", " : "") << context_tokens[i];
  out << " tokens); baselines at the NAMM's mean retained fraction.\n";
  if (context_tokens.size() < 2) return out.str();

  // the same rows split by prompt length: each normalised against the full cache at that length
  out << "\n| policy |";
  for (int64_t length : context_tokens) out << " " << length << " tokens: norm. score | KV retained |";
  out << "\n|---|";
  for (size_t i = 0; i < context_tokens.size(); ++i) out << "---:|---:|";
  out << "\n";
  for (const ComparisonRow& row : rows) {
    out << "| " << row.policy << " |";
    for (int64_t length : context_tokens) {
      const auto it = row.by_length.find(length);
      if (it == row.by_length.end()) {
        out << " - | - |";
      } else {
        out << " " << format_number(it->second.mean_normalized_score, 3) << " | "
            << format_number(100.0 * it->second.mean_retained_fraction, 1) << "% |";
      }
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace namm
