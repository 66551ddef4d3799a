// The `namm` program seen from outside: exit codes, one-line errors that name
// the file, no output left behind on failure, and numbers that match the
// library's.
#include "core/namm_model.h"
#include "core/npy.h"
#include "core/spectrogram.h"
#include "tests/run_command.h"
#include "tests/temp_files.h"
#include "tests/test_dir.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;

using test_support::run_command;
using test_support::run_namm;
using test_support::read_text;
using test_support::RunResult;


// script must not hold single quotes
RunResult run_shell(const std::string& script) { return run_command("bash -c '" + script + "'"); }


class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("namm_cli_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // a softmax attention stack [H, Q, K] with causal structure over the last Q keys
  std::string write_attention(const std::string& name, int64_t heads, int64_t queries, int64_t keys) {
    at::manual_seed(7);
    at::Tensor logits = at::randn({heads, queries, keys});
    const at::Tensor query_pos = at::arange(keys - queries, keys).view({1, queries, 1});
    const at::Tensor key_pos = at::arange(keys).view({1, 1, keys});
    logits = logits.masked_fill(key_pos > query_pos, -INFINITY);
    const std::string file = path(name);
    write_npy(file, at::softmax(logits, -1).contiguous());
    return file;
  }

  fs::path dir_;
};

TEST_F(Cli, HelpExitsZeroForEveryCommand) {
  EXPECT_EQ(run_namm("--help").exit_code, 0);
  for (const char* command : {"demo", "spectrogram", "score", "train-lm", "evolve", "eval-text", "frames", "make-scenes",
                              "gen-data", "train-dt", "rollout", "eval-rl", "train-video", "video-qa", "eval-video",
                              "tokenize", "logits", "generate"}) {
    const RunResult result = run_namm(std::string(command) + " --help");
    EXPECT_EQ(result.exit_code, 0) << command << ": " << result.output;
    EXPECT_NE(result.output.find("usage: namm"), std::string::npos) << result.output;
  }
}

TEST_F(Cli, UnknownCommandAndMissingOptionAreUsageErrors) {
  EXPECT_EQ(run_namm("frobnicate").exit_code, 2);
  const RunResult result = run_namm("spectrogram --out " + path("f.npy"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("attention"), std::string::npos) << result.output;
}

TEST_F(Cli, SigtermStopsTrainingAtACheckpointThatTheSameCommandResumes) {
  // a tiny host; the job runs far longer than the test waits, so the signal lands mid-training.
  const std::string train = std::string(NAMM_BINARY) + " train-lm --out " + path("lm") +
                            " --steps 100000 --layers 1 --hidden 32 --heads 2 --kv-heads 2 --intermediate 64"
                            " --tasks kv_retrieval --min-context 64 --max-context 64 --long-fraction 0 --batch-tokens 256"
                            " --checkpoint-every 1000 --log-every 1000 --no-eval --threads 1";
  // signalled a second after it says it is training (the handlers are in place by then), however slow the start.
  auto run_and_stop = [&](const std::string& log) {
    return run_shell("(" + train + " > " + log + " 2>&1 & pid=$!; for i in $(seq 600); do grep -q ing " + log +
                     " && break; sleep 0.1; done; sleep 1; kill -TERM $pid; wait $pid; echo rc=$?)");
  };
  const RunResult first = run_and_stop(path("first.log"));
  ASSERT_NE(first.output.find("rc=130"), std::string::npos) << first.output << read_text(path("first.log"));
  const std::string log = read_text(path("first.log"));
  EXPECT_NE(log.find("stopped at step"), std::string::npos) << log;
  EXPECT_NE(log.find("run the same command to resume"), std::string::npos) << log;
  ASSERT_TRUE(fs::exists(path("lm/trainer_state.safetensors"))) << log;
  // the same command picks up where the first stopped (and is stopped again).
  const RunResult second = run_and_stop(path("second.log"));
  EXPECT_NE(second.output.find("rc=130"), std::string::npos) << second.output;
  EXPECT_NE(read_text(path("second.log")).find("resum"), std::string::npos) << read_text(path("second.log"));
}

TEST_F(Cli, LaterTrainingStageTakesTheModelShapeFromItsInitCheckpoint) {
  const std::string common = " --steps 2 --tasks kv_retrieval --min-context 64 --max-context 64 --long-fraction 0"
                             " --batch-tokens 128 --no-eval --threads 1";
  const RunResult first = run_namm("train-lm --out " + path("a") + common +
                                   " --layers 1 --hidden 32 --heads 2 --kv-heads 2 --intermediate 64");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  // no shape options: the 1-layer, 32-wide shape of stage a
  const RunResult second = run_namm("train-lm --out " + path("b") + " --init-from " + path("a") + common);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("hidden 32, 1 layers"), std::string::npos) << second.output;
  // a shape given explicitly that the checkpoint does not have is refused, naming the tensor
  const RunResult third = run_namm("train-lm --out " + path("c") + " --init-from " + path("a") + common + " --hidden 64");
  EXPECT_NE(third.exit_code, 0);
  EXPECT_NE(third.output.find("embed_tokens"), std::string::npos) << third.output;
}

TEST_F(Cli, TaskListedTwiceIsTrainedMoreButEvaluatedOnce) {
  const RunResult result = run_namm("train-lm --out " + path("lm") +
                                    " --steps 2 --tasks kv_retrieval,kv_retrieval,needle --min-context 64"
                                    " --max-context 64 --long-fraction 0 --batch-tokens 128 --threads 1"
                                    " --eval-lengths 96 --eval-examples 1"
                                    " --layers 1 --hidden 32 --heads 2 --kv-heads 2 --intermediate 64");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string eval = read_text(path("lm") + "/eval.md");
  size_t rows = 0;
  for (size_t at = eval.find("| kv_retrieval |"); at != std::string::npos; at = eval.find("| kv_retrieval |", at + 1)) ++rows;
  EXPECT_EQ(rows, 1u) << eval;
  EXPECT_NE(eval.find("| needle |"), std::string::npos) << eval;
}

