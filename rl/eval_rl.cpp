// eval_rl: see eval_rl.h
#include "rl/eval_rl.h"

#include "core/namm_model.h"
#include "core/namm_provenance.h"
#include "core/policy_registry.h"
#include "core/run_record.h"
#include "rl/mujoco_env.h"

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

namespace namm {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// default tokens between policy updates without a NAMM (as `namm rollout`)
constexpr int64_t kDefaultDelay = 64;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// "23.4%" for a fraction
std::string percent(double fraction, int digits = 1) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f%%", digits, 100.0 * fraction);
  return buf;
}

std::string fixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

// one row to run: its rollout options (seed set per task)
struct RowPlan {
  std::string name;
  RolloutOptions options;
};

// kept / seen tokens by kind over every recorded step of report's episodes
std::array<double, 3> kind_fractions(const RolloutReport& report) {
  std::array<double, 3> kept{0, 0, 0}, seen{0, 0, 0};
  for (const EpisodeResult& e : report.episodes) {
    for (const StepTokenKinds& step : e.token_kinds) {
      for (int k = 0; k < 3; ++k) {
        const double n = static_cast<double>(std::max<int64_t>(0, (step.tokens_seen - k + 2) / 3));
        for (const auto& layer : step.kept) {
          kept[static_cast<size_t>(k)] += static_cast<double>(layer[static_cast<size_t>(k)]);
          seen[static_cast<size_t>(k)] += n * static_cast<double>(report.heads);
        }
      }
    }
  }
  std::array<double, 3> out{-1, -1, -1};
  for (int k = 0; k < 3; ++k) {
    if (seen[static_cast<size_t>(k)] > 0) out[static_cast<size_t>(k)] = kept[static_cast<size_t>(k)] / seen[static_cast<size_t>(k)];
  }
  return out;
}

