// Pins text/train_lm.h on tiny models: the loss falls, a killed and resumed
// run ends with the same weights as an uninterrupted one, a bad or foreign
// checkpoint is refused naming the file, and the data of a step is a pure
// function of (options, step).
#include "text/train_lm.h"

#include "text/llama_checkpoint.h"
#include "text/tasks.h"
#include "text/tokenizer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <unistd.h>

namespace namm {
namespace {

namespace fs = std::filesystem;

/// A fresh, empty directory for one test.
std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("namm_train_lm_test_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  return dir.string();
}

TrainLmOptions tiny_options(const std::string& out_dir) {
  TrainLmOptions o;
  o.layers = 1;
  o.hidden = 32;
  o.heads = 2;
  o.kv_heads = 2;
  o.intermediate = 64;
  o.max_positions = 512;
  o.tasks = {"counting", "kv_retrieval"};
  o.min_context = 64;
  o.max_context = 128;
  o.long_fraction = 0.0;
  o.batch_tokens = 512;
  o.steps = 20;
  o.lr = 3e-3;
  o.warmup_steps = 3;
  o.threads = 1;  // tiny matrices: a second thread only adds synchronisation
  o.log_every = 5;
  o.checkpoint_every = 5;
  o.eval_examples = 0;
  o.out_dir = out_dir;
  return o;
}

double mean_answer_loss(const std::vector<StepStats>& stats, size_t begin, size_t end) {
  double total = 0;
  for (size_t i = begin; i < end; ++i) total += stats[i].answer_loss;
  return total / static_cast<double>(end - begin);
}

TEST(TrainLm, AnswerLossFallsOnATinyTask) {
  TrainLmOptions o = tiny_options(fresh_dir("loss"));
  o.tasks = {"counting"};
  o.min_context = o.max_context = 64;
  o.steps = 40;
  o.lr = 1e-2;
  o.checkpoint_every = 1000;
  Trainer trainer(o);
  std::vector<StepStats> stats;
  for (int64_t i = 0; i < o.steps; ++i) stats.push_back(trainer.train_step());
  // from ln(686) ~ 6.5 towards ln(9) ~ 2.2 once the answer is known to be a count
  EXPECT_GT(mean_answer_loss(stats, 0, 5), 5.0);
  EXPECT_LT(mean_answer_loss(stats, 35, 40), 3.5);
  fs::remove_all(o.out_dir);
}

TEST(TrainLm, FirstQuestionsAreCountedOncePerSequence) {
  TrainLmOptions o = tiny_options(fresh_dir("first"));
  o.follow_ups = 4;
  o.checkpoint_every = 1000;
  Trainer trainer(o);
  const StepStats stats = trainer.train_step();
  const TrainBatch batch = make_train_batch(o, 0);
  std::map<std::string, int64_t> sequences;
  for (const std::string& task : batch.tasks) ++sequences[task];
  ASSERT_EQ(stats.per_task.size(), sequences.size());
  for (const auto& [task, c] : stats.per_task) {
    EXPECT_EQ(c[5], sequences[task]) << task;  // one first question per sequence
    EXPECT_GT(c[3], c[5]) << task;             // the follow-ups come on top
    EXPECT_LE(c[4], c[5]) << task;
    EXPECT_LE(c[4], c[2]) << task;
  }
  fs::remove_all(o.out_dir);
}

TEST(TrainLm, KilledAndResumedRunEndsWithTheSameWeights) {
  const TrainLmOptions straight_options = tiny_options(fresh_dir("straight"));
  Trainer straight(straight_options);
  EXPECT_EQ(straight.train(), 20);

  const TrainLmOptions options = tiny_options(fresh_dir("killed"));
  {
    // checkpoints at 5 and 10, then "killed" after step 12 without saving
    Trainer first(options);
    for (int i = 0; i < 12; ++i) first.train_step();
  }
  Trainer second(options);
  ASSERT_TRUE(second.resumed());
  ASSERT_EQ(second.step(), 10);
  EXPECT_EQ(second.train(), 20);

  const auto a = straight.model()->hf_named_parameters();
  const auto b = second.model()->hf_named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first << " differs by "
                                                     << (a[i].second - b[i].second).abs().max().item<double>();
  }
  // the log holds each step once: the records of steps 11-12 of the killed run were dropped
  std::ifstream log(fs::path(options.out_dir) / "train_log.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(log, line)) ++lines;
  EXPECT_EQ(lines, 4);  // steps 5, 10, 15, 20
  fs::remove_all(straight_options.out_dir);
  fs::remove_all(options.out_dir);
}

TEST(TrainLm, CorruptCheckpointIsRefusedNamingTheFile) {
  const TrainLmOptions o = tiny_options(fresh_dir("corrupt"));
  fs::create_directories(o.out_dir);
  const std::string state = (fs::path(o.out_dir) / "trainer_state.safetensors").string();
  std::ofstream(state) << "not a safetensors file at all";
  try {
    Trainer trainer(o);
    FAIL() << "a corrupt trainer state was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(state), std::string::npos) << e.what();
  }
  fs::remove_all(o.out_dir);
}

TEST(TrainLm, CheckpointOfOtherOptionsIsRefusedNamingTheField) {
  TrainLmOptions o = tiny_options(fresh_dir("mismatch"));
  o.steps = 2;
  Trainer(o).train();
  o.hidden = 48;
  o.threads = 1;  // free to change: not reported
  try {
    Trainer trainer(o);
    FAIL() << "a checkpoint of another width was resumed";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("trainer_state.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find("hidden: saved 32, now 48"), std::string::npos) << message;
    EXPECT_EQ(message.find("threads"), std::string::npos) << message;
  }
  fs::remove_all(o.out_dir);
}

TEST(TrainLm, GrownFromAShallowerCheckpointComputesTheSameLogits) {
  TrainLmOptions shallow = tiny_options(fresh_dir("grow_from"));
  shallow.steps = 3;
  Trainer(shallow).train();  // trained a little, so the copied weights are not the seed's

  TrainLmOptions deep = tiny_options(fresh_dir("grow_to"));
  deep.layers = 3;
  deep.init_from = shallow.out_dir;
  Trainer grown(deep);
  const LlamaCheckpoint start = load_llama_checkpoint(shallow.out_dir);
  const at::Tensor tokens = at::randint(4, 64, {2, 24}, at::kLong);
  at::NoGradGuard no_grad;
  const at::Tensor expected = start.model->forward(tokens);
  const at::Tensor actual = grown.model()->forward(tokens);
  EXPECT_TRUE(at::allclose(actual, expected, 1e-5, 1e-5)) << (actual - expected).abs().max().item<float>();
  EXPECT_EQ(grown_layer_source("model.layers.0.self_attn.q_proj.weight", 1, 3), "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(grown_layer_source("model.layers.1.mlp.up_proj.weight", 1, 3), "");
  EXPECT_EQ(grown_layer_source("model.layers.2.mlp.up_proj.weight", 1, 3), "");
  // and the new layers can learn: only their output projections are zero
  for (const auto& [name, p] : grown.model()->hf_named_parameters()) {
    if (name.rfind("model.layers.1.", 0) != 0) continue;
    const bool output = name.find("o_proj") != std::string::npos || name.find("down_proj") != std::string::npos;
    EXPECT_EQ(p.abs().sum().item<double>() == 0.0, output) << name;
  }

  deep.out_dir = fresh_dir("shrink_to");
  deep.layers = 1;
  deep.init_from = grown.options().out_dir;
  grown.save_checkpoint();  // a 3-layer checkpoint to shrink from
  try {
    Trainer shrunk(deep);
    FAIL() << "a 3-layer checkpoint was loaded into 1 layer";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("it has 3 layers, the run asks for 1"), std::string::npos) << e.what();
  }
  for (const std::string& dir : {shallow.out_dir, grown.options().out_dir, deep.out_dir}) fs::remove_all(dir);
}

TEST(TrainLm, GrowthSpreadsTheOldLayersEvenly) {
  const auto source = [](int layer) {
    return grown_layer_source("model.layers." + std::to_string(layer) + ".input_layernorm.weight", 2, 4);
  };
  EXPECT_EQ(source(0), "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(source(1), "");
  EXPECT_EQ(source(2), "model.layers.1.input_layernorm.weight");
  EXPECT_EQ(source(3), "");
  EXPECT_EQ(grown_layer_source("model.layers.1.mlp.up_proj.weight", 2, 2), "model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(grown_layer_source("model.norm.weight", 2, 4), "model.norm.weight");
  EXPECT_THROW(grown_layer_source("model.norm.weight", 3, 2), std::invalid_argument);
}

TEST(TrainLmOptions, JsonRoundTripKeepsEveryField) {
  TrainLmOptions o = tiny_options("/tmp/somewhere");
  o.seed = 1234567890123ull;
  o.rope_theta = 50000.0;
  o.context_loss_weight = 0.25;
  o.eval_lengths = {512, 3000};
  o.command_line = "namm train-lm --steps 20";
  const TrainLmOptions back = TrainLmOptions::from_json(o.to_json());
  EXPECT_EQ(back.to_json(), o.to_json());
  EXPECT_TRUE(back.resume_mismatches(o).empty());
  EXPECT_THROW(TrainLmOptions::from_json("{\"hiden\": 3}"), std::runtime_error);
}

TEST(TrainLmOptions, BadValueIsRejectedWithTheValue) {
  TrainLmOptions o = tiny_options("/tmp/x");
  o.kv_heads = 3;
  try {
    o.validate();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("kv_heads 3"), std::string::npos) << e.what();
  }
}

TEST(TrainLm, BatchIsAPureFunctionOfTheStep) {
  const TrainLmOptions o = tiny_options("/tmp/unused");
  const TrainBatch a = make_train_batch(o, 7), b = make_train_batch(o, 7), c = make_train_batch(o, 8);
  EXPECT_TRUE(at::equal(a.inputs, b.inputs));
  EXPECT_EQ(a.indices, b.indices);
  EXPECT_NE(a.indices, c.indices);
  // each row supervises its answers and their closing <eos>, nothing past
  // the last; the prompt and the follow-up questions are context
  for (int64_t row = 0; row < a.inputs.size(0); ++row) {
    const at::Tensor answer_targets = a.targets[row].masked_select(a.answer_mask[row]);
    EXPECT_EQ(answer_targets[-1].item<int64_t>(), Tokenizer::kEos);
    const int64_t questions = a.answer_question[row].max().item<int64_t>() + 1;
    EXPECT_EQ(at::eq(answer_targets, Tokenizer::kEos).sum().item<int64_t>(), questions);
    const int64_t real = at::ne(a.targets[row], Tokenizer::kPad).sum().item<int64_t>();
    EXPECT_EQ(a.context_mask[row].sum().item<int64_t>() + a.answer_mask[row].sum().item<int64_t>(), real);
    EXPECT_FALSE(at::logical_and(a.context_mask[row], a.answer_mask[row]).any().item<bool>());
  }
  TrainLmOptions single = o;
  single.follow_ups = 0;
  const TrainBatch one = make_train_batch(single, 7);
  for (int64_t row = 0; row < one.inputs.size(0); ++row)
    EXPECT_EQ(one.context_mask[row].sum().item<int64_t>(), one.context - 1);
  EXPECT_GT(a.answer_mask.sum().item<int64_t>(), 2 * one.answer_mask.sum().item<int64_t>());
}

TEST(TrainLm, LearningRateWarmsUpThenDecaysToTheFloor) {
  TrainLmOptions o;
  o.steps = 100;
  o.warmup_steps = 10;
  o.lr = 1e-3;
  o.min_lr_ratio = 0.1;
  EXPECT_LT(learning_rate(o, 0), 2e-4);
  EXPECT_NEAR(learning_rate(o, 10), 1e-3, 1e-12);
  EXPECT_GT(learning_rate(o, 50), learning_rate(o, 60));
  EXPECT_NEAR(learning_rate(o, 100), 1e-4, 1e-9);
}

TEST(TrainLm, CurriculumStaysWithinItsBounds) {
  TrainLmOptions o = tiny_options("/tmp/unused");
  o.min_context = 128;
  o.max_context = 512;
  o.long_fraction = 0.2;
  o.long_context = 1024;
  o.steps = 200;
  int64_t longest = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    const int64_t context = train_context_tokens(o, step);
    EXPECT_GE(context, 128);
    EXPECT_LE(context, 1024);
    EXPECT_TRUE(context == o.min_context || context % 64 == 0) << context;
    longest = std::max(longest, context);
  }
  EXPECT_GT(longest, 512);  // the long steps happen
}

}  // namespace
}  // namespace namm
