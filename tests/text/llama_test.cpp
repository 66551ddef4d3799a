// Pins the two paths of text/llama.h to each other: the cached, prunable
// inference path must reproduce the plain causal forward however the prompt
// is chunked, and must keep running when a policy evicts.
#include "text/llama.h"

#include "adapters/memory_controller.h"
#include "core/baselines.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace namm {
namespace {

LlamaConfig tiny_config() {
  LlamaConfig config;
  config.vocab_size = 50;
  config.hidden_size = 32;
  config.intermediate_size = 40;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = 1000.0;
  config.max_position_embeddings = 128;
  // large enough that attention is far from uniform, so a wrong mask or rotation shows
  config.initializer_range = 0.3;
  return config;
}

Llama make_model(const LlamaConfig& config, uint64_t seed = 1) {
  at::set_num_threads(2);
  at::manual_seed(seed);
  return Llama(config);
}

at::Tensor prompt(int64_t length, int64_t vocab, uint64_t seed = 7) {
  at::manual_seed(seed);
  return at::randint(0, vocab, {length}, at::kLong);
}

// full-forward logits of one sequence: [T, V]
at::Tensor reference_logits(const Llama& model, const at::Tensor& tokens) {
  at::NoGradGuard no_grad;
  return model->forward(tokens.unsqueeze(0)).squeeze(0);
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, double tol = 1e-4) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const double diff = (actual - expected).abs().max().item<double>();
  EXPECT_LT(diff, tol) << "max |difference| " << diff;
}

TEST(Llama, FeedingWholePromptMatchesForward) {
  const Llama model = make_model(tiny_config());
  const at::Tensor tokens = prompt(37, 50);
  const at::Tensor expected = reference_logits(model, tokens);
  SequenceState state = model->new_state();
  const at::Tensor logits = model->feed(state, tokens, nullptr, /*all_logits=*/true);  // [T, V]
  expect_close(logits, expected);
  EXPECT_EQ(state.next_position, 37);
  EXPECT_EQ(state.caches[1].length(0), 37);
  // logits are not trivially close: they vary by far more than the tolerance
  EXPECT_GT(expected.std().item<double>(), 0.1);
}

TEST(Llama, FeedingInChunksMatchesForward) {
  const Llama model = make_model(tiny_config());
  const at::Tensor tokens = prompt(37, 50);
  const at::Tensor expected = reference_logits(model, tokens);
  SequenceState state = model->new_state();
  int64_t start = 0;
  for (int64_t chunk : {5, 11, 1, 20}) {
    const at::Tensor logits = model->feed(state, tokens.narrow(0, start, chunk), nullptr, true);  // [chunk, V]
    expect_close(logits, expected.narrow(0, start, chunk));
    start += chunk;
  }
  EXPECT_EQ(start, 37);
}

TEST(Llama, FeedingTokenByTokenMatchesForward) {
  const Llama model = make_model(tiny_config());
  const at::Tensor tokens = prompt(30, 50);
  const at::Tensor expected = reference_logits(model, tokens);
  SequenceState state = model->new_state();
  for (int64_t i = 0; i < 30; ++i) {
    const at::Tensor logits = model->feed(state, tokens.narrow(0, i, 1));  // [V]
    expect_close(logits, expected[i]);
  }
}

TEST(Llama, BatchedForwardTreatsRowsIndependently) {
  const Llama model = make_model(tiny_config());
  const at::Tensor a = prompt(12, 50, 1);
  const at::Tensor b = prompt(12, 50, 2);
  at::NoGradGuard no_grad;
  const at::Tensor batch = model->forward(at::stack({a, b}));  // [2, T, V]
  expect_close(batch[0], reference_logits(model, a));
  expect_close(batch[1], reference_logits(model, b));
}

TEST(Llama, MultiQueryAndFullHeadsAlsoMatch) {
  for (int64_t kv_heads : {1, 4}) {
    LlamaConfig config = tiny_config();
    config.num_key_value_heads = kv_heads;
    const Llama model = make_model(config);
    const at::Tensor tokens = prompt(19, 50);
    SequenceState state = model->new_state();
    model->feed(state, tokens.narrow(0, 0, 9));
    const at::Tensor logits = model->feed(state, tokens.narrow(0, 9, 10), nullptr, true);
    expect_close(logits, reference_logits(model, tokens).narrow(0, 9, 10));
  }
}

TEST(Llama, PositionsBeyondTheRopeTableMatchTheTable) {
  LlamaConfig short_table = tiny_config();
  short_table.max_position_embeddings = 8;
  const Llama model = make_model(tiny_config(), 3);
  const Llama truncated = make_model(short_table, 3);
  const at::Tensor positions = at::arange(5, 20, at::kLong);
  const auto [cos_table, sin_table] = model->rope(positions);
  const auto [cos_live, sin_live] = truncated->rope(positions);
  EXPECT_TRUE(at::equal(cos_table, cos_live));
  EXPECT_TRUE(at::equal(sin_table, sin_live));
}