// Runs plans' rows (every seed x episode) over options.threads workers and
// appends one EvalRlRow per plan to rows, in plan order.
void run_rows(const DecisionTransformer& model, const DtSidecar& sidecar, const std::string& env_name,
              const std::vector<RowPlan>& plans, const EvalRlOptions& options, std::vector<EvalRlRow>& rows,
              const std::function<void(const EvalRlRow&)>& row_done) {
  const int per_row = options.seeds * options.episodes;
  const size_t tasks = plans.size() * static_cast<size_t>(per_row);
  std::vector<EpisodeResult> results(tasks);
  std::vector<std::atomic<int>> remaining(plans.size());
  for (auto& r : remaining) r.store(per_row);

  // a row's summary, once all of its episodes are in
  auto make_row = [&](size_t p) {
    EvalRlRow row;
    row.name = plans[p].name;
    const RolloutOptions& o = plans[p].options;
    row.budget = o.window > 0 || o.policy.name == "full" || o.policy.name == "namm" ? "-" : o.policy.budget.to_string();
    RolloutReport& report = row.report;
    report.env = env_name;
    report.policy = o.window > 0 ? "window" : o.policy.name;
    report.budget = row.budget;
    report.delay = o.window > 0 || o.policy.name == "full" ? 0 : o.delay;
    report.window = o.window;
    report.layers = model->config().n_layer;
    report.heads = model->config().n_head;
    for (int s = 0; s < options.seeds; ++s) {
      double sum = 0.0;
      for (int e = 0; e < options.episodes; ++e) {
        const EpisodeResult& r = results[p * static_cast<size_t>(per_row) + static_cast<size_t>(s * options.episodes + e)];
        sum += r.normalized_score;
        report.episodes.push_back(r);
      }
      row.seed_mean_scores.push_back(sum / options.episodes);
    }
    if (o.window <= 0) row.kept_fraction_by_kind = kind_fractions(report);
    return row;
  };

  // envs are built here, one per worker: MuJoCo's XML loader is not meant to be called concurrently
  const int workers = static_cast<int>(std::max<size_t>(1, std::min<size_t>(tasks, static_cast<size_t>(options.threads))));
  std::vector<std::unique_ptr<MujocoEnv>> envs;
  for (int w = 0; w < workers; ++w) envs.push_back(make_env(env_name));

  std::atomic<size_t> next{0};
  std::mutex done_mutex;
  std::vector<std::optional<EvalRlRow>> finished(plans.size());
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
  auto work = [&](int w) {
    at::set_num_threads(1);
    try {
      for (size_t task = next++; task < tasks && !failed; task = next++) {
        const size_t p = task / static_cast<size_t>(per_row);
        const int within = static_cast<int>(task % static_cast<size_t>(per_row));
        const int seed = within / options.episodes, episode = within % options.episodes;
        RolloutOptions o = plans[p].options;
        o.seed = options.base_seed + 1000ULL * static_cast<uint64_t>(seed);
        o.policy.seed = static_cast<uint64_t>(seed);
        o.episodes = options.episodes;
        results[task] = run_episode(model, sidecar, *envs[static_cast<size_t>(w)], o, episode);
        if (--remaining[p] == 0) {
          EvalRlRow row = make_row(p);
          std::lock_guard<std::mutex> lock(done_mutex);
          if (row_done) row_done(row);
          finished[p] = std::move(row);
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(done_mutex);
      if (!failure) failure = std::current_exception();
      failed = true;
    }
  };
  // at::set_num_threads also sets MKL's process-wide count: restore the caller's afterwards
  const int caller_threads = at::get_num_threads();
  if (workers == 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    for (int w = 0; w < workers; ++w) pool.emplace_back(work, w);
    for (std::thread& t : pool) t.join();
  }
  at::set_num_threads(caller_threads);
  if (failure) std::rethrow_exception(failure);
  for (auto& row : finished) rows.push_back(std::move(*row));
}

}  // namespace

int64_t EvalRlOptions::resolved_delay() const {
  if (delay > 0) return delay;
  return namm ? namm->config.delay : kDefaultDelay;
}

void EvalRlOptions::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("eval-rl: " + what); };
  if (seeds < 1) bad("seeds must be >= 1, got " + std::to_string(seeds));
  if (episodes < 1) bad("episodes must be >= 1, got " + std::to_string(episodes));
  if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
  if (max_steps < 0) bad("max_steps must be >= 0 (0 = the env's limit), got " + std::to_string(max_steps));
  if (window < 0) bad("window must be >= 0 (0 = no window row), got " + std::to_string(window));
  if (delay < 0) bad("delay must be >= 0 (0 = the NAMM's own), got " + std::to_string(delay));
  if (!(fallback_budget.fraction > 0 && fallback_budget.fraction <= 1) &&
      !(fallback_budget.fraction == 0 && fallback_budget.tokens >= 1)) {
    bad("the fallback budget must be a share in (0, 1] or at least 1 token, got " + fallback_budget.to_string());
  }
  if (namm && resolved_delay() % namm->config.spectrogram.hop != 0) {
    bad("delay " + std::to_string(resolved_delay()) + " is not a multiple of the NAMM's hop " +
        std::to_string(namm->config.spectrogram.hop));
  }
  const std::vector<std::string>& names = policy_names();
  std::set<std::string> seen;
  for (const std::string& b : baselines) {
    if (std::find(names.begin(), names.end(), b) == names.end() || b == "full" || b == "namm") {
      bad("baseline '" + b + "' is not one of h2o, l2, streaming, tova, recency, random");
    }
    if (!seen.insert(b).second) bad("baseline '" + b + "' is listed twice");
  }
  if (!std::isfinite(target_return)) bad("target_return is not finite");
}

double EvalRlRow::std_of_seed_means() const {
  if (seed_mean_scores.empty()) return 0.0;
  double mean = 0.0;
  for (double v : seed_mean_scores) mean += v;
  mean /= static_cast<double>(seed_mean_scores.size());
  double var = 0.0;
  for (double v : seed_mean_scores) var += (v - mean) * (v - mean);
  return std::sqrt(var / static_cast<double>(seed_mean_scores.size()));
}

