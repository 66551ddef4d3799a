// Pins text/text_eval.h: answering with the full cache is greedy generate();
// the shared prefix changes nothing; threads change nothing; the eval-text
// comparison lists every policy and task, runs the baselines at the NAMM's
// retained fraction, and splits every row by prompt length.
#include "text/text_eval.h"

#include "adapters/memory_controller.h"
#include "core/namm_model.h"
#include "core/namm_policy.h"
#include "text/generation.h"
#include "text/tokenizer.h"
#include "tests/text/tiny_task_model.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace namm {
namespace {

using test_support::tiny_task_model;

AnswerOptions small_answer(int64_t delay = 32) {
  AnswerOptions options;
  options.delay = delay;
  options.prompt_chunk = 16;
  options.max_answer_tokens = 5;
  return options;
}

// a NAMM that keeps roughly part of the cache: random parameters
std::shared_ptr<const NammModel> random_namm(int64_t delay, double scale, uint64_t seed) {
  NammConfig config;
  config.delay = delay;
  NammModel model = NammModel::zeros(config);
  at::manual_seed(seed);
  model.params = at::randn({config.bam.param_count()}, at::kFloat) * scale;
  return std::make_shared<const NammModel>(std::move(model));
}

TEST(TextEval, FullCacheAnswerEqualsGreedyGenerate) {
  const Llama model = tiny_task_model();
  const AnswerOptions options = small_answer();
  for (int64_t index = 0; index < 3; ++index) {
    const TaskExample example = make_example("kv_retrieval", Split::kTrain, index, 128);
    const ExampleOutcome outcome = answer_example(*model, example, PolicySpec{}, options);

    GenerationOptions generation;
    generation.max_new_tokens = options.max_answer_tokens;
    generation.stop_token_ids = {Tokenizer::kEos};
    generation.prompt_chunk = options.prompt_chunk;
    const GenerationResult reference = generate(*model, at::tensor(example.prompt, at::kLong), generation);
    ASSERT_FALSE(reference.tokens.empty());
    EXPECT_EQ(outcome.prediction, trim_prediction(reference.tokens)) << "example " << index;
    EXPECT_EQ(outcome.score, score_task("kv_retrieval", outcome.prediction, example.answer));
    EXPECT_EQ(outcome.retained_fraction, 1.0);
    EXPECT_EQ(outcome.final_cache_fraction, 1.0);
    EXPECT_EQ(outcome.policy_updates, 128 / options.delay);  // the few answer tokens never reach another update
  }
}

TEST(TextEval, SharedPrefixGivesTheSameOutcomeAsFromScratch) {
  const Llama model = tiny_task_model();
  const int num_layers = 2;
  for (int64_t context : {64, 128}) {  // prompt == delay, prompt > delay
    const AnswerOptions options = small_answer(64);
    const TaskExample example = make_example("needle", Split::kTrain, 3, context);
    const SharedPrefix prefix = prefill_shared_prefix(*model, example, options);
    ASSERT_EQ(prefix.length, 64);
    PolicySpec namm;
    namm.name = "namm";
    namm.namm_model = random_namm(64, 0.5, 3);
    PolicySpec h2o;
    h2o.name = "h2o";
    h2o.budget = Budget{0, 0.4};
    for (const PolicySpec& spec : {namm, h2o, PolicySpec{}}) {
      ControllerOptions controller_options;
      controller_options.delay = options.delay;
      MemoryController scratch(make_policy(spec), num_layers, controller_options);
      MemoryController shared(make_policy(spec), num_layers, controller_options);
      const ExampleOutcome a = answer_with_controller(*model, example, scratch, options);
      const ExampleOutcome b = answer_with_controller(*model, example, shared, options, &prefix);
      EXPECT_EQ(a.prediction, b.prediction) << spec.name << " at " << context;
      EXPECT_EQ(a.retained_fraction, b.retained_fraction) << spec.name << " at " << context;
      EXPECT_EQ(a.final_cache_fraction, b.final_cache_fraction) << spec.name << " at " << context;
      EXPECT_EQ(a.policy_updates, b.policy_updates);
      if (spec.name != "full") {
        EXPECT_LT(a.final_cache_fraction, 1.0) << spec.name << " evicted nothing";
      }
    }
    // the prefix itself is untouched by the candidates that continued from it
    EXPECT_EQ(prefix.state.caches[0].length(0), 64);
  }
}

TEST(TextEval, ParallelEvaluationEqualsSequential) {
  const Llama model = tiny_task_model();
  std::vector<TaskExample> examples;
  for (int64_t i = 0; i < 3; ++i) examples.push_back(make_example("kv_multi", Split::kTrain, i, 96));
  examples.push_back(make_example("needle", Split::kTrain, 0, 96));
  PolicySpec namm;
  namm.name = "namm";
  namm.namm_model = random_namm(32, 0.5, 5);
  PolicySpec tova;
  tova.name = "tova";
  tova.budget = Budget{0, 0.5};
  const std::vector<PolicySpec> policies = {PolicySpec{}, namm, tova};
  const auto one = evaluate_policies(*model, examples, policies, 1, small_answer());
  const auto two = evaluate_policies(*model, examples, policies, 2, small_answer());
  ASSERT_EQ(one.size(), 3u);
  for (size_t p = 0; p < policies.size(); ++p) {
    ASSERT_EQ(one[p].outcomes.size(), examples.size());
    for (size_t e = 0; e < examples.size(); ++e) {
      EXPECT_EQ(one[p].outcomes[e].prediction, two[p].outcomes[e].prediction) << policies[p].name << " " << e;
      EXPECT_EQ(one[p].outcomes[e].score, two[p].outcomes[e].score);
      EXPECT_EQ(one[p].outcomes[e].retained_fraction, two[p].outcomes[e].retained_fraction);
    }
    EXPECT_EQ(one[p].tasks.size(), 2u);
    EXPECT_EQ(one[p].tasks.at("kv_multi").examples, 3);
  }
  EXPECT_LT(one[1].mean_retained_fraction, 1.0);
  EXPECT_EQ(one[0].mean_retained_fraction, 1.0);
}

TEST(TextEval, ComparisonListsEveryPolicyAndTaskAtTheNammsBudget) {
  const Llama model = tiny_task_model();
  TextComparisonOptions options;
  options.tasks = {"kv_retrieval", "needle"};
  options.examples_per_task = 2;
  options.context_tokens = {192};
  options.threads = 2;
  options.answer = small_answer(32);
  const TextComparison comparison = compare_policies(*model, random_namm(32, 0.5, 9), options);
  ASSERT_EQ(comparison.rows.size(), options.policies.size());
  const double namm_fraction = comparison.namm_retained_fraction;
  ASSERT_GT(namm_fraction, 0.05);
  ASSERT_LT(namm_fraction, 0.95);
  const std::string markdown = comparison.to_markdown();
  const nlohmann::json parsed = nlohmann::json::parse(comparison.to_json());
  ASSERT_EQ(parsed["rows"].size(), options.policies.size());
  for (size_t i = 0; i < options.policies.size(); ++i) {
    const ComparisonRow& row = comparison.rows[i];
    EXPECT_EQ(row.policy, options.policies[i]);
    EXPECT_NE(markdown.find("| " + row.policy + " |"), std::string::npos) << row.policy;
    for (const std::string& task : options.tasks) {
      EXPECT_EQ(row.tasks.count(task), 1u) << row.policy << " " << task;
      EXPECT_TRUE(parsed["rows"][i]["tasks"].contains(task));
    }
    if (row.policy == "full") {
      EXPECT_EQ(row.mean_retained_fraction, 1.0);
    } else {
      // every pruning policy ran at (about) the NAMM's mean cache size
      EXPECT_NEAR(row.mean_retained_fraction, namm_fraction, 0.05) << row.policy;
    }
  }
  for (const std::string& task : options.tasks) EXPECT_NE(markdown.find(task), std::string::npos);

  // one prediction per policy and example, agreeing with the table's means
  const size_t examples = options.tasks.size() * options.context_tokens.size() * 2;
  ASSERT_EQ(comparison.predictions.size(), options.policies.size() * examples);
  std::map<std::pair<std::string, std::string>, double> score_sum;
  for (const ExamplePrediction& p : comparison.predictions) {
    EXPECT_EQ(p.context_tokens, 192);
    EXPECT_EQ(p.question.rfind("<q>", 0), 0u) << p.question;
    EXPECT_FALSE(p.answer.empty());
    EXPECT_EQ(p.score, p.prediction == p.answer ? 1.0 : 0.0) << p.prediction << " vs " << p.answer;
    score_sum[{p.policy, p.task}] += p.score;
  }
  for (const ComparisonRow& row : comparison.rows) {
    for (const std::string& task : options.tasks) {
      const double mean = score_sum[std::make_pair(row.policy, task)] / 2.0;
      EXPECT_NEAR(mean, row.tasks.at(task).mean_score, 1e-12) << row.policy;
    }
  }
  const std::string jsonl = comparison.predictions_jsonl();
  EXPECT_EQ(static_cast<size_t>(std::count(jsonl.begin(), jsonl.end(), '\n')), comparison.predictions.size());
  const nlohmann::json first = nlohmann::json::parse(jsonl.substr(0, jsonl.find('\n')));
  EXPECT_EQ(first["policy"], comparison.predictions.front().policy);
  EXPECT_EQ(first["prediction"], comparison.predictions.front().prediction);
}

TEST(TextEval, ComparisonSplitsEveryRowByPromptLength) {
  // the shipped host: a random model scores 0 everywhere, and a normalised
  // score against a full cache that scores 0 is NaN, so nothing would be compared
  const Llama model = load_task_model(std::string(NAMM_MODELS_DIR) + "/lm");
  TextComparisonOptions options;
  // the host's full-cache counting score differs between these lengths, so
  // normalising against the wrong length's full cache shows
  options.tasks = {"kv_retrieval", "counting"};
  options.examples_per_task = 2;
  options.context_tokens = {128, 192};
  options.policies = {"full", "namm", "h2o"};
  options.threads = 2;
  options.answer = small_answer(32);
  const TextComparison comparison = compare_policies(*model, random_namm(32, 0.5, 9), options);

  // the per-length means recomputed from the predictions
  std::map<std::tuple<std::string, int64_t, std::string>, double> score_sum;
  std::map<std::pair<std::string, int64_t>, double> retained_sum;
  for (const ExamplePrediction& p : comparison.predictions) {
    score_sum[{p.policy, p.context_tokens, p.task}] += p.score / 2.0;
    retained_sum[{p.policy, p.context_tokens}] += p.retained_fraction / 4.0;
  }
  const nlohmann::json parsed = nlohmann::json::parse(comparison.to_json());
  const std::string markdown = comparison.to_markdown();
  for (int64_t length : options.context_tokens)
    EXPECT_NE(markdown.find(std::to_string(length) + " tokens: norm. score"), std::string::npos) << length;
  int lengths_with_a_full_cache_score = 0;  // else every normalised score is NaN and nothing is compared
  for (size_t i = 0; i < comparison.rows.size(); ++i) {
    const ComparisonRow& row = comparison.rows[i];
    ASSERT_EQ(row.by_length.size(), 2u) << row.policy;
    double weighted_retained = 0.0;
    for (int64_t length : options.context_tokens) {
      const LengthSummary& at = row.by_length.at(length);
      EXPECT_EQ(at.examples, 4) << row.policy << " " << length;
      const double retained = retained_sum[std::make_pair(row.policy, length)];
      EXPECT_NEAR(at.mean_retained_fraction, retained, 1e-12) << row.policy;
      weighted_retained += at.mean_retained_fraction / 2.0;
      double normalized = 0.0;
      int counted = 0;
      for (const std::string& task : options.tasks) {
        const double full = score_sum[std::make_tuple(std::string("full"), length, task)];
        if (full > 0.0) {
          normalized += score_sum[std::make_tuple(row.policy, length, task)] / full;
          ++counted;
        }
      }
      if (counted == 0) {
        EXPECT_TRUE(std::isnan(at.mean_normalized_score)) << row.policy << " " << length;
      } else {
        ++lengths_with_a_full_cache_score;
        EXPECT_NEAR(at.mean_normalized_score, normalized / counted, 1e-12) << row.policy << " " << length;
      }
      EXPECT_EQ(parsed["rows"][i]["by_context_tokens"][std::to_string(length)]["examples"], 4);
    }
    EXPECT_NEAR(weighted_retained, row.mean_retained_fraction, 1e-12) << row.policy;
  }
  EXPECT_GT(lengths_with_a_full_cache_score, 0);
}

}  // namespace
}  // namespace namm
