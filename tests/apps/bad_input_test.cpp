// The `namm` program against hostile input, one test per root cause of the
// faults a bad-input sweep found: nothing lost (a trained model is never
// overwritten, two runs never share a folder), nothing runaway (declared
// sizes are checked before allocating, FIFOs never hang a reader), and every
// failure is one line naming the file or option, with a non-zero exit.
#include "core/safetensors.h"
#include "tests/run_command.h"
#include "tests/test_dir.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
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
using test_support::write_text;

// a 1-layer, 32-wide host over the builtin vocabulary: trains in a second
constexpr char kTinyHost[] =
    " --tasks kv_retrieval --min-context 64 --max-context 64 --long-fraction 0 --batch-tokens 128 --threads 1"
    " --no-eval --layers 1 --hidden 32 --heads 2 --kv-heads 2 --intermediate 64";

size_t count_lines(const std::string& text) { return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')); }

class BadInput : public test_support::TempDirTest {
 protected:
  BadInput() : TempDirTest("namm_bad_input_test") {}

  // a trained tiny host in path(name), without its trainer state: what a shipped model folder looks like
  std::string trained_model(const std::string& name) {
    const RunResult train = run_namm("train-lm --out " + path(name) + " --steps 1" + kTinyHost);
    EXPECT_EQ(train.exit_code, 0) << train.output;
    fs::remove(path(name) + "/trainer_state.safetensors");
    return path(name);
  }
};

TEST_F(BadInput, FreshTrainingRefusesAFolderThatHoldsATrainedModel) {
  const std::string model = trained_model("lm");
  const std::string weights = read_text(model + "/model.safetensors");
  const RunResult again = run_namm("train-lm --out " + model + " --steps 1" + kTinyHost);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.output.find("refusing to overwrite"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find(model), std::string::npos) << again.output;
  EXPECT_EQ(count_lines(again.output), 1u) << again.output;
  EXPECT_EQ(read_text(model + "/model.safetensors"), weights);  // untouched
  EXPECT_FALSE(fs::exists(model + "/.namm.lock"));               // the refused run left nothing behind
  // --force replaces it on purpose
  const RunResult forced = run_namm("train-lm --out " + model + " --steps 1 --force" + kTinyHost);
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
}

TEST_F(BadInput, TrainersHaveNoDefaultOutputFolder) {
  for (const char* command : {"train-lm --steps 1", "train-dt --data x.safetensors", "train-video --steps 1"}) {
    const RunResult result = run_namm(command);
    EXPECT_EQ(result.exit_code, 2) << command << ": " << result.output;
    EXPECT_NE(result.output.find("'--out'"), std::string::npos) << result.output;
  }
}

TEST_F(BadInput, SecondRunIntoABusyFolderIsRefusedNamingTheFirst) {
  const std::string log = path("first.log");
  const std::string first = std::string(NAMM_BINARY) + " train-lm --out " + path("lm") + " --steps 100000" +
                            kTinyHost + " --checkpoint-every 100000 --log-every 100000";
  // the first run holds the folder while the second tries it; then the first is stopped
  const RunResult both = run_command(
      "bash -c '(" + first + " > " + log + " 2>&1 & pid=$!; for i in $(seq 600); do grep -q ing " + log +
      " && break; sleep 0.1; done; " + NAMM_BINARY + " train-lm --out " + path("lm") + " --steps 1" + kTinyHost +
      "; echo rc=$?; kill -TERM $pid; wait $pid)'");
  EXPECT_NE(both.output.find("in use by another run (pid"), std::string::npos) << both.output;
  EXPECT_EQ(both.output.find("rc=0"), std::string::npos) << both.output;
  // the first run never saw another start in its folder
  EXPECT_EQ(read_text(log).find("resuming"), std::string::npos) << read_text(log);
}

TEST_F(BadInput, ConfigDeclaringABillionLayersFailsAtOnceNamingTheField) {
  const std::string model = trained_model("lm");
  nlohmann::json config = nlohmann::json::parse(read_text(model + "/config.json"));
  config["num_hidden_layers"] = 1000000000;
  write_text(model + "/config.json", config.dump());
  const auto start = std::chrono::steady_clock::now();
  const RunResult result = run_namm("eval-text --lm " + model + " --policies full --tasks kv_retrieval"
                                    " --examples-per-task 1 --context-tokens 96 --threads 1");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("num_hidden_layers"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("config.json"), std::string::npos) << result.output;
  EXPECT_LT(seconds, 30.0);  // not an allocation race with the OOM killer
  // and as a later training stage's start
  const RunResult stage = run_namm("train-lm --out " + path("next") + " --init-from " + model + " --steps 1" + kTinyHost);
  EXPECT_NE(stage.exit_code, 0);
  EXPECT_NE(stage.output.find("num_hidden_layers"), std::string::npos) << stage.output;
}

TEST_F(BadInput, OversizedOptionsAreRefusedWithTheBytesTheyNeed) {
  const RunResult alone = run_namm("train-lm --out " + path("lm2") + " --steps 1 --batch-tokens 1000000000000"
                                   " --tasks kv_retrieval --min-context 64 --max-context 64 --long-fraction 0"
                                   " --threads 1 --no-eval --layers 1 --hidden 32 --heads 2 --kv-heads 2 --intermediate 64");
  EXPECT_EQ(alone.exit_code, 1) << alone.output;
  EXPECT_NE(alone.output.find("--batch-tokens"), std::string::npos) << alone.output;
  EXPECT_NE(alone.output.find("of memory"), std::string::npos) << alone.output;
  EXPECT_FALSE(fs::exists(path("lm2") + "/model.safetensors"));
}

TEST_F(BadInput, NanWeightsInALanguageModelAreRefusedNamingTheTensor) {
  const std::string model = trained_model("lm");
  SafetensorsFile weights = read_safetensors(model + "/model.safetensors");
  at::Tensor poisoned = weights.tensors.at("model.norm.weight").clone();
  poisoned[0] = std::numeric_limits<float>::quiet_NaN();
  weights.tensors["model.norm.weight"] = poisoned;
  write_safetensors(model + "/model.safetensors", weights.tensors, weights.metadata);
  const RunResult result = run_namm("eval-text --lm " + model + " --policies full --tasks kv_retrieval"
                                    " --examples-per-task 1 --context-tokens 96 --threads 1");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("model.norm.weight"), std::string::npos) << result.output;
}