EvalRlEnvResult evaluate_rl_env(const DecisionTransformer& model, const DtSidecar& sidecar, const std::string& env_name,
                                const EvalRlOptions& options, const EvalRlProgress& progress) {
  options.validate();
  const auto start = Clock::now();
  EvalRlEnvResult out;
  out.env = env_name;
  out.model_summary = model->config().summary();
  out.delay = options.resolved_delay();
  out.heads = model->config().n_head;

  RolloutOptions base;
  base.delay = out.delay;
  base.max_steps = options.max_steps;
  base.target_return = options.target_return;
  base.episodes = options.episodes;
  base.record_token_kinds = true;
  base.policy.sinks = options.sinks;
  base.policy.h2o_recent_share = options.h2o_recent_share;
  // run_rollouts' checks (model sizes against the env, the sidecar's env) and its
  // target return, through a one-step episode before any worker starts
  {
    RolloutOptions probe = base;
    probe.episodes = 1;
    probe.max_steps = 1;
    probe.record_token_kinds = false;
    out.target_return = run_rollouts(model, sidecar, env_name, probe).target_return;
  }

  // phase 1: the rows whose size is their own; phase 2: the baselines at the NAMM's size
  std::vector<RowPlan> first, second;
  if (options.window > 0) {
    RowPlan p{"window-" + std::to_string(options.window), base};
    p.options.window = options.window;
    p.options.record_token_kinds = false;
    first.push_back(p);
  }
  first.push_back(RowPlan{"full", base});
  if (options.namm) {
    RowPlan p{"namm", base};
    p.options.policy.name = "namm";
    p.options.policy.namm_model = options.namm;
    first.push_back(p);
  }
  const size_t total_tasks = (first.size() + options.baselines.size()) * static_cast<size_t>(options.seeds * options.episodes);
  size_t done_tasks = 0;
  auto report_row = [&](const EvalRlRow& row) {
    done_tasks += static_cast<size_t>(options.seeds * options.episodes);
    if (!progress) return;
    const double elapsed = seconds_since(start);
    const double eta = done_tasks < total_tasks ? elapsed / static_cast<double>(done_tasks) *
                                                      static_cast<double>(total_tasks - done_tasks)
                                                : 0.0;
    char line[384];
    std::snprintf(line, sizeof line,
                  "[%s] %-10s score %5.1f +- %4.1f  return %7.1f  KV %5.1f%% (%6.1f tokens/head)  %.2f ms/step  "
                  "[%zu/%zu episodes, %s elapsed, ETA %s]",
                  env_name.c_str(), row.name.c_str(), row.report.mean_score(), row.report.std_score(),
                  row.report.mean_return(), 100.0 * row.report.retained_fraction(), row.report.mean_cached_tokens(),
                  row.report.model_ms_per_step(), done_tasks, total_tasks, format_duration(elapsed).c_str(),
                  format_duration(eta).c_str());
    progress(line);
  };
  run_rows(model, sidecar, env_name, first, options, out.rows, report_row);

  if (options.namm) {
    for (const EvalRlRow& row : out.rows) {
      if (row.name == "namm") out.namm_retained = row.report.retained_fraction();
    }
    out.baseline_budget = Budget{0, std::clamp(out.namm_retained, 1e-6, 1.0)};
  } else {
    out.baseline_budget = options.fallback_budget;
  }
  for (const std::string& name : options.baselines) {
    RowPlan p{name, base};
    p.options.policy.name = name;
    p.options.policy.budget = out.baseline_budget;
    second.push_back(p);
  }
  run_rows(model, sidecar, env_name, second, options, out.rows, report_row);

  // keep per-step records only for the plotted episode
  const std::string plotted = options.namm ? "namm" : (options.baselines.empty() ? "full" : options.baselines.front());
  for (EvalRlRow& row : out.rows) {
    if (row.name == plotted && !row.report.episodes.empty()) {
      out.plot_kinds = row.report.episodes.front().token_kinds;
      out.plot_policy = plotted == "namm" || plotted == "full" ? plotted : plotted + " at " + percent(out.baseline_budget.fraction);
    }
    for (EpisodeResult& e : row.report.episodes) {
      e.token_kinds.clear();
      e.token_kinds.shrink_to_fit();
    }
  }
  out.wall_seconds = seconds_since(start);
  return out;
}

void check_dt_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw std::runtime_error(dir + ": no Decision Transformer here (no such directory; train one with `namm train-dt`)");
  }
  for (const char* file : {"config.json", "model.safetensors"}) {
    if (!fs::exists(fs::path(dir) / file, ec)) {
      throw std::runtime_error(dir + ": no Decision Transformer here (" + file + " missing; train one with `namm train-dt`)");
    }
  }
}

bool namm_evolved_on_rl(const std::string& provenance_json) {
  static const DomainVocabulary rl{{"hopper", "walker", "decision", "mujoco"}, {"rl"}};
  return provenance_names_domain(provenance_json, rl);
}

