// Pins text/evolution.h: the zero NAMM is exactly as fit as the full cache,
// the shared prefix changes no fitness, a run stopped and resumed is the run
// never stopped, and bad checkpoints are refused naming their file.
#include "text/evolution.h"

#include "core/atomic_file.h"
#include "text/generation.h"
#include "text/tokenizer.h"
#include "tests/text/tiny_task_model.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace namm {
namespace {

namespace fs = std::filesystem;

using test_support::tiny_task_model;

// A small NAMM (about 170 parameters) so CMA-ES state stays tiny.
NammConfig small_namm(int64_t delay) {
  NammConfig config;
  config.spectrogram.n_fft = 8;
  config.spectrogram.hop = 4;
  config.recency_dim = 2;
  config.bam.input_dim = 2 + 5;
  config.bam.hidden_dim = 4;
  config.delay = delay;
  return config;
}

AnswerOptions small_answer(int64_t delay) {
  AnswerOptions options;
  options.delay = delay;
  options.prompt_chunk = 16;
  options.max_answer_tokens = 3;
  return options;
}

// Examples whose answer is what the full cache greedily says: every full-cache
// score is 1, so every prompt counts and fitness measures agreement with it.
ExampleMaker full_cache_answers(const Llama& model, const AnswerOptions& answer) {
  return [model, answer](const std::string& task, Split split, int64_t index, int64_t context) {
    TaskExample example = make_example(task, split, index, context);
    example.answer = answer_example(*model, example, PolicySpec{}, answer).prediction;
    return example;
  };
}

std::string temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("namm_evolution_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  return dir.string();
}

std::vector<std::string> log_without_seconds(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line.substr(0, line.find("\"profile\"")));  // timings differ
  return lines;
}

TEST(EvolutionStage, ParsesTasksAndGenerations) {
  const EvolutionStage a = EvolutionStage::parse("kv_retrieval,needle:7", 3);
  EXPECT_EQ(a.tasks, (std::vector<std::string>{"kv_retrieval", "needle"}));
  EXPECT_EQ(a.generations, 7);
  EXPECT_EQ(EvolutionStage::parse("needle", 3).generations, 3);
  EXPECT_THROW(EvolutionStage::parse("no_such_task", 3), std::invalid_argument);
  EXPECT_THROW(EvolutionStage::parse("needle:x", 3), std::invalid_argument);
  EXPECT_THROW(EvolutionStage::parse("needle:0", 3), std::invalid_argument);
}

TEST(Evolution, FitnessIsMeanOverTasksOfScoreRatiosSkippingZeroFullScores) {
  const std::vector<std::string> tasks = {"a", "a", "b", "b", "c"};
  const std::vector<double> full = {1.0, 0.0, 0.5, 0.5, 0.0};
  // task a: 0.5 / 1 (the prompt full failed is left out); b: 1.5 / 1; c: no prompt counts
  EXPECT_DOUBLE_EQ(fitness_from_scores({0.5, 1.0, 1.0, 0.5, 1.0}, full, tasks), (0.5 + 1.5) / 2);
  EXPECT_EQ(fitness_from_scores({0.0, 0.0}, {0.0, 0.0}, {"a", "b"}), 1.0);
  EXPECT_THROW(fitness_from_scores({1.0}, {1.0, 1.0}, {"a", "a"}), std::invalid_argument);
}

TEST(Evolution, ZeroNammIsExactlyAsFitAsTheFullCache) {
  const Llama model = tiny_task_model();
  const AnswerOptions answer = small_answer(32);
  const ExampleMaker maker = full_cache_answers(model, answer);
  std::vector<TaskExample> examples;
  for (int64_t i = 0; i < 3; ++i) examples.push_back(maker("kv_retrieval", Split::kTrain, i, 128));
  for (int64_t i = 0; i < 2; ++i) examples.push_back(maker("needle", Split::kTrain, i, 128));

  const NammModel base = NammModel::zeros(small_namm(32));
  const int64_t params = base.config.bam.param_count();
  at::Tensor candidates = at::zeros({2, params}, at::kDouble);
  candidates[1][params - 1] = -10.0;  // head bias only: every score -10, all but the newest token evicted
  FitnessOptions options;
  options.answer = answer;
  const FitnessReport report = evaluate_candidates(*model, base, candidates, examples, options);
  EXPECT_EQ(report.informative_examples, 5);
  EXPECT_EQ(report.fitness[0], 1.0);  // exactly: it keeps everything
  EXPECT_EQ(report.retained_fraction[0], 1.0);
  EXPECT_LT(report.fitness[1], 1.0);  // keeping one token per head must cost something
  EXPECT_LT(report.retained_fraction[1], 0.2);
  // generation 1 learns feature statistics from the candidates' policies
  EXPECT_TRUE(report.pooled_normalizer.frozen());
  EXPECT_GT(report.pooled_normalizer.count(), 0.0);
}

