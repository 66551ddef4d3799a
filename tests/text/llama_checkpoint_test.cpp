// Pins text/llama_checkpoint.h against checkpoints written by
// tests/fixtures/make_llama_fixture.py, whose reference logits come from an
// independent Python implementation of Hugging Face's Llama forward pass.
#include "text/llama_checkpoint.h"
#include "tests/temp_files.h"

#include "core/atomic_file.h"
#include "core/npy.h"
#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <unistd.h>

namespace namm {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures = std::string(NAMM_FIXTURES_DIR) + "/llama";

// a fresh directory under the system temp dir, removed at scope exit
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("namm_text_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

// runs f and returns the message of the std::runtime_error it throws ("" if none)
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

at::Tensor fixture_tokens() { return read_npy(kFixtures + "/tokens.npy"); }

void expect_logits_match(const Llama& model, const std::string& reference, double tol) {
  at::set_num_threads(2);
  const at::Tensor expected = read_npy(kFixtures + "/" + reference);  // [T, V]
  at::NoGradGuard no_grad;
  const at::Tensor logits = model->forward(fixture_tokens().unsqueeze(0)).squeeze(0).to(at::kFloat);
  ASSERT_EQ(logits.sizes(), expected.sizes());
  const double diff = (logits - expected).abs().max().item<double>();
  EXPECT_LT(diff, tol) << "max |difference| " << diff << " (logits std " << expected.std().item<double>() << ")";
}

TEST(LlamaCheckpoint, ShardedFloat32MatchesPythonReference) {
  const LlamaCheckpoint checkpoint = load_llama_checkpoint(kFixtures + "/sharded_f32");
  EXPECT_EQ(checkpoint.config.vocab_size, 64);
  EXPECT_EQ(checkpoint.config.num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(checkpoint.config.rope_theta, 500.0);
  EXPECT_FALSE(checkpoint.config.tie_word_embeddings);
  EXPECT_EQ(checkpoint.metadata.at("format"), "pt");
  expect_logits_match(checkpoint.model, "logits_sharded_f32.npy", 1e-4);
}

TEST(LlamaCheckpoint, CachedInferenceMatchesPythonReference) {
  const LlamaCheckpoint checkpoint = load_llama_checkpoint(kFixtures + "/sharded_f32");
  const at::Tensor expected = read_npy(kFixtures + "/logits_sharded_f32.npy");
  const at::Tensor tokens = fixture_tokens();
  SequenceState state = checkpoint.model->new_state();
  checkpoint.model->feed(state, tokens.narrow(0, 0, 7));
  const at::Tensor logits = checkpoint.model->feed(state, tokens.narrow(0, 7, tokens.size(0) - 7), nullptr, true);
  EXPECT_LT((logits - expected.narrow(0, 7, tokens.size(0) - 7)).abs().max().item<double>(), 1e-4);
}

TEST(LlamaCheckpoint, TiedBfloat16SingleFileConvertsToFloat32) {
  const LlamaCheckpoint checkpoint = load_llama_checkpoint(kFixtures + "/single_bf16");
  EXPECT_TRUE(checkpoint.config.tie_word_embeddings);
  EXPECT_EQ(checkpoint.model->embed_tokens->weight.scalar_type(), at::kFloat);
  expect_logits_match(checkpoint.model, "logits_single_bf16.npy", 1e-4);
}

TEST(LlamaCheckpoint, LoadsIntoBfloat16Model) {
  const LlamaCheckpoint checkpoint = load_llama_checkpoint(kFixtures + "/sharded_f32", at::kBFloat16);
  EXPECT_EQ(checkpoint.model->layers[1]->mlp->up_proj->weight.scalar_type(), at::kBFloat16);
  // bf16 arithmetic: close to the float32 reference, not equal
  expect_logits_match(checkpoint.model, "logits_sharded_f32.npy", 0.5);
}

TEST(LlamaCheckpoint, SaveThenLoadRoundTripsWeightsAndConfig) {
  TempDir dir("roundtrip");
  const LlamaCheckpoint original = load_llama_checkpoint(kFixtures + "/sharded_f32");
  save_llama_checkpoint(dir.str(), original.model, {{"command", "namm train-lm --seed 3"}});
  EXPECT_TRUE(fs::exists(dir.path / "model.safetensors"));
  EXPECT_FALSE(test_support::has_temporary((dir.path / "model.safetensors").string()));
  const LlamaCheckpoint loaded = load_llama_checkpoint(dir.str());
  EXPECT_EQ(loaded.config.summary(), original.config.summary());
  EXPECT_DOUBLE_EQ(loaded.config.rms_norm_eps, original.config.rms_norm_eps);
  EXPECT_EQ(loaded.metadata.at("command"), "namm train-lm --seed 3");
  const auto a = original.model->hf_named_parameters();
  const auto b = loaded.model->hf_named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

TEST(LlamaCheckpoint, SavedTiedModelHasNoLmHead) {
  TempDir dir("tied");
  const LlamaCheckpoint original = load_llama_checkpoint(kFixtures + "/single_bf16");
  save_llama_checkpoint(dir.str(), original.model);
  const SafetensorsFile file = read_safetensors((dir.path / "model.safetensors").string());
  EXPECT_EQ(file.tensors.count("lm_head.weight"), 0u);
  EXPECT_EQ(file.tensors.count("model.embed_tokens.weight"), 1u);
  const std::string config = read_file((dir.path / "config.json").string());
  EXPECT_NE(config.find("\"tie_word_embeddings\": true"), std::string::npos) << config;
}

TEST(LlamaCheckpoint, WrongShapeNamesFileTensorAndShapes) {
  TempDir dir("shape");
  const LlamaCheckpoint original = load_llama_checkpoint(kFixtures + "/sharded_f32");
  save_llama_checkpoint(dir.str(), original.model);
  SafetensorsFile file = read_safetensors((dir.path / "model.safetensors").string());
  std::map<std::string, at::Tensor> tensors = file.tensors;
  tensors["model.layers.1.self_attn.k_proj.weight"] = at::zeros({8, 32});
  write_safetensors((dir.path / "model.safetensors").string(), tensors);
  const std::string message = error_of([&] { load_llama_checkpoint(dir.str()); });
  EXPECT_NE(message.find("model.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("model.layers.1.self_attn.k_proj.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("[8, 32]"), std::string::npos) << message;
  EXPECT_NE(message.find("[16, 32]"), std::string::npos) << message;
}

TEST(LlamaCheckpoint, MissingTensorIsNamed) {
  TempDir dir("missing");
  const LlamaCheckpoint original = load_llama_checkpoint(kFixtures + "/sharded_f32");
  save_llama_checkpoint(dir.str(), original.model);
  std::map<std::string, at::Tensor> tensors = read_safetensors((dir.path / "model.safetensors").string()).tensors;
  tensors.erase("model.norm.weight");
  write_safetensors((dir.path / "model.safetensors").string(), tensors);
  const std::string message = error_of([&] { load_llama_checkpoint(dir.str()); });
  EXPECT_NE(message.find("missing tensor model.norm.weight"), std::string::npos) << message;
}

TEST(LlamaCheckpoint, MissingShardNamesTheFile) {
  TempDir dir("shard");
  fs::copy(kFixtures + "/sharded_f32", dir.path, fs::copy_options::recursive);
  fs::remove(dir.path / "model-00002-of-00002.safetensors");
  const std::string message = error_of([&] { load_llama_checkpoint(dir.str()); });
  EXPECT_NE(message.find("model-00002-of-00002.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("not found"), std::string::npos) << message;
}

TEST(LlamaCheckpoint, MissingRequiredConfigFieldNamesFileAndField) {
  const std::string message =
      error_of([] { parse_llama_config(R"({"vocab_size": 8, "hidden_size": 4, "num_hidden_layers": 1,
                                          "num_attention_heads": 2})", "/some/config.json"); });
  EXPECT_NE(message.find("/some/config.json"), std::string::npos) << message;
  EXPECT_NE(message.find("intermediate_size"), std::string::npos) << message;
}

TEST(LlamaCheckpoint, SettingsThatChangeTheMathAreRefused) {
  const std::string base = R"("vocab_size": 8, "hidden_size": 4, "intermediate_size": 6,
                              "num_hidden_layers": 1, "num_attention_heads": 2)";
  EXPECT_NE(error_of([&] { parse_llama_config("{" + base + R"(, "rope_scaling": {"rope_type": "dynamic", "factor": 8.0}})"); })
                .find("rope_scaling"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_llama_config("{" + base + R"(, "hidden_act": "gelu"})"); }).find("gelu"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_llama_config("{" + base + R"(, "model_type": "gpt2"})"); }).find("gpt2"),
            std::string::npos);
  // harmless or default settings pass; defaults follow Hugging Face
  const LlamaConfig config = parse_llama_config("{" + base + R"(, "rope_scaling": null, "pretraining_tp": 1})");
  EXPECT_EQ(config.num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(config.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(config.rms_norm_eps, 1e-6);
  // an inconsistent config names the file
  EXPECT_NE(error_of([&] { parse_llama_config("{" + base + R"(, "num_key_value_heads": 3})", "x/config.json"); })
                .find("x/config.json: LlamaConfig: num_attention_heads 2"),
            std::string::npos);
}

}  // namespace
}  // namespace namm
