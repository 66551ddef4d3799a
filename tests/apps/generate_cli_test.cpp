// `namm logits` and `namm generate` on a Llama-3-layout model directory (a
// tiny random model saved with the real Llama 3 tokenizer.json): logits equal
// to the library's forward pass, a 3.9k-token document generated under the
// NAMM with the text streamed, figures in --stats-json, and one clear line
// for a tokenizer that does not belong to the model.
#include "core/npy.h"
#include "tests/run_command.h"
#include "tests/temp_files.h"
#include "tests/test_dir.h"
#include "text/llama_checkpoint.h"
#include "text/text_tokenizer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;
using test_support::read_text;
using test_support::run_namm;
using test_support::RunResult;
using test_support::write_text;

const std::string kTokenizers = NAMM_TOKENIZER_FILES;

class GenerateCli : public test_support::TempDirTest {
 protected:
  GenerateCli() : TempDirTest("namm_generate_cli") {}

  // a Llama 3.2 shaped toy: rope_scaling llama3, tied embeddings, GQA, the real vocabulary
  std::string write_llama3_model() {
    LlamaConfig config;
    config.vocab_size = 128256;
    config.hidden_size = 16;
    config.intermediate_size = 32;
    config.num_hidden_layers = 2;
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.rope_theta = 500000.0;
    config.max_position_embeddings = 131072;
    config.tie_word_embeddings = true;
    config.rope_scaling.kind = RopeScaling::Kind::kLlama3;
    config.rope_scaling.factor = 32.0;
    config.rope_scaling.original_max_position_embeddings = 8192;
    config.initializer_range = 0.5;  // far from uniform attention
    at::manual_seed(3);
    const Llama model(config);
    const std::string dir = path("llama3");
    save_llama_checkpoint(dir, model);
    fs::copy_file(kTokenizers + "/llama3/tokenizer.json", dir + "/tokenizer.json");
    fs::copy_file(kTokenizers + "/llama3/tokenizer_config.json", dir + "/tokenizer_config.json");
    return dir;
  }

  // about 3,900 Llama 3 tokens of mixed prose, code and numbers
  std::string write_document() {
    const auto corpus = nlohmann::json::parse(read_text(NAMM_FIXTURES_DIR "/tokenizers/corpus.json"));
    std::string text;
    for (int pass = 0; pass < 2; ++pass)
      for (const auto& line : corpus) text += line.get<std::string>() + "\n";
    write_text(path("doc.txt"), text);
    return path("doc.txt");
  }
};

TEST_F(GenerateCli, LogitsEqualTheLibrarysForwardPass) {
  const std::string dir = write_llama3_model();
  write_text(path("text.txt"), "The quick brown fox: 12345 \xF0\x9F\x98\x80 <|eot_id|> jumps.");
  const RunResult result = run_namm("logits --model " + dir + " --text-file " + path("text.txt") + " --last 5 --out " + path("l.npy"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const at::Tensor logits = read_npy(path("l.npy"));  // [5, V]

  const LlamaCheckpoint checkpoint = load_llama_checkpoint(dir);
  const std::vector<int64_t> ids = TextTokenizer::load(dir).encode(read_text(path("text.txt")), true);
  at::NoGradGuard no_grad;
  const at::Tensor expected = checkpoint.model->forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0);  // [T, V]
  ASSERT_EQ(logits.size(0), 5);
  EXPECT_LT((logits - expected.narrow(0, expected.size(0) - 5, 5)).abs().max().item<double>(), 1e-4);
}

TEST_F(GenerateCli, GeneratesFromAFourThousandTokenDocumentUnderTheNamm) {
  const std::string dir = write_llama3_model();
  // stderr (progress, figures) to a file of its own: stdout must hold the generated text only
  const RunResult result = test_support::run_command(
      std::string("{ ") + NAMM_BINARY + " generate --model " + dir + " --prompt-file " + write_document() +
      " --memory namm --namm " NAMM_MODELS_DIR "/namm.safetensors --max-new-tokens 12 --stats-json " + path("stats.json") +
      " 2>" + path("progress.txt") + "; }");
  ASSERT_EQ(result.exit_code, 0) << result.output << read_text(path("progress.txt"));
  const auto stats = nlohmann::json::parse(read_text(path("stats.json")));
  EXPECT_GT(stats["prompt_tokens"].get<int64_t>(), 2000);
  EXPECT_GT(stats["memory_updates"].get<int64_t>(), 0);
  const auto kept = stats["kv_tokens_per_layer"].get<std::vector<double>>();
  ASSERT_EQ(kept.size(), 2u);
  for (double k : kept) EXPECT_LT(k, stats["prompt_tokens"].get<double>());  // the NAMM evicted
  EXPECT_GT(stats["peak_kv_bytes"].get<int64_t>(), stats["kv_bytes_end"].get<int64_t>() / 2);
  // what streamed to stdout is the decoded continuation
  const auto ids = stats["generated_ids"].get<std::vector<int64_t>>();
  EXPECT_EQ(result.output, TextTokenizer::load(dir).decode(ids, true) + "\n");
  const std::string progress = read_text(path("progress.txt"));
  EXPECT_NE(progress.find("prompt " + std::to_string(stats["prompt_tokens"].get<int64_t>()) + " tokens, generated"),
            std::string::npos) << progress;
  EXPECT_NE(progress.find("peak KV"), std::string::npos) << progress;
}

TEST_F(GenerateCli, ATokenizerLargerThanTheModelsVocabularyIsRefusedByName) {
  const std::string dir = path("small");
  fs::copy(NAMM_FIXTURES_DIR "/layouts/qwen3", dir);
  fs::copy_file(kTokenizers + "/qwen3/tokenizer.json", dir + "/tokenizer.json");
  write_text(path("p.txt"), "hello");
  const RunResult result = run_namm("generate --model " + dir + " --prompt-file " + path("p.txt") + " --stats-json " + path("s.json"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find(dir + "/tokenizer.json: 151669 tokens, but " + dir + "/config.json has vocab_size 96"),
            std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
  EXPECT_FALSE(fs::exists(path("s.json")));
}

}  // namespace
}  // namespace namm