TEST(Evolution, SharedPrefixGivesTheSameFitnessAsTheNaivePath) {
  const Llama model = tiny_task_model();
  const AnswerOptions answer = small_answer(32);
  const ExampleMaker maker = full_cache_answers(model, answer);
  std::vector<TaskExample> examples = {maker("kv_retrieval", Split::kTrain, 0, 96),
                                       maker("needle", Split::kTrain, 1, 128)};
  const NammModel base = NammModel::zeros(small_namm(32));
  at::manual_seed(3);
  const at::Tensor candidates = at::randn({3, base.config.bam.param_count()}, at::kDouble) * 0.5;
  FitnessOptions options;
  options.answer = answer;
  options.share_prefix = true;
  const FitnessReport shared = evaluate_candidates(*model, base, candidates, examples, options);
  options.share_prefix = false;
  options.threads = 1;
  const FitnessReport naive = evaluate_candidates(*model, base, candidates, examples, options);
  EXPECT_EQ(shared.fitness, naive.fitness);
  EXPECT_EQ(shared.scores, naive.scores);
  EXPECT_EQ(shared.retained_fraction, naive.retained_fraction);
  EXPECT_TRUE(at::equal(shared.pooled_normalizer.mean(), naive.pooled_normalizer.mean()));
  EXPECT_TRUE(at::equal(shared.pooled_normalizer.variance(), naive.pooled_normalizer.variance()));
  bool evicted = false;
  for (double r : shared.retained_fraction) evicted = evicted || r < 1.0;
  EXPECT_TRUE(evicted) << "random candidates should evict something";
}

EvolutionOptions tiny_run(const Llama& model, const std::string& dir) {
  EvolutionOptions options;
  options.stages = {EvolutionStage::parse("kv_multi:2", 1), EvolutionStage::parse("kv_multi,needle:2", 1)};
  options.population = 4;
  options.initial_sigma = 0.1;
  options.seed = 11;
  options.prompts_per_task = 1;
  options.context_tokens = {64, 96};
  options.namm = small_namm(16);
  options.fitness.answer = small_answer(16);
  options.fitness.threads = 2;
  options.checkpoint_dir = dir;
  options.make_example = full_cache_answers(model, options.fitness.answer);
  return options;
}

