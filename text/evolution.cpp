// evolution: see evolution.h
#include "text/evolution.h"

#include "adapters/memory_controller.h"
#include "core/atomic_file.h"
#include "core/memory_budget.h"
#include "core/run_lock.h"
#include "core/run_record.h"
#include "core/cluster.h"
#include "core/cma_es.h"
#include "core/namm_policy.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <type_traits>

namespace namm {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kStateFile = "state.json";
constexpr const char* kStateFormat = "namm-evolution";
constexpr int kStateVersion = 1;
const double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

json number_or_null(double value) { return std::isfinite(value) ? json(value) : json(); }
double number_from(const json& value) { return value.is_null() ? kNaN : value.get<double>(); }

std::vector<double> to_vector(const at::Tensor& tensor) {
  const at::Tensor t = tensor.to(at::kDouble).contiguous();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

// Running union of normaliser statistics (Chan et al.'s parallel merge).
struct StatisticsPool {
  double count = 0.0;
  at::Tensor mean, var;  // [F] float64

  void add(const FeatureNormalizer& other) {
    const double nb = other.count();
    if (nb <= 0.0) return;
    if (count == 0.0) {
      count = nb;
      mean = other.mean().to(at::kDouble).clone();
      var = other.variance().to(at::kDouble).clone();
      return;
    }
    const double total = count + nb;
    const at::Tensor delta = other.mean() - mean;  // [F]
    const at::Tensor m2 = var * count + other.variance() * nb + delta.pow(2) * (count * nb / total);
    mean = mean + delta * (nb / total);
    var = m2 / total;
    count = total;
  }

  /// The union as a (frozen) normaliser; an unset one when nothing was added.
  FeatureNormalizer to_normalizer(int64_t features) const {
    FeatureNormalizer out(features);
    if (count > 0) out.set(mean, var, count);
    return out;
  }
};

// Merges candidates' statistics in order; frozen identity when nothing was
// seen (no update ran), so the run still moves on to frozen statistics.
FeatureNormalizer pool_normalizers(const std::vector<FeatureNormalizer>& normalizers, int64_t features) {
  StatisticsPool statistics;
  for (const FeatureNormalizer& normalizer : normalizers) statistics.add(normalizer);
  FeatureNormalizer out = statistics.to_normalizer(features);
  if (statistics.count == 0) out.freeze();
  return out;
}

// A NAMM with base's config and normaliser and the given parameters [P].
NammModel namm_with_params(const NammConfig& config, const FeatureNormalizer& normalizer, const at::Tensor& params) {
  NammModel model;
  model.config = config;
  model.normalizer = normalizer;
  model.params = params.to(at::kFloat).contiguous().clone();  // [P]
  return model;
}

uint64_t stage_seed(uint64_t seed, int64_t stage) {
  // distinct sampling streams per stage, stage 0 keeps the user's seed
  return seed + static_cast<uint64_t>(stage) * 0x9E3779B97F4A7C15ull;
}

std::unique_ptr<CmaEs> new_stage_cma(const EvolutionOptions& options, int64_t stage, const at::Tensor& mean) {
  CmaEsOptions cma;
  cma.dimension = options.namm.bam.param_count();
  cma.population = options.population;
  cma.initial_sigma = options.initial_sigma;
  if (mean.defined()) cma.initial_mean = to_vector(mean);
  cma.seed = stage_seed(options.seed, stage);
  cma.active = options.active_cma;
  return std::make_unique<CmaEs>(cma);
}

// The first key path where two JSON values differ ("" when equal).
std::string first_difference(const json& a, const json& b, const std::string& path) {
  if (a == b) return "";
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
    for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
    for (const std::string& key : keys) {
      const std::string sub = path.empty() ? key : path + "." + key;
      if (!a.contains(key) || !b.contains(key)) return sub;
      const std::string found = first_difference(a[key], b[key], sub);
      if (!found.empty()) return found;
    }
  }
  return path.empty() ? "(root)" : path;
}

// Where a run stands between generations: everything a resume needs besides CMA-ES.
struct RunState {
  int64_t stage = 0;
  int64_t generation = 0;  // completed over the run
  bool finished = false;
  FeatureNormalizer normalizer;
  std::map<std::string, int64_t> next_index;  // per task: the next TRAIN example index
  double last_mean_fitness = kNaN;
  double elapsed_seconds = 0.0;
};

std::string cma_file_name(int64_t generation) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "cma-%06lld.safetensors", static_cast<long long>(generation));
  return buffer;
}

// The language model a run evolves on, as a hash of its config and every
// weight's bytes: a resume with another --lm is refused, whatever its path.
std::string host_fingerprint(const CausalLm& model) {
  uint64_t h = mix64(std::hash<std::string>{}(model.summary()));
  for (const auto& [name, p] : model.hf_named_parameters()) {
    const at::Tensor t = p.detach().to(at::kCPU).contiguous();
    const auto* bytes = static_cast<const unsigned char*>(t.data_ptr());
    const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
    h = mix64(h ^ std::hash<std::string>{}(name));
    for (size_t i = 0; i < n; i += 8) {
      uint64_t word = 0;
      std::memcpy(&word, bytes + i, std::min<size_t>(8, n - i));
      h = mix64(h ^ word);
    }
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(h));
  return text;
}

void save_checkpoint(const std::string& dir, const EvolutionOptions& options, const RunState& state,
                     const CmaEs& cma, const std::string& previous_cma_file, const std::string& host) {
  const std::string cma_name = cma_file_name(state.generation);
  cma.save((fs::path(dir) / cma_name).string());
  json out;
  out["format"] = kStateFormat;
  out["version"] = kStateVersion;
  out["options"] = json::parse(options.fingerprint_json());
  out["host"] = host;
  out["stage"] = state.stage;
  out["generation"] = state.generation;
  out["finished"] = state.finished;
  out["cma_file"] = cma_name;
  const FeatureNormalizer& norm = state.normalizer;
  out["normalizer"] = {{"count", norm.count()},
                       {"frozen", norm.frozen()},
                       {"mean", norm.mean().defined() ? to_vector(norm.mean()) : std::vector<double>{}},
                       {"variance", norm.variance().defined() ? to_vector(norm.variance()) : std::vector<double>{}}};
  out["next_index"] = state.next_index;
  out["last_mean_fitness"] = number_or_null(state.last_mean_fitness);
  out["elapsed_seconds"] = state.elapsed_seconds;
  // state.json names the CMA file, so it goes last; the old CMA file goes after
  write_file_atomically((fs::path(dir) / kStateFile).string(), out.dump(1) + "\n");
  if (!previous_cma_file.empty() && previous_cma_file != cma_name) {
    std::error_code ignored;
    fs::remove(fs::path(dir) / previous_cma_file, ignored);
  }
}

