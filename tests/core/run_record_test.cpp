// Pins core/run_record.h's git_commit: a run started outside the work tree
// (a runs/ directory, /tmp) still records the commit of the code it ran.
#include "core/run_record.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;

TEST(GitCommit, RunStartedOutsideTheWorkTreeNamesTheExecutablesCommit) {
  const fs::path executable = fs::read_symlink("/proc/self/exe");
  const std::string of_build_tree = git_commit(executable.parent_path().string());
  if (of_build_tree.empty()) GTEST_SKIP() << "this test binary was not built inside a git work tree";
  const fs::path start = fs::current_path();
  fs::current_path(fs::temp_directory_path());
  const std::string from_outside = git_commit();
  fs::current_path(start);
  ASSERT_GE(from_outside.size(), 40u) << "empty outside the work tree";
  EXPECT_EQ(from_outside.substr(0, 40), of_build_tree.substr(0, 40));
}

TEST(GitCommit, DirectoryOutsideAnyRepositoryGivesNothing) {
  const fs::path lonely = fs::temp_directory_path() / "namm_run_record_test_no_repo";
  fs::create_directories(lonely);
  EXPECT_EQ(git_commit(lonely.string()), "");
  fs::remove_all(lonely);
}

}  // namespace
}  // namespace namm