TEST(Evolution, StoppedAndResumedRunEqualsTheUninterruptedOne) {
  const Llama model = tiny_task_model();
  const std::string straight_dir = temp_dir("straight");
  const std::string resumed_dir = temp_dir("resumed");

  EvolutionOptions straight = tiny_run(model, straight_dir);
  straight.output_path = straight_dir + "/final.safetensors";
  const EvolutionResult a = evolve(*model, straight);
  ASSERT_TRUE(a.finished);
  ASSERT_EQ(a.generations_done, 4);
  // the candidates must differ in fitness, or CMA-ES would only follow tie order
  bool graded = false;
  for (const GenerationRecord& record : a.history) {
    graded = graded || record.best_fitness != record.mean_candidate_fitness;
  }
  EXPECT_TRUE(graded);

  EvolutionOptions resumed = tiny_run(model, resumed_dir);
  resumed.output_path = resumed_dir + "/final.safetensors";
  resumed.stop_after_generations = 1;
  EvolutionResult b = evolve(*model, resumed);  // stops inside stage 1
  EXPECT_FALSE(b.finished);
  EXPECT_EQ(b.generations_done, 1);
  EXPECT_FALSE(fs::exists(resumed.output_path));
  resumed.stop_after_generations = 2;
  b = evolve(*model, resumed);  // across the stage boundary
  EXPECT_EQ(b.generations_done, 3);
  resumed.stop_after_generations = 0;
  b = evolve(*model, resumed);
  ASSERT_TRUE(b.finished);
  EXPECT_EQ(b.generations_done, 4);
  EXPECT_EQ(b.history.size(), 1u);

  EXPECT_TRUE(at::equal(a.model.params, b.model.params));
  EXPECT_TRUE(at::equal(a.model.normalizer.mean(), b.model.normalizer.mean()));
  EXPECT_EQ(a.model.normalizer.count(), b.model.normalizer.count());
  EXPECT_GT(a.model.params.abs().sum().item<double>(), 0.0);  // it moved
  EXPECT_EQ(log_without_seconds(straight_dir + "/log.jsonl"), log_without_seconds(resumed_dir + "/log.jsonl"));
  EXPECT_EQ(log_without_seconds(resumed_dir + "/log.jsonl").size(), 4u);

  // what was saved: the final NAMM with frozen statistics and provenance, each stage's mean
  const NammModel saved = NammModel::load(resumed.output_path);
  EXPECT_TRUE(at::equal(saved.params, b.model.params));
  EXPECT_TRUE(saved.normalizer.frozen());
  EXPECT_NE(saved.provenance_json.find("\"population\":4"), std::string::npos) << saved.provenance_json;
  EXPECT_TRUE(fs::exists(resumed_dir + "/namm-stage1.safetensors"));
  EXPECT_TRUE(fs::exists(resumed_dir + "/namm-stage2.safetensors"));
  // one CMA file at a time
  int cma_files = 0;
  for (const auto& entry : fs::directory_iterator(resumed_dir)) {
    cma_files += entry.path().filename().string().rfind("cma-", 0) == 0 ? 1 : 0;
  }
  EXPECT_EQ(cma_files, 1);
  fs::remove_all(straight_dir);
  fs::remove_all(resumed_dir);
}

TEST(Evolution, MemoryPenaltyCountsOnlyTheRetainedFractionAboveTheTarget) {
  EXPECT_DOUBLE_EQ(penalised_fitness(0.9, 0.4, 0.5, 2.0), 0.9);
  EXPECT_DOUBLE_EQ(penalised_fitness(0.9, 0.75, 0.5, 2.0), 0.4);
  EXPECT_DOUBLE_EQ(penalised_fitness(0.9, 1.0, 1.0, 2.0), 0.9);
  EXPECT_DOUBLE_EQ(penalised_fitness(0.9, 0.75, 0.5, 0.0), 0.9);
}

// needle prompts whose expected answer is the full cache's on odd indices and
// wrong on even ones: the full cache answers exactly the odd ones
ExampleMaker odd_prompts_answerable(const Llama& model, const AnswerOptions& answer) {
  return [model, answer](const std::string& task, Split split, int64_t index, int64_t context) {
    TaskExample example = make_example(task, split, index, context);
    example.answer = answer_example(*model, example, PolicySpec{}, answer).prediction;
    if (index % 2 == 0) example.answer.push_back(1);  // one token more: never an exact match
    return example;
  };
}

EvolutionOptions screened_run(const Llama& model, int threads) {
  EvolutionOptions options;
  options.stages = {EvolutionStage::parse("needle:2", 1)};
  options.population = 4;
  options.initial_sigma = 0.1;
  options.seed = 5;
  options.prompts_per_task = 2;
  options.screen_draws = 3;
  options.kv_target = 0.5;
  options.kv_penalty = 1.0;
  options.context_tokens = {64};
  options.namm = small_namm(16);
  options.fitness.answer = small_answer(16);
  options.fitness.threads = threads;
  options.make_example = odd_prompts_answerable(model, options.fitness.answer);
  return options;
}

TEST(Evolution, ScreeningKeepsOnlyPromptsTheFullCacheAnswersForAnyThreadCount) {
  const Llama model = tiny_task_model();
  const EvolutionResult one = evolve(*model, screened_run(model, 1));
  const EvolutionResult two = evolve(*model, screened_run(model, 2));
  ASSERT_EQ(one.history.size(), 2u);
  ASSERT_EQ(two.history.size(), 2u);
  for (size_t g = 0; g < one.history.size(); ++g) {
    const GenerationRecord& record = one.history[g];
    EXPECT_EQ(record.prompts, 2);              // the two odd indices of the four drawn
    EXPECT_EQ(record.informative_prompts, 2);  // every kept prompt counts
    EXPECT_EQ(record.screened_prompts, 4);
    // the mean's fitness is its score less the penalty on what it keeps above half
    EXPECT_NEAR(record.mean_fitness,
                record.mean_score - std::max(0.0, record.mean_retained_fraction_of_mean - 0.5), 1e-12);
    EXPECT_EQ(record.mean_fitness, two.history[g].mean_fitness);
    EXPECT_EQ(record.best_fitness, two.history[g].best_fitness);
  }
  EXPECT_TRUE(at::equal(one.model.params, two.model.params));
}