TEST_F(BadInput, FifoGivenAsInputFailsInsteadOfHanging) {
  const std::string fifo = path("attention.npy");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // timeout 60 would exit 124: the command must end by itself, at once
  const RunResult result = run_command("timeout 60 " + std::string(NAMM_BINARY) + " spectrogram --attention " + fifo +
                                       " --out " + path("f.npy"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("FIFO"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find(fifo), std::string::npos) << result.output;
  const RunResult clip = run_command("timeout 60 " + std::string(NAMM_BINARY) + " frames --clip " + fifo +
                                     " --frames 2 --out " + path("frames"));
  EXPECT_EQ(clip.exit_code, 1) << clip.output;
  EXPECT_FALSE(fs::exists(path("frames")));
}

TEST_F(BadInput, OutputThatIsADeviceIsRefusedAndASymlinkIsWrittenThrough) {
  const RunResult device = run_namm("spectrogram --attention " + path("missing.npy") + " --out /dev/full");
  EXPECT_EQ(device.exit_code, 2) << device.output;  // refused before the input is even read
  EXPECT_NE(device.output.find("--out /dev/full"), std::string::npos) << device.output;
  EXPECT_NE(device.output.find("not a regular file"), std::string::npos) << device.output;
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));  // still the device

  // a symlink stays a symlink and its target gets the bytes
  const std::string target = path("real.md"), link = path("link.md");
  write_text(target, "old\n");
  fs::create_symlink(target, link);
  const std::string model = trained_model("lm");
  const RunResult eval = run_namm("eval-text --lm " + model + " --policies full --tasks kv_retrieval"
                                  " --examples-per-task 1 --context-tokens 96 --threads 1 --out-md " + link);
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_NE(read_text(target), "old\n");
  EXPECT_NE(read_text(target).find("kv_retrieval"), std::string::npos);
}

TEST_F(BadInput, OutputsAreCheckedBeforeTheWork) {
  const std::string model = trained_model("lm");
  const auto start = std::chrono::steady_clock::now();
  // a path that names a folder, so the markdown could never be written there
  const RunResult result =
      run_namm("eval-text --lm " + model + " --examples-per-task 50 --threads 1 --out-md " + path("x.md") + "/");
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("--out-md"), std::string::npos) << result.output;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 30.0);
}

TEST_F(BadInput, StrayArgumentsAndSwallowedOptionNamesAreUsageErrors) {
  const RunResult stray = run_namm("train-lm --out " + path("lm") + " --steps 2 100");
  EXPECT_EQ(stray.exit_code, 2) << stray.output;
  EXPECT_NE(stray.output.find("'100'"), std::string::npos) << stray.output;
  const RunResult swallowed = run_namm("train-lm --out --steps 4");
  EXPECT_EQ(swallowed.exit_code, 2) << swallowed.output;
  EXPECT_NE(swallowed.output.find("--out needs a value"), std::string::npos) << swallowed.output;
  EXPECT_FALSE(fs::exists("--steps"));
}