TEST_F(Cli, EvalTextWritesEveryPolicysAnswerForEveryExample) {
  const RunResult train = run_namm("train-lm --out " + path("lm") +
                                   " --steps 1 --tasks kv_retrieval --min-context 64 --max-context 64"
                                   " --long-fraction 0 --batch-tokens 128 --threads 1 --no-eval"
                                   " --layers 1 --hidden 32 --heads 2 --kv-heads 2 --intermediate 64");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  const std::string answers = path("answers.jsonl");
  const RunResult eval = run_namm("eval-text --lm " + path("lm") +
                                  " --policies full,recency --tasks kv_retrieval,needle --examples-per-task 2"
                                  " --context-tokens 96 --budget 50% --threads 1 --out-predictions " + answers);
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  std::ifstream in(answers);
  std::string line;
  int lines = 0, recency = 0;
  while (std::getline(in, line)) {
    ++lines;
    EXPECT_NE(line.find("\"prediction\""), std::string::npos) << line;
    recency += line.find("\"policy\":\"recency\"") != std::string::npos;
  }
  EXPECT_EQ(lines, 2 * 2 * 2);  // policies x tasks x examples
  EXPECT_EQ(recency, 4);
}

TEST_F(Cli, SpectrogramMatchesLibraryFeatures) {
  const std::string attention = write_attention("a.npy", 3, 64, 80);
  const RunResult result = run_namm("spectrogram --attention " + attention + " --out " + path("f.npy"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const at::Tensor features = read_npy(path("f.npy"));
  ASSERT_EQ(features.sizes(), (at::IntArrayRef{3, 80, 17}));

  const at::Tensor input = read_npy(attention);
  SpectrogramFeaturizer featurizer;
  for (int64_t h = 0; h < 3; ++h) {
    HeadSpectrogramState state;
    const at::Tensor expected = featurizer.update(input[h].contiguous(), 64, state);
    EXPECT_TRUE(at::allclose(features[h], expected, 1e-5, 1e-6)) << "head " << h;
  }
}

TEST_F(Cli, RawSpectrogramHasFramesOfThePaddedSeries) {
  const std::string attention = write_attention("a.npy", 2, 32, 32);
  const RunResult result = run_namm("spectrogram --raw --attention " + attention + " --out " + path("r.npy"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // 16 carry zeros + 32 values, n_fft 32, hop 16 -> 2 frames
  EXPECT_EQ(read_npy(path("r.npy")).sizes(), (at::IntArrayRef{2, 32, 17, 2}));
}

TEST_F(Cli, ScoreWithZeroModelKeepsEverything) {
  const std::string attention = write_attention("a.npy", 2, 32, 48);
  NammModel::zeros(NammConfig{}).save(path("zero.safetensors"));
  const RunResult result =
      run_namm("score --attention " + attention + " --model " + path("zero.safetensors") + " --out " + path("s.npy"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const at::Tensor scores = read_npy(path("s.npy"));
  ASSERT_EQ(scores.sizes(), (at::IntArrayRef{2, 48}));
  EXPECT_EQ(at::count_nonzero(scores).item<int64_t>(), 0);
}

// every failing case: exit 1, one line naming the offending file, no output file.
void expect_clean_failure(const RunResult& result, const std::string& named, const std::string& out) {
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find(named), std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
  EXPECT_FALSE(fs::exists(out)) << out;
  EXPECT_FALSE(test_support::has_temporary(out)) << out;
}

TEST_F(Cli, BadAttentionFilesFailCleanly) {
  const std::string out = path("f.npy");
  expect_clean_failure(run_namm("spectrogram --attention " + path("missing.npy") + " --out " + out),
                       path("missing.npy"), out);

  std::ofstream(path("garbage.npy")) << "this is not a numpy file";
  expect_clean_failure(run_namm("spectrogram --attention " + path("garbage.npy") + " --out " + out),
                       path("garbage.npy"), out);

  write_npy(path("flat.npy"), at::rand({4, 16}));
  expect_clean_failure(run_namm("spectrogram --attention " + path("flat.npy") + " --out " + out),
                       path("flat.npy"), out);

  write_npy(path("odd.npy"), at::rand({1, 15, 20}));
  expect_clean_failure(run_namm("spectrogram --attention " + path("odd.npy") + " --out " + out),
                       path("odd.npy"), out);

  at::Tensor with_nan = at::rand({1, 16, 16});
  with_nan[0][3][5] = NAN;
  write_npy(path("nan.npy"), with_nan);
  expect_clean_failure(run_namm("spectrogram --attention " + path("nan.npy") + " --out " + out),
                       path("nan.npy"), out);
}

TEST_F(Cli, BadModelFilesFailCleanly) {
  const std::string attention = write_attention("a.npy", 1, 16, 16);
  const std::string out = path("s.npy");
  expect_clean_failure(
      run_namm("score --attention " + attention + " --model " + path("none.safetensors") + " --out " + out),
      path("none.safetensors"), out);

  NammModel::zeros(NammConfig{}).save(path("good.safetensors"));
  const auto size = fs::file_size(path("good.safetensors"));
  fs::copy_file(path("good.safetensors"), path("cut.safetensors"));
  fs::resize_file(path("cut.safetensors"), size - 100);
  expect_clean_failure(
      run_namm("score --attention " + attention + " --model " + path("cut.safetensors") + " --out " + out),
      path("cut.safetensors"), out);
}

}  // namespace
}  // namespace namm