TEST(Llama, RopeRotatesPairsOfHalvesAsHuggingFace) {
  // a unit vector on coordinate 0 rotated by angle a lands on (cos a, ..., sin a at Dh/2)
  const Llama model = make_model(tiny_config());
  const int64_t dh = tiny_config().resolved_head_dim();
  at::Tensor x = at::zeros({1, dh});
  x[0][0] = 1.0;
  const auto [cos, sin] = model->rope(at::full({1}, 3, at::kLong));  // [1, Dh/2]
  const at::Tensor y = apply_rope(x, cos, sin);
  EXPECT_NEAR(y[0][0].item<double>(), std::cos(3.0), 1e-6);
  EXPECT_NEAR(y[0][dh / 2].item<double>(), std::sin(3.0), 1e-6);
  EXPECT_NEAR(y.norm().item<double>(), 1.0, 1e-6);
}

TEST(Llama, TiedModelHasNoLmHeadAndUsesEmbedding) {
  LlamaConfig config = tiny_config();
  config.tie_word_embeddings = true;
  const Llama model = make_model(config);
  EXPECT_FALSE(model->lm_head);
  EXPECT_TRUE(model->output_weight().is_same(model->embed_tokens->weight));
  for (const auto& [name, tensor] : model->hf_named_parameters()) EXPECT_NE(name, "lm_head.weight");
}

TEST(Llama, ParametersCarryHuggingFaceNames) {
  const Llama model = make_model(tiny_config());
  std::vector<std::string> names;
  for (const auto& [name, tensor] : model->hf_named_parameters()) names.push_back(name);
  // embed + 2 x (4 attn + 3 mlp + 2 norms) + norm + lm_head
  ASSERT_EQ(names.size(), 1u + 2u * 9u + 2u);
  EXPECT_EQ(names.front(), "model.embed_tokens.weight");
  EXPECT_EQ(names.back(), "lm_head.weight");
  EXPECT_NE(std::find(names.begin(), names.end(), "model.layers.1.self_attn.k_proj.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "model.layers.0.post_attention_layernorm.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "model.norm.weight"), names.end());
}

TEST(Llama, ForwardIsDifferentiable) {
  const Llama model = make_model(tiny_config());
  const at::Tensor tokens = prompt(10, 50).unsqueeze(0);
  const at::Tensor loss = model->forward(tokens).logsumexp(-1).mean();
  loss.backward();
  const at::Tensor grad = model->layers[0]->self_attn->q_proj->weight.grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_GT(grad.abs().sum().item<double>(), 0.0);
}

TEST(Llama, RecencyPolicyShrinksTheCacheAndDecodingGoesOn) {
  const Llama model = make_model(tiny_config());
  ControllerOptions options;
  options.delay = 8;
  MemoryController controller(std::make_unique<RecencyPolicy>(Budget{12, 0.0}), 2, options);
  SequenceState state = model->new_state();
  const at::Tensor tokens = prompt(60, 50);
  int64_t fed = 0;
  while (fed < 60) {
    const int64_t n = std::min<int64_t>(controller.tokens_until_update(), 60 - fed);
    const at::Tensor logits = model->feed(state, tokens.narrow(0, fed, n), &controller);
    EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
    fed += n;
  }
  EXPECT_EQ(controller.num_updates(), 7);
  for (const LayerKvCache& cache : state.caches) {
    for (int64_t h = 0; h < cache.num_heads(); ++h) EXPECT_LE(cache.length(h), 12 + 8);
    // the most recent tokens are the ones kept
    EXPECT_EQ(cache.position_list(0).back(), 59);
  }
  EXPECT_LT(state.used_bytes(), model->new_state().caches.size() * 60 * 2 * 8 * 2 * 4);
  // after an update only the budget remains
  EXPECT_EQ(state.caches[0].length(0), 12 + 4);
}

TEST(Llama, AttentionPolicyGetsItsRowsThroughTheRecorder) {
  const Llama model = make_model(tiny_config());
  ControllerOptions options;
  options.delay = 6;
  MemoryController controller(std::make_unique<H2oPolicy>(Budget{0, 0.5}), 2, options);
  SequenceState state = model->new_state();
  const at::Tensor tokens = prompt(24, 50);
  for (int64_t start = 0; start < 24; start += 3) model->feed(state, tokens.narrow(0, start, 3), &controller);
  EXPECT_EQ(controller.num_updates(), 4);
  EXPECT_EQ(state.caches[1].length(1), 12);
  EXPECT_LT(controller.mean_retained_fraction(), 1.0);
}

TEST(Llama, FeedingMoreThanTheControllerAllowsThrows) {
  const Llama model = make_model(tiny_config());
  ControllerOptions options;
  options.delay = 4;
  MemoryController controller(std::make_unique<FullCachePolicy>(), 2, options);
  SequenceState state = model->new_state();
  EXPECT_THROW(model->feed(state, prompt(5, 50), &controller), c10::Error);
  EXPECT_EQ(state.caches[0].length(0), 0);  // refused before touching the caches
}

TEST(LlamaConfig, ValidateNamesTheFieldAndValue) {
  LlamaConfig config = tiny_config();
  config.num_key_value_heads = 3;
  try {
    config.validate();
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("num_attention_heads 4"), std::string::npos) << message;
    EXPECT_NE(message.find("num_key_value_heads 3"), std::string::npos) << message;
  }
  config = tiny_config();
  config.rms_norm_eps = 0.0;
  EXPECT_THROW(config.validate(), std::invalid_argument);
}

}  // namespace
}  // namespace namm