// Loads dir/state.json and its CMA file into state and cma; false when there is no checkpoint.
bool load_checkpoint(const std::string& dir, const EvolutionOptions& options, RunState& state,
                     std::unique_ptr<CmaEs>& cma, std::string& cma_file, const std::string& host) {
  const std::string path = (fs::path(dir) / kStateFile).string();
  if (!fs::exists(path)) return false;
  const std::string text = read_file(path);
  try {
    const json in = json::parse(text);
    if (!in.is_object() || in.value("format", "") != kStateFormat) {
      throw std::runtime_error("not a namm evolution checkpoint (format is not '" + std::string(kStateFormat) + "')");
    }
    if (in.at("version").get<int>() != kStateVersion) {
      throw std::runtime_error("checkpoint version " + in.at("version").dump() + ", this program reads " +
                               std::to_string(kStateVersion));
    }
    const json expected = json::parse(options.fingerprint_json());
    const std::string difference = first_difference(in.at("options"), expected, "");
    if (!difference.empty()) {
      throw std::runtime_error("checkpoint was made with other options (first difference: '" + difference +
                               "'); resume with the same options or use another checkpoint directory");
    }
    const std::string saved_host = in.value("host", std::string());
    if (saved_host != host) {
      throw std::runtime_error("checkpoint was made with another language model (weights fingerprint " +
                               (saved_host.empty() ? std::string("not recorded") : saved_host) + ", --lm " +
                               options.lm_checkpoint + " gives " + host +
                               "); resume with the same --lm or use another checkpoint directory");
    }
    state.stage = in.at("stage").get<int64_t>();
    state.generation = in.at("generation").get<int64_t>();
    state.finished = in.at("finished").get<bool>();
    if (state.stage < 0 || state.stage > static_cast<int64_t>(options.stages.size())) {
      throw std::runtime_error("stage " + std::to_string(state.stage) + " out of range");
    }
    const json& norm = in.at("normalizer");
    const int64_t features = options.namm.spectrogram.num_freqs();
    state.normalizer = FeatureNormalizer(features);
    if (norm.at("frozen").get<bool>()) {
      const std::vector<double> mean = norm.at("mean").get<std::vector<double>>();
      const std::vector<double> var = norm.at("variance").get<std::vector<double>>();
      if (static_cast<int64_t>(mean.size()) != features || static_cast<int64_t>(var.size()) != features) {
        throw std::runtime_error("normalizer has " + std::to_string(mean.size()) + " means and " +
                                 std::to_string(var.size()) + " variances for " + std::to_string(features) +
                                 " features");
      }
      state.normalizer.set(at::tensor(mean, at::kDouble), at::tensor(var, at::kDouble),
                           norm.at("count").get<double>());
    }
    state.next_index = in.at("next_index").get<std::map<std::string, int64_t>>();
    state.last_mean_fitness = number_from(in.at("last_mean_fitness"));
    state.elapsed_seconds = in.at("elapsed_seconds").get<double>();
    cma_file = in.at("cma_file").get<std::string>();
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": corrupt evolution checkpoint: " + e.what());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  cma = std::make_unique<CmaEs>(CmaEs::load((fs::path(dir) / cma_file).string()));  // names its file on error
  if (cma->options().population != options.population ||
      cma->options().dimension != options.namm.bam.param_count()) {
    throw std::runtime_error((fs::path(dir) / cma_file).string() + ": CMA-ES state of population " +
                             std::to_string(cma->options().population) + ", dimension " +
                             std::to_string(cma->options().dimension) + " does not match the options");
  }
  return true;
}

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

json provenance(const EvolutionOptions& options, const RunState& state, int64_t stage_done) {
  std::vector<std::string> tasks;
  json stages = json::array();
  for (const EvolutionStage& stage : options.stages) {
    stages.push_back({{"tasks", stage.tasks}, {"generations", stage.generations}});
    for (const std::string& task : stage.tasks) {
      if (std::find(tasks.begin(), tasks.end(), task) == tasks.end()) tasks.push_back(task);
    }
  }
  json out;
  out["command"] = "namm evolve";
  if (!options.command_line.empty()) out["command_line"] = options.command_line;
  out["tasks"] = tasks;
  out["stages"] = stages;
  out["stages_completed"] = stage_done;
  out["generations"] = state.generation;
  out["population"] = options.population;
  out["initial_sigma"] = options.initial_sigma;
  out["seed"] = options.seed;
  out["prompts_per_task"] = options.prompts_per_task;
  out["screen_draws"] = options.screen_draws;
  out["kv_target"] = options.kv_target;
  out["kv_penalty"] = options.kv_penalty;
  out["context_tokens"] = options.context_tokens;
  out["delay"] = options.namm.delay;
  out["feature_scaling"] = to_string(options.namm.feature_scaling);
  out["git_commit"] = options.git_commit;
  out["lm_checkpoint"] = options.lm_checkpoint;
  out["final_fitness"] = number_or_null(state.last_mean_fitness);
  out["normalizer_count"] = state.normalizer.count();
  return out;
}

}  // namespace