TEST_F(BadInput, NonFiniteAndNegativeOptionValuesAreRefused) {
  const RunResult nan_shift = run_namm("gen-data --env hopper --out " + path("data") + " --reward-shift nan");
  EXPECT_EQ(nan_shift.exit_code, 2) << nan_shift.output;
  EXPECT_NE(nan_shift.output.find("--reward-shift"), std::string::npos) << nan_shift.output;
  EXPECT_FALSE(fs::exists(path("data")));
  const RunResult delay = run_namm("rollout --env hopper --delay -5 --episodes 1");
  EXPECT_EQ(delay.exit_code, 2) << delay.output;
  EXPECT_NE(delay.output.find("--delay"), std::string::npos) << delay.output;
  const RunResult stop = run_namm("evolve --lm x --out " + path("n.safetensors") + " --stage kv_retrieval --stop-after -1");
  EXPECT_EQ(stop.exit_code, 2) << stop.output;
  EXPECT_NE(stop.output.find("--stop-after"), std::string::npos) << stop.output;
}

TEST_F(BadInput, PolicyKnobsNoPolicyAcceptsAreRefusedNamingTheOption) {
  for (const char* args : {"rollout --env hopper --memory snapkv --pool-kernel 4 --episodes 1",
                           "rollout --env hopper --memory adakv --adakv-floor 1.5 --episodes 1",
                           "video-qa --clip x.mp4 --question \"what ?\" --memory pyramidkv --pyramid-beta 0.5"}) {
    const RunResult r = run_namm(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    const std::string option = std::string(args).find("pool-kernel") != std::string::npos ? "--pool-kernel"
                               : std::string(args).find("adakv-floor") != std::string::npos ? "--adakv-floor"
                                                                                          : "--pyramid-beta";
    EXPECT_NE(r.output.find(option), std::string::npos) << r.output;
  }
}

TEST_F(BadInput, MessagesNeverCarryTerminalEscapes) {
  // an npy whose header holds an escape sequence
  std::string header = "{'descr': '\x1b[31m<f4', 'fortran_order': False, 'shape': (1,), }";
  header.resize(118, ' ');
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header + std::string(4, '\0');
  write_text(path("evil.npy"), bytes);
  const RunResult result = run_namm("spectrogram --attention " + path("evil.npy") + " --out " + path("f.npy"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_EQ(result.output.find('\x1b'), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("\\x1b"), std::string::npos) << result.output;
}

TEST_F(BadInput, MakeScenesOverwriteKeepsAFolderThatHoldsOtherFiles) {
  const std::string out = path("scenes");
  const RunResult made = run_namm("make-scenes --out " + out + " --split test --count 1 --kinds flash_count");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  write_text(out + "/notes.txt", "mine\n");
  const RunResult again = run_namm("make-scenes --out " + out + " --split test --count 1 --kinds flash_count --overwrite");
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.output.find("notes.txt"), std::string::npos) << again.output;
  EXPECT_EQ(read_text(out + "/notes.txt"), "mine\n");
}

}  // namespace
}  // namespace namm

namespace namm {
namespace {

TEST(RolloutFeeding, CardNumbersReplaceTheSidecarAndAnOutgrownTrainingWindowIsWarnedAbout) {
  const std::string model = std::string(NAMM_MODELS_DIR) + "/dt-hopper";
  const RunResult warned = run_namm("rollout --env hopper --model " + model + " --episodes 1 --max-steps 10 --train-context 5");
  EXPECT_EQ(warned.exit_code, 0) << warned.output;
  EXPECT_NE(warned.output.find("warning: " + model + " was trained on 5-step windows (15 tokens); this episode-long cache can reach 30 tokens"),
            std::string::npos) << warned.output;
  const RunResult windowed = run_namm("rollout --env hopper --model " + model + " --episodes 1 --max-steps 10 --train-context 5 --window 5");
  EXPECT_EQ(windowed.exit_code, 0) << windowed.output;
  EXPECT_EQ(windowed.output.find("warning:"), std::string::npos) << windowed.output;

  const RunResult short_mean = run_namm("rollout --env hopper --model " + model + " --episodes 1 --max-steps 5 --state-mean 1,2");
  EXPECT_EQ(short_mean.exit_code, 2) << short_mean.output;
  EXPECT_NE(short_mean.output.find("--state-mean / --state-std: state_mean has 2 values, the model's state_dim is 11"),
            std::string::npos) << short_mean.output;
  const RunResult bad_std = run_namm("rollout --env hopper --model " + model + " --episodes 1 --state-std 1,0,1");
  EXPECT_EQ(bad_std.exit_code, 2) << bad_std.output;
  EXPECT_NE(bad_std.output.find("--state-std"), std::string::npos) << bad_std.output;
}

}  // namespace
}  // namespace namm