std::string eval_rl_markdown(const std::vector<EvalRlEnvResult>& results, const EvalRlOptions& options,
                             const std::string& command, const std::vector<std::string>& skipped) {
  std::string md = "# eval-rl: Decision Transformer memory settings\n\n";
  md += "Command:\n\n    " + command + "\n\n";
  md += "Each row runs " + std::to_string(options.seeds) + " seeds x " + std::to_string(options.episodes) +
        " episodes (seed s, episode e resets the env with seed " + std::to_string(options.base_seed) +
        " + 1000 s + e; every row sees the same episodes)" +
        (options.max_steps > 0 ? ", at most " + std::to_string(options.max_steps) + " steps each" : ", up to 1000 steps each") +
        ". Columns:\n\n";
  md += "- **D4RL score**: 100 (R - random) / (expert - random), mean +- std over all episodes; 100 = expert, 0 = random.\n"
        "- **seed std**: the std of the per-seed mean scores (how much a one-seed result moves).\n"
        "- **return**: mean episode return.\n"
        "- **KV retained**: cached tokens over the tokens a full cache would hold, summed over every step "
        "(the window row: tokens re-encoded per step over that).\n"
        "- **tokens/head**: mean cached tokens per head per step.\n"
        "- **kept R / s / a**: share of the return, state and action tokens seen that are still cached, over all steps.\n"
        "- **ms/step**: model time per env step (embedding, transformer, action head; with several workers this "
        "includes their contention).\n\n"
        "Rows: `window-K` is the standard evaluation (the last K steps re-encoded every step, no cache kept); "
        "`full` keeps the whole episode's KV cache; `namm` prunes it with the NAMM evolved on language, zero-shot; "
        "the baselines prune to the NAMM's measured retained fraction (as a share of the tokens so far, enforced "
        "at each update, so between updates they hold slightly more).\n";
  for (const std::string& line : skipped) md += "\nSkipped: " + line + "\n";
  for (const EvalRlEnvResult& r : results) {
    md += "\n## " + r.env + "\n\n";
    md += "Model `" + r.model_dir + "` (" + r.model_summary + "), target return " + fixed(r.target_return, 0) +
          ", pruning every " + std::to_string(r.delay) + " tokens.\n";
    if (r.namm_retained >= 0) {
      md += "NAMM `" + r.namm_path + "` kept " + percent(r.namm_retained) + " of the full cache; the baselines ran at that share.\n";
    } else {
      md += "No NAMM given: the namm row is left out and the baselines ran at the fallback budget " +
            r.baseline_budget.to_string() + ".\n";
    }
    md += "Wall time " + format_duration(r.wall_seconds) + ".\n\n";
    md += "| memory | D4RL score | seed std | return | KV retained | tokens/head | kept R / s / a | ms/step |\n";
    md += "|---|---|---|---|---|---|---|---|\n";
    for (const EvalRlRow& row : r.rows) {
      const RolloutReport& rep = row.report;
      std::string kinds = "-";
      if (row.kept_fraction_by_kind[0] >= 0) {
        kinds = percent(row.kept_fraction_by_kind[0], 0) + " / " + percent(row.kept_fraction_by_kind[1], 0) + " / " +
                percent(row.kept_fraction_by_kind[2], 0);
      }
      md += "| " + row.name + " | " + fixed(rep.mean_score(), 1) + " +- " + fixed(rep.std_score(), 1) + " | " +
            fixed(row.std_of_seed_means(), 1) + " | " + fixed(rep.mean_return(), 1) + " | " +
            percent(rep.retained_fraction()) + " | " + fixed(rep.mean_cached_tokens(), 0) + " | " + kinds + " | " +
            fixed(rep.model_ms_per_step(), 2) + " |\n";
    }
    if (!r.plot_kinds.empty()) {
      md += "\nkinds_" + r.env + ".png: the token kinds " + r.plot_policy + " keeps over the first episode of seed 0.\n";
    }
  }
  return md;
}

std::string eval_rl_json(const std::vector<EvalRlEnvResult>& results, const EvalRlOptions& options,
                         const std::string& command, const std::vector<std::string>& skipped) {
  json envs = json::array();
  for (const EvalRlEnvResult& r : results) {
    json rows = json::array();
    for (const EvalRlRow& row : r.rows) {
      json entry = json::parse(row.report.to_json());
      entry["name"] = row.name;
      entry["seed_mean_scores"] = row.seed_mean_scores;
      entry["std_of_seed_means"] = row.std_of_seed_means();
      entry["kept_fraction_by_kind"] = row.kept_fraction_by_kind[0] >= 0 ? json(row.kept_fraction_by_kind) : json(nullptr);
      rows.push_back(entry);
    }
    envs.push_back({{"env", r.env},
                    {"model_dir", r.model_dir},
                    {"model", r.model_summary},
                    {"namm", r.namm_path},
                    {"target_return", r.target_return},
                    {"delay", r.delay},
                    {"namm_retained_fraction", r.namm_retained >= 0 ? json(r.namm_retained) : json(nullptr)},
                    {"baseline_budget", r.baseline_budget.to_string()},
                    {"plot_policy", r.plot_policy},
                    {"wall_seconds", r.wall_seconds},
                    {"rows", rows}});
  }
  const json out = {{"command", command},
                    {"seeds", options.seeds},
                    {"episodes", options.episodes},
                    {"base_seed", options.base_seed},
                    {"max_steps", options.max_steps},
                    {"window", options.window},
                    {"threads", options.threads},
                    {"skipped", skipped},
                    {"envs", envs}};
  return out.dump(2) + "\n";
}

}  // namespace namm
