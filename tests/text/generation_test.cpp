// Pins text/generation.h: cached greedy decoding equals argmax over repeated
// full forward passes, sampling is reproducible by seed, and generation keeps
// to the controller's protocol while a policy prunes.
#include "text/generation.h"
#include "text/llama.h"

#include "adapters/memory_controller.h"
#include "core/baselines.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <vector>

namespace namm {
namespace {

Llama tiny_model() {
  at::set_num_threads(2);
  LlamaConfig config;
  config.vocab_size = 40;
  config.hidden_size = 32;
  config.intermediate_size = 40;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 256;
  config.initializer_range = 0.3;  // peaked, non-uniform predictions
  at::manual_seed(11);
  return Llama(config);
}

at::Tensor tiny_prompt(int64_t length) {
  at::manual_seed(5);
  return at::randint(0, 40, {length}, at::kLong);
}

TEST(Generation, GreedyWithFullCacheEqualsRepeatedFullForward) {
  const Llama model = tiny_model();
  const at::Tensor prompt = tiny_prompt(21);
  GenerationOptions options;
  options.max_new_tokens = 12;
  options.prompt_chunk = 8;
  const GenerationResult result = generate(*model, prompt, options);
  ASSERT_EQ(result.tokens.size(), 12u);
  // a model that always emits one token would pass trivially
  EXPECT_GT(std::set<int64_t>(result.tokens.begin(), result.tokens.end()).size(), 2u);

  std::vector<int64_t> sequence(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + prompt.size(0));
  at::NoGradGuard no_grad;
  for (int64_t expected_index = 0; expected_index < 12; ++expected_index) {
    const at::Tensor tokens = at::tensor(sequence, at::kLong).unsqueeze(0);  // [1, T]
    const int64_t next = model->forward(tokens)[0][-1].argmax().item<int64_t>();
    EXPECT_EQ(result.tokens[static_cast<size_t>(expected_index)], next) << "at generated token " << expected_index;
    sequence.push_back(next);
  }
  // the full cache holds every token fed: the prompt and all but the last generated one
  for (double cached : result.cached_tokens_per_layer) EXPECT_EQ(cached, 21 + 11);
  EXPECT_EQ(result.policy_updates, 0);
  EXPECT_GT(result.cache_bytes, 0);
}

TEST(Generation, SameSeedGivesSameSampleAndOtherSeedsDiffer) {
  const Llama model = tiny_model();
  GenerationOptions options;
  options.max_new_tokens = 20;
  options.temperature = 1.5;
  options.seed = 42;
  const GenerationResult a = generate(*model, tiny_prompt(10), options);
  const GenerationResult b = generate(*model, tiny_prompt(10), options);
  EXPECT_EQ(a.tokens, b.tokens);
  options.seed = 43;
  const GenerationResult c = generate(*model, tiny_prompt(10), options);
  EXPECT_NE(a.tokens, c.tokens);
}

TEST(Generation, TopKOfOneSamplesTheArgmax) {
  const Llama model = tiny_model();
  GenerationOptions greedy;
  greedy.max_new_tokens = 10;
  GenerationOptions top1 = greedy;
  top1.temperature = 3.0;
  top1.top_k = 1;
  EXPECT_EQ(generate(*model, tiny_prompt(9), greedy).tokens, generate(*model, tiny_prompt(9), top1).tokens);
}

TEST(Generation, TopKNeverSamplesOutsideTheKLikeliest) {
  const Llama model = tiny_model();
  at::Generator generator = at::detail::createCPUGenerator(3);
  GenerationOptions options;
  options.temperature = 5.0;  // nearly flat: without top-k most draws would fall outside
  options.top_k = 3;
  at::manual_seed(0);
  const at::Tensor logits = at::randn({40});
  const at::Tensor allowed = std::get<1>(logits.topk(3));
  for (int i = 0; i < 50; ++i) {
    const int64_t token = pick_token(logits, options, generator);
    EXPECT_TRUE((allowed == token).any().item<bool>()) << token;
  }
}

TEST(Generation, StopTokenEndsGenerationAndIsIncluded) {
  const Llama model = tiny_model();
  GenerationOptions options;
  options.max_new_tokens = 12;
  const std::vector<int64_t> free_run = generate(*model, tiny_prompt(15), options).tokens;
  options.stop_token_ids = {free_run[4]};
  const GenerationResult stopped = generate(*model, tiny_prompt(15), options);
  EXPECT_TRUE(stopped.stopped);
  const size_t first = static_cast<size_t>(std::find(free_run.begin(), free_run.end(), free_run[4]) - free_run.begin());
  ASSERT_EQ(stopped.tokens.size(), first + 1);
  EXPECT_EQ(stopped.tokens.back(), free_run[4]);
}

TEST(Generation, PruningPolicyRunsAndCachesFewerTokens) {
  const Llama model = tiny_model();
  GenerationOptions options;
  options.max_new_tokens = 20;
  options.prompt_chunk = 32;
  const GenerationResult full = generate(*model, tiny_prompt(70), options);

  ControllerOptions controller_options;
  controller_options.delay = 16;
  MemoryController controller(std::make_unique<RecencyPolicy>(Budget{24, 0.0}), 2, controller_options);
  const GenerationResult pruned = generate(*model, tiny_prompt(70), options, &controller);
  ASSERT_EQ(pruned.tokens.size(), 20u);
  // 70 + 19 tokens fed: updates at 16, 32, ..., 80
  EXPECT_EQ(pruned.policy_updates, 5);
  EXPECT_EQ(full.mean_cached_tokens(), 89.0);
  EXPECT_LE(pruned.mean_cached_tokens(), 24.0 + 16.0);
  EXPECT_LT(pruned.cache_used_bytes, full.cache_used_bytes / 2);
}

TEST(Generation, AttentionPolicyGetsExactlyDelayQueriesPerUpdate) {
  // H2O needs attention rows; the controller throws if an update sees any
  // other count than the buffered tokens, so chunking must follow the protocol
  const Llama model = tiny_model();
  GenerationOptions options;
  options.max_new_tokens = 9;
  options.prompt_chunk = 128;  // larger than the delay: prefill must split by the controller
  ControllerOptions controller_options;
  controller_options.delay = 7;
  MemoryController controller(std::make_unique<H2oPolicy>(Budget{0, 0.5}, 0.5), 2, controller_options);
  const GenerationResult result = generate(*model, tiny_prompt(30), options, &controller);
  EXPECT_EQ(result.tokens.size(), 9u);
  EXPECT_EQ(result.policy_updates, (30 + 8) / 7);
  for (const UpdateHeadStats& stats : controller.statistics()) EXPECT_EQ(stats.num_new_tokens, 7);
}

TEST(Generation, InvalidOptionsAreRefusedWithTheirValue) {
  const Llama model = tiny_model();
  GenerationOptions options;
  options.temperature = -1.0;
  try {
    generate(*model, tiny_prompt(3), options);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("temperature must be >= 0, got -1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace namm