EvolutionStage EvolutionStage::parse(const std::string& text, int64_t default_generations) {
  EvolutionStage stage;
  std::string tasks = text;
  stage.generations = default_generations;
  const size_t colon = text.find(':');
  if (colon != std::string::npos) {
    tasks = text.substr(0, colon);
    const std::string count = text.substr(colon + 1);
    size_t used = 0;
    try {
      stage.generations = std::stoll(count, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != count.size() || count.empty()) {
      throw std::invalid_argument("stage '" + text + "': generations '" + count + "' is not an integer");
    }
  }
  std::stringstream stream(tasks);
  for (std::string task; std::getline(stream, task, ',');) {
    if (task.empty()) continue;
    task_metric(task);  // throws naming an unknown task
    if (std::find(stage.tasks.begin(), stage.tasks.end(), task) != stage.tasks.end()) {
      throw std::invalid_argument("stage '" + text + "' names task '" + task + "' twice");
    }
    stage.tasks.push_back(task);
  }
  if (stage.tasks.empty()) throw std::invalid_argument("stage '" + text + "' names no task");
  if (stage.generations < 1) {
    throw std::invalid_argument("stage '" + text + "': generations must be >= 1, got " +
                                std::to_string(stage.generations));
  }
  return stage;
}

double fitness_from_scores(const std::vector<double>& scores, const std::vector<double>& full,
                           const std::vector<std::string>& tasks) {
  if (scores.size() != full.size() || scores.size() != tasks.size()) {
    throw std::invalid_argument("fitness_from_scores: " + std::to_string(scores.size()) + " scores, " +
                                std::to_string(full.size()) + " full scores, " + std::to_string(tasks.size()) +
                                " tasks");
  }
  std::vector<std::string> order;
  std::map<std::string, std::pair<double, double>> sums;  // task -> (candidate, full)
  for (size_t e = 0; e < scores.size(); ++e) {
    if (!sums.count(tasks[e])) order.push_back(tasks[e]);
    auto& sum = sums[tasks[e]];
    if (!(full[e] > 0.0)) continue;  // no ratio without a full-cache score
    sum.first += scores[e];
    sum.second += full[e];
  }
  double total = 0.0;
  int64_t counted = 0;
  for (const std::string& task : order) {
    const auto& [candidate, reference] = sums[task];
    if (!(reference > 0.0)) continue;
    total += candidate / reference;
    ++counted;
  }
  return counted > 0 ? total / static_cast<double>(counted) : 1.0;
}

double penalised_fitness(double fitness, double retained_fraction, double target, double penalty) {
  return fitness - penalty * std::max(0.0, retained_fraction - target);
}

FitnessReport evaluate_candidates(const CausalLm& model, const NammModel& base, const at::Tensor& candidates,
                                  const std::vector<TaskExample>& examples, const FitnessOptions& options) {
  options.answer.validate();
  const int64_t params = base.config.bam.param_count();
  if (candidates.dim() != 2 || candidates.size(1) != params) {
    throw std::invalid_argument("evaluate_candidates: candidates must be [K, " + std::to_string(params) + "], got " +
                                c10::str(candidates.sizes()));
  }
  if (options.answer.delay != base.config.delay) {
    throw std::invalid_argument("evaluate_candidates: answer delay " + std::to_string(options.answer.delay) +
                                " != the NAMM's delay " + std::to_string(base.config.delay));
  }
  const int64_t k_count = candidates.size(0);
  const int64_t e_count = static_cast<int64_t>(examples.size());
  const int num_layers = static_cast<int>(model.num_layers());
  const bool pool = !base.normalizer.frozen();

  std::vector<std::shared_ptr<const NammModel>> models;
  for (int64_t k = 0; k < k_count; ++k) {
    models.push_back(std::make_shared<const NammModel>(namm_with_params(base.config, base.normalizer, candidates[k])));
  }

  FitnessReport report;
  report.scores.assign(static_cast<size_t>(k_count), std::vector<double>(static_cast<size_t>(e_count), 0.0));
  report.full_scores.assign(static_cast<size_t>(e_count), 0.0);
  std::vector<std::vector<ExampleOutcome>> outcomes(static_cast<size_t>(k_count),
                                                    std::vector<ExampleOutcome>(static_cast<size_t>(e_count)));
  std::vector<double> full_seconds(static_cast<size_t>(e_count), 0.0);
  std::vector<FeatureNormalizer> normalizers(pool ? static_cast<size_t>(k_count * e_count) : 0);
  const auto stopped = [&] { return options.stop != nullptr && options.stop->load(); };

  ControllerOptions controller_options;
  controller_options.delay = options.answer.delay;
  controller_options.record_statistics = false;

  // a block of examples at a time: prefixes hold [delay, delay] attention rows per layer and head
  const int64_t block = std::max<int64_t>(1, 2 * static_cast<int64_t>(options.threads));
  for (int64_t first = 0; first < e_count && !stopped(); first += block) {
    const int64_t count = std::min(block, e_count - first);
    std::vector<SharedPrefix> prefixes(static_cast<size_t>(options.share_prefix ? count : 0));
    std::vector<double> prefix_seconds(static_cast<size_t>(count), 0.0);
    if (options.share_prefix) {
      parallel_for_items(count, options.threads, [&](int64_t i) {
        if (stopped()) return;
        const auto start = std::chrono::steady_clock::now();
        prefixes[static_cast<size_t>(i)] = prefill_shared_prefix(model, examples[static_cast<size_t>(first + i)], options.answer);
        prefix_seconds[static_cast<size_t>(i)] = seconds_since(start);
      });
    }
    for (double s : prefix_seconds) report.prefix_seconds += s;
    // item (example i, policy j): j = 0 is the full cache, j = k + 1 candidate k
    parallel_for_items(count * (k_count + 1), options.threads, [&](int64_t item) {
      if (stopped()) return;
      const int64_t i = item / (k_count + 1);
      const int64_t k = item % (k_count + 1) - 1;
      const size_t e = static_cast<size_t>(first + i);
      std::unique_ptr<MemoryPolicy> policy;
      if (k < 0 && !options.compute_full) return;
      if (k < 0) {
        policy = make_policy(PolicySpec{});  // "full"
      } else {
        policy = std::make_unique<NammPolicy>(models[static_cast<size_t>(k)]);
      }
      MemoryController controller(std::make_unique<TimedPolicy>(std::move(policy)), num_layers, controller_options);
      const SharedPrefix* prefix = options.share_prefix ? &prefixes[static_cast<size_t>(i)] : nullptr;
      ExampleOutcome outcome = answer_with_controller(model, examples[e], controller, options.answer, prefix);
      if (k < 0) {
        report.full_scores[e] = outcome.score;
        full_seconds[e] = outcome.seconds;
        return;
      }
      if (pool) {
        const auto& timed = static_cast<const TimedPolicy&>(controller.policy());
        normalizers[static_cast<size_t>(k * e_count) + e] =
            static_cast<const NammPolicy&>(timed.inner()).normalizer();
      }
      outcomes[static_cast<size_t>(k)][e] = std::move(outcome);
    });
  }
  report.interrupted = stopped();
  for (double s : full_seconds) report.full_seconds += s;

  std::vector<std::string> tasks;
  for (const TaskExample& example : examples) tasks.push_back(example.task);
  for (double full : report.full_scores) report.informative_examples += full > 0.0 ? 1 : 0;
  for (int64_t k = 0; k < k_count; ++k) {
    double retained = 0.0;
    for (int64_t e = 0; e < e_count; ++e) {
      const ExampleOutcome& outcome = outcomes[static_cast<size_t>(k)][static_cast<size_t>(e)];
      report.scores[static_cast<size_t>(k)][static_cast<size_t>(e)] = outcome.score;
      retained += outcome.retained_fraction;
      report.candidate_seconds += outcome.seconds;
      report.candidate_prefill_seconds += outcome.prefill_seconds;
      report.candidate_decode_seconds += outcome.decode_seconds;
      report.candidate_policy_seconds += outcome.policy_seconds;
    }
    report.retained_fraction.push_back(e_count > 0 ? retained / static_cast<double>(e_count) : 1.0);
    report.fitness.push_back(fitness_from_scores(report.scores[static_cast<size_t>(k)], report.full_scores, tasks));
  }

  if (pool) {
    // each candidate's statistics merged in example order, then the candidates
    // in order: independent of the schedule and of how ranks share candidates
    for (int64_t k = 0; k < k_count; ++k) {
      StatisticsPool statistics;
      for (int64_t e = 0; e < e_count; ++e) statistics.add(normalizers[static_cast<size_t>(k * e_count + e)]);
      report.candidate_normalizers.push_back(statistics.to_normalizer(base.config.spectrogram.num_freqs()));
    }
    report.pooled_normalizer = pool_normalizers(report.candidate_normalizers, base.config.spectrogram.num_freqs());
  }
  return report;
}

void EvolutionOptions::validate() const {
  if (stages.empty()) throw std::invalid_argument("evolution: no stages (give at least one --stage)");
  for (const EvolutionStage& stage : stages) {
    if (stage.tasks.empty()) throw std::invalid_argument("evolution: a stage has no tasks");
    if (stage.generations < 1) {
      throw std::invalid_argument("evolution: stage " + join(stage.tasks, ",") + " has " +
                                  std::to_string(stage.generations) + " generations (must be >= 1)");
    }
    for (const std::string& task : stage.tasks) {
      task_metric(task);
      for (int64_t context : context_tokens) {
        if (context < min_context_tokens(task)) {
          throw std::invalid_argument("evolution: context_tokens " + std::to_string(context) + " below task " +
                                      task + "'s minimum " + std::to_string(min_context_tokens(task)));
        }
      }
    }
  }
  if (population < 2) throw std::invalid_argument("evolution: population must be >= 2, got " + std::to_string(population));
  if (!(initial_sigma > 0)) {
    throw std::invalid_argument("evolution: initial sigma must be > 0, got " + std::to_string(initial_sigma));
  }
  if (prompts_per_task < 1) {
    throw std::invalid_argument("evolution: prompts_per_task must be >= 1, got " + std::to_string(prompts_per_task));
  }
  if (context_tokens.empty()) throw std::invalid_argument("evolution: no context lengths");
  if (screen_draws < 0) {
    throw std::invalid_argument("evolution: screen_draws must be >= 0, got " + std::to_string(screen_draws));
  }
  if (!(kv_target >= 0.0 && kv_target <= 1.0)) {
    throw std::invalid_argument("evolution: kv_target must be in [0, 1], got " + std::to_string(kv_target));
  }
  if (!(kv_penalty >= 0.0) || !std::isfinite(kv_penalty)) {
    throw std::invalid_argument("evolution: kv_penalty must be finite and >= 0, got " + std::to_string(kv_penalty));
  }
  if (fitness.threads < 1) {
    throw std::invalid_argument("evolution: threads must be >= 1, got " + std::to_string(fitness.threads));
  }
  namm.validate();
  fitness.answer.validate();
  if (fitness.answer.delay != namm.delay) {
    throw std::invalid_argument("evolution: answer delay " + std::to_string(fitness.answer.delay) +
                                " != NAMM delay " + std::to_string(namm.delay));
  }
}

std::string EvolutionOptions::fingerprint_json() const {
  json out;
  json stage_list = json::array();
  for (const EvolutionStage& stage : stages) {
    stage_list.push_back({{"tasks", stage.tasks}, {"generations", stage.generations}});
  }
  out["stages"] = stage_list;
  out["population"] = population;
  out["initial_sigma"] = initial_sigma;
  out["seed"] = seed;
  out["active_cma"] = active_cma;
  out["prompts_per_task"] = prompts_per_task;
  out["context_tokens"] = context_tokens;
  out["evaluate_mean"] = evaluate_mean;
  if (screen_draws > 0) out["screen_draws"] = screen_draws;
  if (kv_penalty > 0.0) out["kv_pressure"] = {kv_target, kv_penalty};
  out["namm"] = json::parse(namm.to_json());
  out["answer"] = {{"delay", fitness.answer.delay},
                   {"prompt_chunk", fitness.answer.prompt_chunk},
                   {"max_answer_tokens", fitness.answer.max_answer_tokens}};
  return out.dump();
}

std::string GenerationRecord::to_json() const {
  json out;
  out["stage"] = stage + 1;
  out["stage_generation"] = stage_generation;
  out["generation"] = generation;
  out["best_fitness"] = number_or_null(best_fitness);
  out["mean_candidate_fitness"] = number_or_null(mean_candidate_fitness);
  out["mean_fitness"] = number_or_null(mean_fitness);
  out["mean_score"] = number_or_null(mean_score);
  out["sigma"] = sigma;
  out["mean_retained_fraction"] = number_or_null(mean_retained_fraction);
  out["mean_retained_fraction_of_mean"] = number_or_null(mean_retained_fraction_of_mean);
  out["prompts"] = prompts;
  out["informative_prompts"] = informative_prompts;
  out["screened_prompts"] = screened_prompts;
  out["seconds"] = seconds;
  out["profile"] = {{"prefix", prefix_seconds},       {"full", full_seconds},
                    {"candidates", candidate_seconds}, {"candidate_prefill", candidate_prefill_seconds},
                    {"candidate_decode", candidate_decode_seconds}, {"namm_updates", policy_seconds},
                    {"cma", cma_seconds},              {"checkpoint", checkpoint_seconds},
                    {"cluster", cluster_seconds}};
  out["ranks"] = ranks;
  out["cluster_bytes"] = cluster_bytes;
  return out.dump();
}

namespace {

// ---------------------------------------------------------------------------
// Spreading a generation over ranks. Rank 0 broadcasts a work order (the
// candidates, the normaliser, the prompts), every rank scores its contiguous
// share of the candidates, rank 0 gathers the shares. Messages are plain
// little-endian byte strings: both ends are this program.

class ByteWriter {
 public:
  template <class T>
  void put(T value) {
    static_assert(std::is_trivially_copyable<T>::value, "plain values only");
    bytes_.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  void put_string(const std::string& text) {
    put<int64_t>(static_cast<int64_t>(text.size()));
    bytes_ += text;
  }
  void put_doubles(const std::vector<double>& values) {
    put<int64_t>(static_cast<int64_t>(values.size()));
    bytes_.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(double));
  }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(const std::string& bytes) : bytes_(bytes) {}
  template <class T>
  T get() {
    need(sizeof(T));
    T value;
    std::memcpy(&value, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }
  std::string get_string() {
    const auto length = static_cast<size_t>(get<int64_t>());
    need(length);
    std::string out = bytes_.substr(offset_, length);
    offset_ += length;
    return out;
  }
  std::vector<double> get_doubles() {
    const auto count = static_cast<size_t>(get<int64_t>());
    need(count * sizeof(double));
    std::vector<double> out(count);
    std::memcpy(out.data(), bytes_.data() + offset_, count * sizeof(double));
    offset_ += count * sizeof(double);
    return out;
  }

 private:
  void need(size_t n) const {
    if (offset_ + n > bytes_.size()) {
      throw std::runtime_error("evolution message truncated: need " + std::to_string(n) + " bytes at " +
                               std::to_string(offset_) + " of " + std::to_string(bytes_.size()));
    }
  }
  const std::string& bytes_;
  size_t offset_ = 0;
};

void put_normalizer(ByteWriter& out, const FeatureNormalizer& normalizer) {
  out.put<uint8_t>(normalizer.frozen() ? 1 : 0);
  out.put<double>(normalizer.count());
  out.put_doubles(normalizer.mean().defined() ? to_vector(normalizer.mean()) : std::vector<double>{});
  out.put_doubles(normalizer.variance().defined() ? to_vector(normalizer.variance()) : std::vector<double>{});
}

FeatureNormalizer get_normalizer(ByteReader& in, int64_t features) {
  const bool frozen = in.get<uint8_t>() != 0;
  const double count = in.get<double>();
  const std::vector<double> mean = in.get_doubles(), var = in.get_doubles();
  // an unfrozen normaliser is a fresh one (it only learns inside a generation)
  FeatureNormalizer out(features);
  if (frozen && !mean.empty()) out.set(at::tensor(mean, at::kDouble), at::tensor(var, at::kDouble), count);
  if (frozen) out.freeze();
  return out;
}

enum class Order : uint8_t { kFinish = 0, kEvaluate = 1 };

/// What a rank scored: candidates [first, last) of the work order.
struct Share {
  int64_t first = 0, last = 0;
  std::vector<std::vector<double>> scores;   // [last - first][E]
  std::vector<double> retained;              // [last - first]
  std::vector<FeatureNormalizer> normalizers;  // [last - first] when pooling
  double candidate_seconds = 0, prefill_seconds = 0, decode_seconds = 0, policy_seconds = 0;
  bool interrupted = false;
};

std::string encode_share(const FitnessReport& report, int64_t first, int64_t last) {
  ByteWriter out;
  out.put<int64_t>(first);
  out.put<int64_t>(last);
  for (int64_t k = 0; k < last - first; ++k) {
    out.put_doubles(report.scores[static_cast<size_t>(k)]);
    out.put<double>(report.retained_fraction[static_cast<size_t>(k)]);
  }
  out.put<uint8_t>(report.candidate_normalizers.empty() ? 0 : 1);
  for (const FeatureNormalizer& normalizer : report.candidate_normalizers) put_normalizer(out, normalizer);
  out.put<double>(report.candidate_seconds);
  out.put<double>(report.candidate_prefill_seconds);
  out.put<double>(report.candidate_decode_seconds);
  out.put<double>(report.candidate_policy_seconds);
  out.put<uint8_t>(report.interrupted ? 1 : 0);
  return std::move(out.bytes());
}

Share decode_share(const std::string& bytes, int64_t features) {
  ByteReader in(bytes);
  Share share;
  share.first = in.get<int64_t>();
  share.last = in.get<int64_t>();
  for (int64_t k = share.first; k < share.last; ++k) {
    share.scores.push_back(in.get_doubles());
    share.retained.push_back(in.get<double>());
  }
  if (in.get<uint8_t>() != 0) {
    for (int64_t k = share.first; k < share.last; ++k) share.normalizers.push_back(get_normalizer(in, features));
  }
  share.candidate_seconds = in.get<double>();
  share.prefill_seconds = in.get<double>();
  share.decode_seconds = in.get<double>();
  share.policy_seconds = in.get<double>();
  share.interrupted = in.get<uint8_t>() != 0;
  return share;
}

/// The examples named in a work order, made the same way on every rank.
std::vector<TaskExample> read_examples(ByteReader& in, const ExampleMaker& maker) {
  std::vector<TaskExample> examples;
  const int64_t count = in.get<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    const std::string task = in.get_string();
    const int64_t index = in.get<int64_t>();
    const int64_t context = in.get<int64_t>();
    examples.push_back(maker(task, Split::kTrain, index, context));
  }
  return examples;
}

/// The fault a test asks for with NAMM_EVOLVE_FAULT="RANK:GENERATION".
bool fault_requested(int rank, int64_t generation) {
  const char* text = std::getenv("NAMM_EVOLVE_FAULT");
  if (text == nullptr) return false;
  int fault_rank = -1;
  long long fault_generation = -1;
  return std::sscanf(text, "%d:%lld", &fault_rank, &fault_generation) == 2 && fault_rank == rank &&
         fault_generation == generation;
}

/// Rank 0's side of one generation over the cluster: same report as
/// evaluate_candidates on one process.
FitnessReport evaluate_on_cluster(Cluster& cluster, const CausalLm& model, const NammModel& base,
                                  const at::Tensor& rows, const std::vector<TaskExample>& examples,
                                  int64_t generation, const FitnessOptions& options) {
  const int64_t k_count = rows.size(0), params = rows.size(1);
  ByteWriter order;
  order.put<uint8_t>(static_cast<uint8_t>(Order::kEvaluate));
  order.put<int64_t>(generation);
  order.put<int64_t>(k_count);
  order.put<int64_t>(params);
  const at::Tensor flat = rows.to(at::kDouble).contiguous();
  order.bytes().append(reinterpret_cast<const char*>(flat.data_ptr<double>()),
                       static_cast<size_t>(flat.numel()) * sizeof(double));
  put_normalizer(order, base.normalizer);
  order.put<int64_t>(static_cast<int64_t>(examples.size()));
  for (const TaskExample& example : examples) {
    order.put_string(example.task);
    order.put<int64_t>(example.index);
    order.put<int64_t>(static_cast<int64_t>(example.prompt.size()));
  }
  auto start = std::chrono::steady_clock::now();
  cluster.broadcast(order.bytes());
  double cluster_seconds = seconds_since(start);

  const auto [first, last] = share_of(k_count, 0, cluster.size());
  FitnessReport report = evaluate_candidates(model, base, rows.slice(0, first, last), examples, options);
  start = std::chrono::steady_clock::now();
  const std::vector<std::string> gathered = cluster.gather(encode_share(report, first, last));
  cluster_seconds += seconds_since(start);
  int64_t cluster_bytes = static_cast<int64_t>(order.bytes().size()) * (cluster.size() - 1);
  for (size_t r = 1; r < gathered.size(); ++r) cluster_bytes += static_cast<int64_t>(gathered[r].size());

  // assemble every rank's share in candidate order
  const int64_t features = base.config.spectrogram.num_freqs();
  const bool pool = !base.normalizer.frozen();
  std::vector<std::string> tasks;
  for (const TaskExample& example : examples) tasks.push_back(example.task);
  FitnessReport all;
  all.full_scores = report.full_scores;
  all.informative_examples = report.informative_examples;
  all.prefix_seconds = report.prefix_seconds;
  all.full_seconds = report.full_seconds;
  for (size_t r = 0; r < gathered.size(); ++r) {
    const Share share = decode_share(gathered[r], features);
    const auto expected = share_of(k_count, static_cast<int>(r), cluster.size());
    if (share.first != expected.first || share.last != expected.second) {
      throw std::runtime_error("rank " + std::to_string(r) + " scored candidates [" + std::to_string(share.first) +
                               ", " + std::to_string(share.last) + "), expected [" + std::to_string(expected.first) +
                               ", " + std::to_string(expected.second) + ")");
    }
    for (size_t k = 0; k < share.scores.size(); ++k) {
      all.scores.push_back(share.scores[k]);
      all.retained_fraction.push_back(share.retained[k]);
      all.fitness.push_back(fitness_from_scores(share.scores[k], all.full_scores, tasks));
      if (pool) all.candidate_normalizers.push_back(share.normalizers.at(k));
    }
    all.candidate_seconds += share.candidate_seconds;
    all.candidate_prefill_seconds += share.prefill_seconds;
    all.candidate_decode_seconds += share.decode_seconds;
    all.candidate_policy_seconds += share.policy_seconds;
    all.interrupted = all.interrupted || share.interrupted;
  }
  all.interrupted = all.interrupted || report.interrupted;
  if (pool) all.pooled_normalizer = pool_normalizers(all.candidate_normalizers, features);
  all.cluster_seconds = cluster_seconds;
  all.cluster_bytes = cluster_bytes;
  return all;
}

void finish_cluster(Cluster* cluster) {
  if (cluster == nullptr || cluster->size() <= 1) return;
  ByteWriter order;
  order.put<uint8_t>(static_cast<uint8_t>(Order::kFinish));
  cluster->broadcast(order.bytes());
}

}  // namespace

void serve_evolution(const CausalLm& model, const EvolutionOptions& options) {
  Cluster* cluster = options.cluster;
  if (cluster == nullptr || cluster->rank() == 0) {
    throw std::invalid_argument("serve_evolution runs on ranks other than 0 of a cluster");
  }
  options.validate();
  const ExampleMaker maker = options.make_example ? options.make_example : ExampleMaker(make_example);
  const int64_t features = options.namm.spectrogram.num_freqs();
  for (;;) {
    std::string bytes;
    cluster->broadcast(bytes);
    ByteReader in(bytes);
    if (static_cast<Order>(in.get<uint8_t>()) == Order::kFinish) return;
    const int64_t generation = in.get<int64_t>();
    if (fault_requested(cluster->rank(), generation)) std::raise(SIGKILL);
    const int64_t k_count = in.get<int64_t>(), params = in.get<int64_t>();
    at::Tensor rows = at::empty({k_count, params}, at::kDouble);
    for (int64_t i = 0; i < k_count * params; ++i) rows.data_ptr<double>()[i] = in.get<double>();
    NammModel base = NammModel::zeros(options.namm);
    base.normalizer = get_normalizer(in, features);
    const std::vector<TaskExample> examples = read_examples(in, maker);

    const auto [first, last] = share_of(k_count, cluster->rank(), cluster->size());
    FitnessOptions fitness = options.fitness;
    fitness.compute_full = false;  // rank 0 runs the references
    fitness.stop = nullptr;        // rank 0 decides when the run stops
    const FitnessReport report = evaluate_candidates(model, base, rows.slice(0, first, last), examples, fitness);
    cluster->gather(encode_share(report, first, last));
  }
}

EvolutionResult evolve(const CausalLm& model, const EvolutionOptions& options) {
  if (options.cluster != nullptr && options.cluster->rank() != 0) {
    throw std::invalid_argument("evolve runs on rank 0; rank " + std::to_string(options.cluster->rank()) +
                                " runs serve_evolution");
  }
  options.validate();
  const ExampleMaker maker = options.make_example ? options.make_example : ExampleMaker(make_example);
  {
    // the prompts of one generation are held at once: bound them before drawing any
    size_t most_tasks = 0;
    for (const EvolutionStage& stage : options.stages) most_tasks = std::max(most_tasks, stage.tasks.size());
    const int64_t longest = *std::max_element(options.context_tokens.begin(), options.context_tokens.end());
    const double prompt_bytes = static_cast<double>(options.prompts_per_task) * static_cast<double>(most_tasks) *
                                static_cast<double>(std::max<int64_t>(options.screen_draws, 1)) *
                                static_cast<double>(longest) * 2.0 * sizeof(int64_t);
    require_memory(prompt_bytes, "evolution: " + std::to_string(options.prompts_per_task) + " prompts per task of " +
                                     std::to_string(longest) + " tokens");
  }
  const bool checkpoints = !options.checkpoint_dir.empty();
  // one run per checkpoint directory: a second is refused, naming the first
  const std::unique_ptr<FileLock> checkpoint_lock =
      checkpoints ? lock_run_folder(options.checkpoint_dir, "checkpoint directory") : nullptr;
  const std::string host = host_fingerprint(model);
  const std::string log_path = !options.log_path.empty() ? options.log_path
                               : checkpoints ? (fs::path(options.checkpoint_dir) / "log.jsonl").string()
                                             : std::string();
  const int64_t num_stages = static_cast<int64_t>(options.stages.size());
  int64_t total_generations = 0;
  for (const EvolutionStage& stage : options.stages) total_generations += stage.generations;

  RunState state;
  std::unique_ptr<CmaEs> cma;
  std::string cma_file;
  if (!(checkpoints && load_checkpoint(options.checkpoint_dir, options, state, cma, cma_file, host))) {
    state.normalizer = FeatureNormalizer(options.namm.spectrogram.num_freqs());
    cma = new_stage_cma(options, 0, at::Tensor());
  }
  // the log is written before each checkpoint: records past the checkpoint
  // (a kill between the two) are dropped here and redone, never duplicated
  if (!log_path.empty()) keep_log_records_up_to(log_path, state.generation, "generation");
  double last_checkpoint_seconds = 0.0;

  const auto current_model = [&](int64_t stages_done) {
    NammModel out = namm_with_params(options.namm, state.normalizer, cma->mean());
    out.provenance_json = provenance(options, state, stages_done).dump();
    return out;
  };

  EvolutionResult result;
  double seconds_this_call = 0.0;
  while (!state.finished) {
    const int64_t stage_index = state.stage;
    const EvolutionStage& stage = options.stages[static_cast<size_t>(stage_index)];
    const auto start = std::chrono::steady_clock::now();

    // a fresh batch of TRAIN prompts per task, counted so a resume draws the same ones
    std::vector<TaskExample> examples;
    std::map<std::string, int64_t> next_index = state.next_index;
    int64_t drawn_total = 0;
    for (const std::string& task : stage.tasks) {
      if (options.screen_draws == 0) {
        for (int64_t i = 0; i < options.prompts_per_task; ++i) {
          const int64_t index = next_index[task]++;
          const int64_t context = options.context_tokens[static_cast<size_t>(i) % options.context_tokens.size()];
          examples.push_back(maker(task, Split::kTrain, index, context));
        }
        drawn_total += options.prompts_per_task;
        continue;
      }
      // screening: draw exactly the prompts still needed each round (never
      // more), so the prompts kept do not depend on the thread count
      const int64_t limit = options.prompts_per_task * options.screen_draws;
      int64_t kept = 0, drawn = 0;
      while (kept < options.prompts_per_task && drawn < limit) {
        const int64_t round = std::min(options.prompts_per_task - kept, limit - drawn);
        std::vector<TaskExample> batch;
        for (int64_t i = 0; i < round; ++i) {
          const int64_t index = next_index[task]++;
          const int64_t context =
              options.context_tokens[static_cast<size_t>(drawn + i) % options.context_tokens.size()];
          batch.push_back(maker(task, Split::kTrain, index, context));
        }
        std::vector<double> full_scores(static_cast<size_t>(round), 0.0);
        parallel_for_items(round, options.fitness.threads, [&](int64_t i) {
          full_scores[static_cast<size_t>(i)] =
              answer_example(model, batch[static_cast<size_t>(i)], PolicySpec{}, options.fitness.answer).score;
        });
        for (int64_t i = 0; i < round; ++i) {
          if (full_scores[static_cast<size_t>(i)] > 0.0) {
            examples.push_back(std::move(batch[static_cast<size_t>(i)]));
            ++kept;
          }
        }
        drawn += round;
      }
      drawn_total += drawn;
    }
    if (examples.empty()) {
      throw std::runtime_error("evolution: the full cache answered none of the " + std::to_string(drawn_total) +
                               " screened prompts of stage " + std::to_string(stage_index + 1) +
                               "; the host cannot guide evolution on these tasks and lengths");
    }

    const double sigma = cma->sigma();
    auto phase = std::chrono::steady_clock::now();
    const at::Tensor population = cma->ask();  // [lambda, P] float64
    double cma_seconds = seconds_since(phase);
    const at::Tensor rows = options.evaluate_mean ? at::cat({population, cma->mean().unsqueeze(0)}, 0) : population;
    NammModel base = NammModel::zeros(options.namm);
    base.normalizer = state.normalizer;
    FitnessOptions fitness_options = options.fitness;
    fitness_options.stop = options.stop;
    const bool spread = options.cluster != nullptr && options.cluster->size() > 1;
    const FitnessReport report =
        spread ? evaluate_on_cluster(*options.cluster, model, base, rows, examples, state.generation + 1, fitness_options)
               : evaluate_candidates(model, base, rows, examples, fitness_options);
    if (report.interrupted) break;  // the generation is dropped; the last checkpoint stays

    const int64_t lambda = options.population;
    std::vector<double> fitness(report.fitness.begin(), report.fitness.begin() + lambda);
    for (int64_t k = 0; k < lambda; ++k) {
      fitness[static_cast<size_t>(k)] = penalised_fitness(
          fitness[static_cast<size_t>(k)], report.retained_fraction[static_cast<size_t>(k)], options.kv_target,
          options.kv_penalty);
    }
    phase = std::chrono::steady_clock::now();
    cma->tell(at::tensor(fitness, at::kDouble));
    cma_seconds += seconds_since(phase);
    if (!state.normalizer.frozen()) state.normalizer = report.pooled_normalizer;  // learned in generation 1 only
    state.next_index = next_index;
    state.generation += 1;

    GenerationRecord record;
    record.stage = stage_index;
    record.stage_generation = cma->generation();
    record.generation = state.generation;
    record.best_fitness = *std::max_element(fitness.begin(), fitness.end());
    double fitness_sum = 0.0, retained_sum = 0.0;
    for (int64_t k = 0; k < lambda; ++k) {
      fitness_sum += fitness[static_cast<size_t>(k)];
      retained_sum += report.retained_fraction[static_cast<size_t>(k)];
    }
    record.mean_candidate_fitness = fitness_sum / static_cast<double>(lambda);
    record.mean_retained_fraction = retained_sum / static_cast<double>(lambda);
    record.mean_score = options.evaluate_mean ? report.fitness.back() : kNaN;
    record.mean_fitness = options.evaluate_mean ? penalised_fitness(report.fitness.back(), report.retained_fraction.back(),
                                                                    options.kv_target, options.kv_penalty)
                                                : kNaN;
    record.mean_retained_fraction_of_mean = options.evaluate_mean ? report.retained_fraction.back() : kNaN;
    record.sigma = sigma;
    record.prompts = static_cast<int64_t>(examples.size());
    record.informative_prompts = report.informative_examples;
    record.screened_prompts = drawn_total;
    if (options.evaluate_mean) state.last_mean_fitness = record.mean_fitness;
    record.prefix_seconds = report.prefix_seconds;
    record.full_seconds = report.full_seconds;
    record.candidate_seconds = report.candidate_seconds;
    record.candidate_prefill_seconds = report.candidate_prefill_seconds;
    record.candidate_decode_seconds = report.candidate_decode_seconds;
    record.policy_seconds = report.candidate_policy_seconds;
    record.cma_seconds = cma_seconds;
    record.cluster_seconds = report.cluster_seconds;
    record.cluster_bytes = report.cluster_bytes;
    record.ranks = options.cluster != nullptr ? options.cluster->size() : 1;

    // a finished stage saves its mean; the next starts from it
    if (cma->generation() >= stage.generations) {
      if (checkpoints) {
        current_model(stage_index + 1)
            .save((fs::path(options.checkpoint_dir) / ("namm-stage" + std::to_string(stage_index + 1) + ".safetensors"))
                      .string());
      }
      state.stage += 1;
      if (state.stage < num_stages) {
        cma = new_stage_cma(options, state.stage, cma->mean());
      } else {
        state.finished = true;
      }
    }
    // the log line first, then the checkpoint that makes it final: a kill in
    // between leaves a record past the checkpoint, which a resume drops
    record.checkpoint_seconds = last_checkpoint_seconds;  // the checkpoint written after the previous generation
    record.seconds = seconds_since(start);
    if (!log_path.empty()) {
      std::ofstream log(log_path, std::ios::app);
      if (!log) throw std::runtime_error(log_path + ": cannot open the log for appending");
      log << record.to_json() << "\n";
      log.flush();
      if (!log) throw std::runtime_error(log_path + ": cannot append to the log");
    }
    if (checkpoints) {
      phase = std::chrono::steady_clock::now();
      // the elapsed time stored is the time up to this checkpoint
      state.elapsed_seconds += seconds_since(start);
      const std::string previous = cma_file;
      save_checkpoint(options.checkpoint_dir, options, state, *cma, previous, host);
      cma_file = cma_file_name(state.generation);
      last_checkpoint_seconds = seconds_since(phase);
    } else {
      state.elapsed_seconds += seconds_since(start);
    }
    seconds_this_call += seconds_since(start);
    result.history.push_back(record);

    if (options.progress != nullptr) {
      const double per_generation = seconds_this_call / static_cast<double>(result.history.size());
      const double eta = per_generation * static_cast<double>(total_generations - state.generation);
      char line[512];
      std::snprintf(line, sizeof(line),
                    "stage %lld/%lld [%s] gen %lld/%lld (total %lld/%lld)  best %.4f  cand %.4f  mean %.4f  "
                    "sigma %.5f  kv %.1f%%  prompts %lld/%lld (%lld drawn)  %.1fs  ETA %s",
                    static_cast<long long>(stage_index + 1), static_cast<long long>(num_stages),
                    join(stage.tasks, ",").c_str(), static_cast<long long>(record.stage_generation),
                    static_cast<long long>(stage.generations), static_cast<long long>(state.generation),
                    static_cast<long long>(total_generations), record.best_fitness, record.mean_candidate_fitness,
                    record.mean_fitness, record.sigma, 100.0 * record.mean_retained_fraction,
                    static_cast<long long>(record.informative_prompts), static_cast<long long>(record.prompts),
                    static_cast<long long>(record.screened_prompts), record.seconds, format_duration(eta).c_str());
      *options.progress << line << std::endl;
    }
    if (options.stop != nullptr && options.stop->load()) break;
    if (options.stop_after_generations > 0 &&
        static_cast<int64_t>(result.history.size()) >= options.stop_after_generations) {
      break;
    }
  }

  finish_cluster(options.cluster);
  result.generations_done = state.generation;
  result.finished = state.finished;
  result.final_fitness = state.last_mean_fitness;
  result.model = current_model(state.stage);
  if (state.finished && !options.output_path.empty()) result.model.save(options.output_path);
  return result;
}

}  // namespace namm
