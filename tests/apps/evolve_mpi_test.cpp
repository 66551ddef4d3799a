// `namm evolve` spread over MPI ranks (mpirun -np 2 on this machine, loopback
// only): the same seed gives the same NAMM with 1 or 2 ranks, and a rank that
// dies mid-generation ends the job, keeps the last checkpoint, and a rerun
// finishes with what an uninterrupted run gives. Skipped when this build has
// no MPI or mpirun is missing.
#include "core/cluster.h"
#include "core/namm_model.h"
#include "text/llama.h"
#include "text/llama_checkpoint.h"
#include "tests/run_command.h"
#include "text/tokenizer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;

using test_support::RunResult;

RunResult run(const std::string& command) { return test_support::run_command(command); }

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Open MPI refuses root without these; --oversubscribe: 2 ranks on few cores
const char* const kMpirun =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,tcp,vader "
    "mpirun --oversubscribe -np ";

class EvolveMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!built_with_mpi()) GTEST_SKIP() << "this build has no MPI";
    if (run("mpirun --version").exit_code != 0) GTEST_SKIP() << "mpirun not found";
    dir_ = fs::temp_directory_path() / ("namm_mpi_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // a tiny random task model: fast, peaked predictions, the builtin vocabulary
    LlamaConfig config;
    config.vocab_size = builtin_tokenizer().vocab_size();
    config.hidden_size = 32;
    config.intermediate_size = 48;
    config.num_hidden_layers = 2;
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.max_position_embeddings = 512;
    config.initializer_range = 0.3;
    at::manual_seed(7);
    save_llama_checkpoint((dir_ / "lm").string(), Llama(config));
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // 3 generations, population 6, one 192-token prompt per task, NAMM updates every 64 tokens
  std::string evolve_args(const std::string& name) const {
    return std::string(NAMM_BINARY) + " evolve --lm " + (dir_ / "lm").string() + " --out " +
           (dir_ / (name + ".safetensors")).string() +
           " --stage kv_retrieval,counting:3 --population 6 --prompts-per-task 1 --context-tokens 192"
           " --delay 64 --prompt-chunk 64 --max-answer-tokens 4 --threads 1";
  }

  fs::path dir_;
};

TEST_F(EvolveMpi, TwoAndFourRanksEvolveTheSameNammAsOne) {
  const RunResult single = run(evolve_args("one") + " --cluster single");
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const RunResult two = run(std::string(kMpirun) + "2 " + evolve_args("two"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("MPI, 2 ranks"), std::string::npos) << two.output;
  // 4 ranks on this machine's cores: shares of 1, 1, 2, 2 candidates (+ the mean)
  const RunResult four = run(std::string(kMpirun) + "4 " + evolve_args("four"));
  ASSERT_EQ(four.exit_code, 0) << four.output;
  // the provenance names the command line, which differs: compare what was evolved
  const NammModel a = NammModel::load((dir_ / "one.safetensors").string());
  const NammModel b = NammModel::load((dir_ / "two.safetensors").string());
  const NammModel c = NammModel::load((dir_ / "four.safetensors").string());
  EXPECT_TRUE(at::equal(a.params, b.params));
  EXPECT_TRUE(at::equal(a.params, c.params));
  EXPECT_TRUE(at::equal(a.normalizer.mean(), b.normalizer.mean()));
  EXPECT_TRUE(at::equal(a.normalizer.mean(), c.normalizer.mean()));
  EXPECT_GT(a.params.abs().sum().item<double>(), 0.0);
  // the per-generation logs agree on every fitness
  const std::string log_a = read_bytes(dir_ / "one.safetensors.ckpt" / "log.jsonl");
  const std::string log_b = read_bytes(dir_ / "two.safetensors.ckpt" / "log.jsonl");
  auto fitness_fields = [](const std::string& log) {
    std::string out;
    for (size_t at = log.find("\"best_fitness\""); at != std::string::npos; at = log.find("\"best_fitness\"", at + 1))
      out += log.substr(at, log.find(',', at) - at) + ";";
    return out;
  };
  EXPECT_EQ(fitness_fields(log_a), fitness_fields(log_b));
}

TEST_F(EvolveMpi, DeadRankStopsTheJobAndTheRerunFinishesTheSameRun) {
  const RunResult reference = run(evolve_args("ref") + " --cluster single");
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  // rank 1 kills itself when generation 2's work arrives
  const RunResult broken = run(std::string("NAMM_EVOLVE_FAULT=1:2 ") + kMpirun + "2 -x NAMM_EVOLVE_FAULT " +
                               evolve_args("run"));
  EXPECT_NE(broken.exit_code, 0) << broken.output;
  // mpirun names the rank that died; rank 0 told how to resume when it started
  EXPECT_NE(broken.output.find("rank 1"), std::string::npos) << broken.output;
  EXPECT_NE(broken.output.find("run the same command to resume"), std::string::npos) << broken.output;
  EXPECT_FALSE(fs::exists(dir_ / "run.safetensors")) << "no finished output after a failure";
  const std::string state = read_bytes(dir_ / "run.safetensors.ckpt" / "state.json");
  EXPECT_NE(state.find("\"generation\": 1"), std::string::npos) << state;
  // resumed, here on one rank: the number of ranks does not change the run
  const RunResult resumed = run(evolve_args("run") + " --cluster single");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const NammModel a = NammModel::load((dir_ / "ref.safetensors").string());
  const NammModel b = NammModel::load((dir_ / "run.safetensors").string());
  EXPECT_TRUE(at::equal(a.params, b.params));
}

}  // namespace
}  // namespace namm
