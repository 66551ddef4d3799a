// Who may write where (core/run_lock.h) and how files are written and read
// (core/atomic_file.h): one holder per lock, a trained model never replaced
// by a fresh run, symlinks written through, devices and FIFOs refused.
#include "core/atomic_file.h"
#include "core/memory_budget.h"
#include "core/printable.h"
#include "core/run_lock.h"
#include "tests/test_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <memory>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;

using test_support::message_of;

class RunLock : public test_support::TempDirTest {
 protected:
  RunLock() : TempDirTest("namm_run_lock_test") {}
};

// What a lock attempt from another process says: the child's message, written to a pipe.
std::string message_in_another_process(const std::string& lock_path) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return "no pipe";
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(pipe_fds[0]);
    const std::string message = message_of([&] { FileLock lock(lock_path, "--out a"); });
    [[maybe_unused]] const ssize_t n = ::write(pipe_fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string out;
  char buffer[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) out.append(buffer, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  return out;
}

TEST_F(RunLock, AnotherProcessIsRefusedUntilTheHolderReleases) {
  auto first = std::make_unique<FileLock>(path("a.lock"), "--out a");
  const std::string refused = message_in_another_process(path("a.lock"));
  EXPECT_NE(refused.find("--out a: in use by another run (pid " + std::to_string(::getpid())), std::string::npos)
      << refused;
  // within this process a second holder shares it, and the last one out releases it
  auto shared = std::make_unique<FileLock>(path("a.lock"), "--out a");
  first.reset();
  EXPECT_NE(message_in_another_process(path("a.lock")).find("in use"), std::string::npos);
  shared.reset();
  EXPECT_FALSE(fs::exists(path("a.lock")));  // released and removed
  EXPECT_EQ(message_in_another_process(path("a.lock")), "no error");
}

TEST_F(RunLock, RunFolderLockIsInsideTheFolderAndGoesWithTheRun) {
  {
    const auto lock = lock_run_folder(path("run"));
    EXPECT_TRUE(fs::exists(path("run/.namm.lock")));
    EXPECT_NE(message_in_another_process(run_folder_lock_path(path("run"))).find("in use"), std::string::npos);
  }
  EXPECT_TRUE(fs::is_empty(path("run")));
}

TEST_F(RunLock, FreshRunRefusesAFolderWithAModelButNoTrainerState) {
  fs::create_directories(path("model"));
  std::ofstream(path("model/config.json")) << "{}";
  std::ofstream(path("model/model.safetensors")) << "x";
  const std::string refused = message_of([&] { claim_training_folder(path("model"), "", false); });
  EXPECT_NE(refused.find("--out " + path("model") + ": holds config.json, model.safetensors but no "
                         "trainer_state.safetensors"), std::string::npos) << refused;
  EXPECT_FALSE(fs::exists(path("model/.namm.lock")));
  // the ways through: --force, the folder as its own --init-from, or a trainer state to resume
  EXPECT_EQ(message_of([&] { claim_training_folder(path("model"), "", true); }), "no error");
  EXPECT_EQ(message_of([&] { claim_training_folder(path("model"), path("model"), false); }), "no error");
  std::ofstream(path("model/trainer_state.safetensors")) << "x";
  EXPECT_EQ(message_of([&] { claim_training_folder(path("model"), "", false); }), "no error");
  // what a run writes before its first checkpoint does not count as a model
  fs::create_directories(path("young"));
  std::ofstream(path("young/options.json")) << "{}";
  std::ofstream(path("young/train_log.jsonl")) << "";
  EXPECT_EQ(message_of([&] { claim_training_folder(path("young"), "", false); }), "no error");
}

TEST_F(RunLock, AtomicWriteGoesThroughASymlinkAndLeavesNoTemporary) {
  std::ofstream(path("target.txt")) << "old";
  fs::create_symlink("target.txt", path("link.txt"));  // relative, as users make them
  write_file_atomically(path("link.txt"), "new");
  EXPECT_TRUE(fs::is_symlink(path("link.txt")));
  EXPECT_EQ(read_file(path("target.txt")), "new");
  for (const auto& entry : fs::directory_iterator(dir_))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
}

TEST_F(RunLock, DevicesFifosAndDirectoriesAreRefusedAsOutputsAndInputs) {
  EXPECT_NE(message_of([] { write_file_atomically("/dev/null", "x"); }).find("not a regular file"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_NE(message_of([] { check_output_file("/dev/full"); }).find("character device"), std::string::npos);
  EXPECT_NE(message_of([&] { check_output_file(dir_.string()); }).find("is a directory"), std::string::npos);
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  EXPECT_NE(message_of([&] { read_file(path("fifo")); }).find(path("fifo") + ": is a FIFO"), std::string::npos);
  EXPECT_NE(message_of([] { read_file("/dev/zero"); }).find("character device"), std::string::npos);
  EXPECT_EQ(message_of([&] { check_output_file(path("new/deeper/file.md")); }), "no error");  // parents are made
}

TEST(MemoryBudget, RefusesWhatCannotFitNamingTheFigure) {
  ::setenv("NAMM_MEMORY_LIMIT", "1000000", 1);
  const std::string refused = message_of([] { require_memory(5e6, "--thing 5"); });
  ::unsetenv("NAMM_MEMORY_LIMIT");
  EXPECT_EQ(refused, "--thing 5 needs about 5 MB of memory, 1 MB is available");
  EXPECT_NE(message_of([] { require_memory(std::nan(""), "x"); }), "no error");
  EXPECT_EQ(message_of([] { require_memory(1e3, "x"); }), "no error");
}

TEST(Printable, EscapesControlBytesAndBrokenUtf8ButKeepsText) {
  EXPECT_EQ(printable("a\x1b[31mb"), "a\\x1b[31mb");
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");      // UTF-8 stays
  EXPECT_EQ(printable("x\xc2\x9by"), "x\\xc2\\x9by");      // C1 CSI is escaped
  EXPECT_EQ(printable("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(printable(std::string(300, 'a'), 10), std::string(10, 'a') + "...");
}

}  // namespace
}  // namespace namm