TEST(Evolution, ScreeningFailsClearlyWhenTheFullCacheAnswersNothing) {
  const Llama model = tiny_task_model();
  EvolutionOptions options = screened_run(model, 1);
  options.make_example = [model, answer = options.fitness.answer](const std::string& task, Split split, int64_t index,
                                                                    int64_t context) {
    TaskExample example = make_example(task, split, index, context);
    example.answer = answer_example(*model, example, PolicySpec{}, answer).prediction;
    example.answer.push_back(1);
    return example;
  };
  try {
    evolve(*model, options);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("answered none of the 6 screened prompts"), std::string::npos) << e.what();
  }
}

// tiny_run's options after one generation into dir, checkpointed there.
EvolutionOptions after_one_generation(const Llama& model, const std::string& dir) {
  EvolutionOptions options = tiny_run(model, dir);
  options.stop_after_generations = 1;
  evolve(*model, options);
  return options;
}

TEST(Evolution, CorruptOrForeignCheckpointIsRefusedNamingTheFile) {
  const Llama model = tiny_task_model();
  const std::string dir = temp_dir("corrupt");
  const EvolutionOptions options = after_one_generation(model, dir);

  const std::string state = dir + "/state.json";
  const std::string good = read_file(state);
  const auto message_of = [&](const EvolutionOptions& run) {
    try {
      evolve(*model, run);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };

  EvolutionOptions other_seed = options;
  other_seed.seed = 12;
  const std::string foreign = message_of(other_seed);
  EXPECT_NE(foreign.find(state), std::string::npos) << foreign;
  EXPECT_NE(foreign.find("seed"), std::string::npos) << foreign;

  write_file_atomically(state, good.substr(0, good.size() / 2));
  const std::string truncated = message_of(options);
  EXPECT_NE(truncated.find(state), std::string::npos) << truncated;

  write_file_atomically(state, good);
  std::string cma_file;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("cma-", 0) == 0) cma_file = entry.path().string();
  }
  ASSERT_FALSE(cma_file.empty());
  const std::string cma = read_file(cma_file);
  write_file_atomically(cma_file, cma.substr(0, cma.size() - 100));
  const std::string broken = message_of(options);
  EXPECT_NE(broken.find(cma_file), std::string::npos) << broken;
  fs::remove_all(dir);
}

TEST(Evolution, ResumeWithAnotherLanguageModelIsRefused) {
  const Llama model = tiny_task_model();
  const std::string dir = temp_dir("other_host");
  const EvolutionOptions options = after_one_generation(model, dir);
  // same shape and options, other weights: only the fingerprint tells them apart
  at::manual_seed(8);
  const Llama other = Llama(model->config());
  std::string message = "no error";
  try {
    evolve(*other, options);
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("another language model"), std::string::npos) << message;
  EXPECT_NE(message.find(dir), std::string::npos) << message;
  fs::remove_all(dir);
}

TEST(Evolution, LogRecordsPastTheCheckpointAreDroppedOnResume) {
  // a kill between a generation's log line and its checkpoint: the resumed
  // run redoes that generation, and the log holds each generation once
  const Llama model = tiny_task_model();
  const std::string dir = temp_dir("log_order");
  const EvolutionOptions options = after_one_generation(model, dir);
  const std::string log = dir + "/log.jsonl";
  std::string text = read_file(log);
  ASSERT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
  // what the killed run would have left: the next generation's line and half of another
  write_file_atomically(log, text + "{\"generation\": 2, \"stage\": 1}\n{\"generation\": 3, \"sta");
  evolve(*model, options);  // resumes and runs one more generation
  text = read_file(log);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  EXPECT_EQ(text.find("\"stage\": 1}"), std::string::npos) << text;  // the stale line is gone
  EXPECT_EQ(text.find("\"sta\n"), std::string::npos) << text;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace namm
