// The Hugging Face layouts beyond plain Llama (Llama 3 RoPE scaling, linear
// scaling, Qwen2 biases, Qwen3 q/k norms, bf16 weights) against reference
// logits from tests/fixtures/make_layout_fixtures.py, an independent Python
// forward pass of each layout.
#include "text/llama_checkpoint.h"

#include "core/npy.h"
#include "tests/test_dir.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

namespace namm {
namespace {

const std::string kLayouts = std::string(NAMM_FIXTURES_DIR) + "/layouts";

// max |ours - reference| over the largest |reference| logit
double relative_error(const at::Tensor& ours, const at::Tensor& reference) {
  return (ours.to(at::kFloat) - reference).abs().max().item<double>() / reference.abs().max().item<double>();
}

at::Tensor reference_logits(const std::string& layout) { return read_npy(kLayouts + "/" + layout + "/logits.npy"); }

at::Tensor full_forward(const Llama& model) {
  at::NoGradGuard no_grad;
  return model->forward(read_npy(kLayouts + "/tokens.npy").unsqueeze(0)).squeeze(0);  // [T, V]
}

// the inference path: the prunable cache fed in two chunks
at::Tensor cached_forward(const Llama& model) {
  const at::Tensor tokens = read_npy(kLayouts + "/tokens.npy");
  SequenceState state = model->new_state();
  const at::Tensor first = model->feed(state, tokens.narrow(0, 0, 30), nullptr, true);
  const at::Tensor rest = model->feed(state, tokens.narrow(0, 30, tokens.size(0) - 30), nullptr, true);
  return at::cat({first, rest});
}

class Layout : public ::testing::TestWithParam<std::string> {};

TEST_P(Layout, LogitsMatchTheIndependentReferenceOnBothPaths) {
  at::set_num_threads(2);
  const LlamaCheckpoint checkpoint = load_llama_checkpoint(kLayouts + "/" + GetParam());
  const at::Tensor expected = reference_logits(GetParam());
  EXPECT_LT(relative_error(full_forward(checkpoint.model), expected), 1e-4) << checkpoint.config.summary();
  EXPECT_LT(relative_error(cached_forward(checkpoint.model), expected), 1e-4) << checkpoint.config.summary();
}

INSTANTIATE_TEST_SUITE_P(HuggingFace, Layout,
                         ::testing::Values("llama3_scaled", "llama_linear", "qwen2", "qwen3", "qwen3_bf16"));

TEST(Layouts, ConfigsAreReadAsTheirFamily) {
  const LlamaConfig llama3 = read_llama_config(kLayouts + "/llama3_scaled/config.json");
  EXPECT_EQ(llama3.rope_scaling.kind, RopeScaling::Kind::kLlama3);
  EXPECT_DOUBLE_EQ(llama3.rope_scaling.factor, 8.0);
  EXPECT_EQ(llama3.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_TRUE(llama3.tie_word_embeddings);
  const LlamaConfig qwen2 = read_llama_config(kLayouts + "/qwen2/config.json");
  EXPECT_TRUE(qwen2.qkv_bias);
  EXPECT_FALSE(qwen2.o_bias);
  const LlamaConfig qwen3 = read_llama_config(kLayouts + "/qwen3/config.json");
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_EQ(qwen3.resolved_head_dim(), 16);
  EXPECT_NE(qwen3.summary().find("qwen3, q/k norm"), std::string::npos) << qwen3.summary();
}

TEST(Layouts, Bfloat16WeightsStayBfloat16WhenAskedAndStayClose) {
  const LlamaCheckpoint checkpoint = load_llama_checkpoint(kLayouts + "/qwen3_bf16", at::kBFloat16);
  EXPECT_EQ(checkpoint.model->layers[0]->self_attn->q_norm->weight.scalar_type(), at::kBFloat16);
  // bf16 arithmetic (8 mantissa bits) over two layers: near the reference, not equal to it
  const double error = relative_error(full_forward(checkpoint.model), reference_logits("qwen3_bf16"));
  EXPECT_LT(error, 0.05);
  EXPECT_GT(error, 1e-5);
}

class SavedLayout : public test_support::TempDirTest {
 protected:
  SavedLayout() : TempDirTest("namm_saved_layout") {}
};

TEST_F(SavedLayout, SavingAndLoadingKeepsTheLayoutAndTheLogits) {
  for (const std::string layout : {"qwen2", "qwen3", "llama3_scaled"}) {
    const LlamaCheckpoint original = load_llama_checkpoint(kLayouts + "/" + layout);
    save_llama_checkpoint(path(layout), original.model);
    const LlamaCheckpoint again = load_llama_checkpoint(path(layout));
    EXPECT_EQ(again.config.model_type, original.config.model_type);
    EXPECT_EQ(again.config.summary(), original.config.summary());
    EXPECT_LT(relative_error(full_forward(again.model), reference_logits(layout)), 1e-4) << layout;
  }
}

TEST(Layouts, UnsupportedVariantsAreRefusedByName) {
  const std::string base = R"("vocab_size": 8, "hidden_size": 4, "intermediate_size": 6,
                              "num_hidden_layers": 1, "num_attention_heads": 2)";
  const auto error_of = [&](const std::string& extra) {
    return test_support::message_of([&] { parse_llama_config("{" + base + extra + "}", "m/config.json"); });
  };
  EXPECT_NE(error_of(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0})").find("m/config.json: rope_scaling.rope_type 'yarn'"),
            std::string::npos);
  EXPECT_NE(error_of(R"(, "rope_scaling": {"rope_type": "llama3"})").find("rope_scaling.factor is missing"), std::string::npos);
  EXPECT_NE(error_of(R"(, "rope_scaling": {"rope_type": "linear", "factor": -2})").find("rope_scaling.factor must be > 0"),
            std::string::npos);
  EXPECT_NE(error_of(R"(, "model_type": "qwen2", "attention_bias": true)").find("attention_bias"), std::string::npos);
  EXPECT_NE(error_of(R"(, "mlp_bias": true)").find("mlp_bias"), std::string::npos);
  EXPECT_NE(error_of(R"(, "model_type": "gemma")").find("model_type 'gemma' is not supported"), std::string::npos);
}

}  // namespace
}  // namespace namm
