// `namm eval-text`: scores and KV cache kept by every memory policy on the
// held-out TEST split of the language tasks; the baselines run at the NAMM's
// measured mean retained fraction. Writes JSON and a markdown table.
#include "apps/options.h"
#include "core/atomic_file.h"
#include "core/namm_model.h"
#include "text/text_eval.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <sstream>

namespace namm::app {
namespace {

// "--tasks a,b --tasks c" -> {a, b, c}
std::vector<std::string> split_lists(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const std::string& item : items) {
    for (std::string& part : split_list(item)) out.push_back(std::move(part));
  }
  return out;
}

}  // namespace

int run_eval_text(const std::vector<std::string>& args) {
  std::string lm_dir, namm_path, json_path, md_path, predictions_path, split = "test", budget_text = "50%";
  std::vector<std::string> task_args, policy_args;
  std::vector<int64_t> contexts;
  int64_t examples = 16, delay = 0, chunk = 128, answer_tokens = kMaxAnswerTokens;
  uint64_t seed = 0;
  int threads = 2;
  po::options_description options("options");
  options.add_options()
      ("lm", po::value(&lm_dir)->required(), "language model checkpoint directory")
      ("namm", po::value(&namm_path), "NAMM checkpoint (.safetensors); without it the baselines run at --budget")
      ("tasks", po::value(&task_args)->multitoken(), "tasks (comma-separated or repeated; default: the seven-task suite; the redundant-context tasks needle_boilerplate and kv_repeated run when named)")
      ("policies", po::value(&policy_args)->multitoken(), "policies (default: full namm h2o l2 streaming tova recency random)")
      ("examples-per-task", po::value(&examples)->default_value(16), "examples per task and context length")
      ("context-tokens", po::value(&contexts)->multitoken(), "prompt lengths (default 1024)")
      ("split", po::value(&split)->default_value("test"), "train, validation or test")
      ("budget", po::value(&budget_text)->default_value("50%"), "the baselines' budget when no NAMM runs")
      ("delay", po::value(&delay)->default_value(0), "tokens between policy updates (0: the NAMM's, else 512)")
      ("prompt-chunk", po::value(&chunk)->default_value(128), "most prompt tokens fed at once")
      ("max-answer-tokens", po::value(&answer_tokens)->default_value(kMaxAnswerTokens), "greedy answer length limit")
      ("seed", po::value(&seed)->default_value(0), "seed of the random policy")
      ("threads", po::value(&threads)->default_value(2), "worker threads")
      ("out-json", po::value(&json_path), "write the results as JSON")
      ("out-md", po::value(&md_path), "write the markdown table (and, with several --context-tokens, a table per prompt length)")
      ("out-predictions", po::value(&predictions_path), "write every policy's answer to every example (JSONL)");
  po::variables_map vm;
  if (!parse_options("eval-text", "--lm DIR [--namm NAMM.safetensors] [options]", options, args, vm)) return 0;
  const auto output_locks =
      claim_outputs({{"--out-json", json_path}, {"--out-md", md_path}, {"--out-predictions", predictions_path}});

  TextComparisonOptions comparison_options;
  comparison_options.tasks = task_args.empty() ? task_names() : split_lists(task_args);
  if (!policy_args.empty()) comparison_options.policies = split_lists(policy_args);
  comparison_options.examples_per_task = examples;
  if (!contexts.empty()) comparison_options.context_tokens = contexts;
  comparison_options.seed = seed;
  comparison_options.threads = threads;
  comparison_options.answer.prompt_chunk = chunk;
  comparison_options.answer.max_answer_tokens = answer_tokens;
  std::shared_ptr<const NammModel> namm;
  try {
    comparison_options.split = parse_split(split);
    comparison_options.fallback_budget = Budget::parse(budget_text);
    for (const std::string& task : comparison_options.tasks) task_metric(task);
    for (const std::string& policy : comparison_options.policies) {
      PolicySpec spec;
      spec.name = policy;
      if (policy != "namm") make_policy(spec);  // an unknown name is a usage error
    }
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (namm_path.empty()) {
    auto& policies = comparison_options.policies;
    if (!policy_args.empty() && std::find(policies.begin(), policies.end(), "namm") != policies.end()) {
      throw UsageError("policy 'namm' needs --namm");
    }
    policies.erase(std::remove(policies.begin(), policies.end(), "namm"), policies.end());
  } else {
    namm = std::make_shared<const NammModel>(NammModel::load(namm_path));
  }
  comparison_options.answer.delay = delay > 0 ? delay : namm ? namm->config.delay : 512;
  if (namm && comparison_options.answer.delay != namm->config.delay) {
    std::cerr << "warning: --delay " << comparison_options.answer.delay << " differs from the NAMM's "
              << namm->config.delay << "\n";
  }

  const Llama model = load_task_model(lm_dir);
  const TextComparison comparison = compare_policies(*model, namm, comparison_options);
  const std::string markdown = comparison.to_markdown();
  std::cout << markdown;
  if (!json_path.empty()) write_file_atomically(json_path, comparison.to_json());
  if (!md_path.empty()) write_file_atomically(md_path, markdown);
  if (!predictions_path.empty()) write_file_atomically(predictions_path, comparison.predictions_jsonl());
  return 0;
}

}  // namespace namm::app
