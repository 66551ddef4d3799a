#include "core/run_record.h"

#include "core/atomic_file.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace namm {
namespace {

/// Output of a shell command, trimmed; empty when it fails (git may be absent).
std::string command_output(const std::string& command) {
  std::FILE* pipe = popen((command + " 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
  if (pclose(pipe) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::tm parts{};
  gmtime_r(&t, &parts);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return buf;
}

std::string git_commit(const std::string& directory) {
  if (directory.empty()) {
    // a run started outside the work tree (e.g. from a runs/ directory)
    // still names the code it ran: the executable's own build tree
    const std::string here = git_commit(".");
    if (!here.empty()) return here;
    std::error_code error;
    const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
    return error ? "" : git_commit(exe.parent_path().string());
  }
  const std::string git = "git -C " + shell_quote(directory);
  std::string commit = command_output(git + " rev-parse HEAD");
  if (commit.empty()) return "";
  if (!command_output(git + " status --porcelain --untracked-files=no").empty()) commit += "+dirty";
  return commit;
}

uint64_t step_hash(uint64_t salt, uint64_t seed, int64_t step, int64_t slot) {
  return mix64(mix64(mix64(seed ^ salt) + static_cast<uint64_t>(step)) + static_cast<uint64_t>(slot));
}

void keep_log_records_up_to(const std::string& log_path, int64_t step, const std::string& key) {
  if (!std::filesystem::exists(log_path)) return;
  std::istringstream lines(read_file(log_path));
  std::string line, kept;
  while (std::getline(lines, line)) {
    try {
      if (nlohmann::json::parse(line).value(key, int64_t{0}) <= step) kept += line + "\n";
    } catch (const nlohmann::json::exception&) {
      // a half-written last line of a killed run
    }
  }
  write_file_atomically(log_path, kept);
}

}  // namespace namm
