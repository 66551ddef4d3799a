// Running a command line from a test: the `namm` program seen from outside
// (exit codes, one-line errors), mpirun, shell scripts that send signals.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace namm::test_support {

struct RunResult {
  int exit_code = -1;  ///< -1 when the command could not start or did not exit normally.
  std::string output;  ///< stdout and stderr together.
};

/// Runs command through the shell and collects its stdout and stderr.
inline RunResult run_command(const std::string& command) {
  RunResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

#ifdef NAMM_BINARY
/// Runs the namm program built with the tests: `namm ARGS`.
inline RunResult run_namm(const std::string& args) { return run_command(std::string(NAMM_BINARY) + " " + args); }
#endif

}  // namespace namm::test_support
