// run_lock: see run_lock.h
#include "core/run_lock.h"

#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace namm {
namespace fs = std::filesystem;
namespace {

// This process's command line, spaces between arguments, for the holder's record.
std::string own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : raw) {
    if (c == '\0') c = ' ';
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  while (!raw.empty() && raw.back() == ' ') raw.pop_back();
  return raw.substr(0, 200);
}

// The holder's record ("pid N: command"), as far as it can be read.
std::string holder_of(int fd) {
  char buffer[256];
  const ssize_t n = ::pread(fd, buffer, sizeof(buffer) - 1, 0);
  if (n <= 0) return "pid unknown";
  std::string text(buffer, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return text.empty() ? "pid unknown" : text;
}

bool is_lock_or_temporary(const std::string& name) {
  return name == ".namm.lock" || (name.size() > 5 && name.compare(name.size() - 5, 5, ".lock") == 0 && name[0] == '.') ||
         name.find(".tmp-") != std::string::npos;
}

}  // namespace

namespace {

// The locks this process holds, by absolute lock-file path: flock excludes
// other processes; within one process a second holder of the same path
// shares the lock (a library user may run two trainers on one folder in turn
// while the first still exists), and the last one out releases it.
struct HeldLock {
  int fd = -1;
  int holders = 0;
  pid_t owner = 0;  // a forked child inherits the table but not the right to share
};
std::mutex& held_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, HeldLock>& held_locks() {
  static std::map<std::string, HeldLock> locks;
  return locks;
}

// Takes the kernel lock on lock_path; returns its descriptor.
int take_lock(const std::string& lock_path, const std::string& what) {
  // retry when the file we locked was removed by a releasing holder meanwhile
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error(what + ": cannot create the lock file " + lock_path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string holder = holder_of(fd);
      ::close(fd);
      if (err == EWOULDBLOCK)
        throw std::runtime_error(what + ": in use by another run (" + holder +
                                 "); wait for it to end or choose another path");
      throw std::runtime_error(what + ": cannot lock " + lock_path + ": " + std::strerror(err));
    }
    struct stat held {}, at_path {};
    if (::fstat(fd, &held) == 0 && ::stat(lock_path.c_str(), &at_path) == 0 && held.st_ino == at_path.st_ino &&
        held.st_dev == at_path.st_dev) {
      const std::string record = "pid " + std::to_string(::getpid()) + ": " + own_command_line() + "\n";
      if (::ftruncate(fd, 0) == 0) {
        [[maybe_unused]] const ssize_t ignored = ::pwrite(fd, record.data(), record.size(), 0);
      }
      return fd;
    }
    ::close(fd);  // the file was unlinked after we opened it: take the new one
  }
  throw std::runtime_error(what + ": cannot take the lock " + lock_path + " (it keeps being replaced)");
}

}  // namespace

FileLock::FileLock(const std::string& lock_path, const std::string& what)
    : path_(fs::absolute(lock_path).lexically_normal().string()) {
  const std::lock_guard<std::mutex> guard(held_mutex());
  HeldLock& held = held_locks()[path_];
  if (held.holders == 0 || held.owner != ::getpid()) {
    try {
      held.fd = take_lock(path_, what);
      held.owner = ::getpid();
      held.holders = 0;
    } catch (...) {
      held_locks().erase(path_);
      throw;
    }
  }
  ++held.holders;
}

FileLock::~FileLock() {
  const std::lock_guard<std::mutex> guard(held_mutex());
  const auto it = held_locks().find(path_);
  if (it == held_locks().end() || --it->second.holders > 0) return;
  // unlink while holding the lock: a waiter that opened this file re-checks the inode
  ::unlink(path_.c_str());
  ::close(it->second.fd);
  held_locks().erase(it);
}

std::string run_folder_lock_path(const std::string& dir) { return (fs::path(dir) / ".namm.lock").string(); }

std::string output_lock_path(const std::string& path) {
  const fs::path target(resolve_output_path(path));
  return (target.parent_path() / ("." + target.filename().string() + ".lock")).string();
}

std::unique_ptr<FileLock> lock_run_folder(const std::string& dir, const std::string& option) {
  const std::string what = option + " " + dir;
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) throw std::runtime_error(what + ": cannot create the directory: " + error.message());
  if (!fs::is_directory(dir)) throw std::runtime_error(what + ": not a directory");
  return std::make_unique<FileLock>(run_folder_lock_path(dir), what);
}

std::unique_ptr<FileLock> lock_output_file(const std::string& path, const std::string& option) {
  try {
    check_output_file(path);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(option + " " + e.what());
  }
  const fs::path parent = fs::path(resolve_output_path(path)).parent_path();
  if (!parent.empty()) {
    std::error_code error;
    fs::create_directories(parent, error);
    if (error) throw std::runtime_error(option + " " + path + ": cannot create " + parent.string() + ": " + error.message());
  }
  return std::make_unique<FileLock>(output_lock_path(path), option + " " + path);
}

void refuse_to_overwrite(const std::string& dir, const std::string& resume_file,
                         const std::set<std::string>& may_exist, bool force, const std::string& option) {
  std::error_code error;
  if (force || !fs::is_directory(dir, error)) return;
  if (fs::exists(fs::path(dir) / resume_file, error)) return;
  std::vector<std::string> held;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (may_exist.count(name) || is_lock_or_temporary(name)) continue;
    held.push_back(name);
  }
  if (held.empty()) return;
  std::sort(held.begin(), held.end());
  std::string names;
  for (size_t i = 0; i < held.size() && i < 4; ++i) names += (i ? ", " : "") + held[i];
  if (held.size() > 4) names += " and " + std::to_string(held.size() - 4) + " more";
  throw std::runtime_error(option + " " + dir + ": holds " + names + " but no " + resume_file +
                           " to resume from; refusing to overwrite it (choose another " + option +
                           ", or pass --force to replace it)");
}

}  // namespace namm

namespace namm {

std::unique_ptr<FileLock> claim_training_folder(const std::string& out_dir, const std::string& init_from, bool force) {
  std::error_code error;
  const bool continues_init_from =
      !init_from.empty() && fs::exists(init_from, error) && fs::exists(out_dir, error) &&
      fs::equivalent(init_from, out_dir, error);
  // lock first, so a second run is told the folder is in use; a refusal
  // releases the lock and removes its file, leaving the folder as it was
  std::unique_ptr<FileLock> lock = lock_run_folder(out_dir);
  refuse_to_overwrite(out_dir, kTrainerStateFile, {"options.json", "train_log.jsonl"}, force || continues_init_from);
  return lock;
}

}  // namespace namm
