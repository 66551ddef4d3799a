// Atomic writes: a unique temporary in the target's directory (so rename
// stays within one filesystem and two writers never share a temporary),
// fsync before rename (so a crash leaves the old or the new file, never a
// torn one), then fsync of the directory (so the rename itself survives a
// crash). Reads open without blocking and take regular files only.
#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

namespace namm {
namespace {

std::string describe_errno(int err) {
  if (err == ENOENT) return "no such file";
  if (err == EISDIR) return "is a directory";
  return std::strerror(err);
}

// "<path>: <what>: <strerror>" for writes.
[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  throw std::runtime_error(path + ": " + what + ": " + std::strerror(err));
}

// "<path>: no such file" and the like for reads.
[[noreturn]] void fail_read(const std::string& path, int err) {
  throw std::runtime_error(path + ": " + describe_errno(err));
}

// What a file that is not regular is, for messages.
std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Owns a file descriptor; closes it on every path out.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { if (fd_ >= 0) ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now and reports close's error (a delayed write error shows here).
  int close() { int r = ::close(fd_); fd_ = -1; return r; }
 private:
  int fd_;
};

// write(2) until done; returns 0 or the errno.
int write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

int open_input_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO with no writer would otherwise wait for ever
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail_read(path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail_read(path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    if (S_ISDIR(st.st_mode)) fail_read(path, EISDIR);
    throw std::runtime_error(path + ": is " + kind_of(st.st_mode) + ", not a regular file");
  }
  // regular files never block; clear the flag so reads behave as usual
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

void check_input_file(const std::string& path) { Fd fd(open_input_file(path)); }

std::string resolve_output_path(const std::string& path) {
  std::string current = path;
  for (int depth = 0; depth < 40; ++depth) {
    struct stat st {};
    if (::lstat(current.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return current;
    char target[PATH_MAX];
    const ssize_t n = ::readlink(current.c_str(), target, sizeof(target) - 1);
    if (n < 0) fail(path, "cannot read the symlink", errno);
    target[n] = '\0';
    const std::string next(target);
    current = (next.empty() || next[0] == '/') ? next : parent_dir(current) + "/" + next;
  }
  throw std::runtime_error(path + ": too many levels of symbolic links");
}

void check_output_file(const std::string& path) {
  if (path.empty()) throw std::runtime_error("output path is empty");
  if (path.back() == '/') throw std::runtime_error(path + ": names a directory, not a file");
  const std::string target = resolve_output_path(path);
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw std::runtime_error(path + ": is a directory");
    if (!S_ISREG(st.st_mode))
      throw std::runtime_error(path + ": is " + kind_of(st.st_mode) + ", not a regular file; refusing to replace it");
  }
  // the nearest existing ancestor must be a writable directory
  std::string dir = parent_dir(target);
  for (;;) {
    if (::stat(dir.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) throw std::runtime_error(path + ": " + dir + " is not a directory");
      if (::access(dir.c_str(), W_OK) != 0) fail(path, "cannot write in " + dir, errno);
      return;
    }
    if (dir == "/" || dir == ".") return;
    dir = parent_dir(dir);
  }
}

std::string unique_temp_path(const std::string& path) {
  static std::atomic<unsigned long> counter{0};
  return parent_dir(path) + "/." + base_name(path) + ".tmp-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++);
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  write_file_atomically(path, std::vector<std::string_view>{bytes});
}

void write_file_atomically(const std::string& path,
                           const std::vector<std::string_view>& pieces) {
  const std::string target = resolve_output_path(path);
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) throw std::runtime_error(path + ": is a directory");
    throw std::runtime_error(path + ": is " + kind_of(st.st_mode) + ", not a regular file; refusing to replace it");
  }
  const std::string tmp = unique_temp_path(target);
  int err = 0;
  std::string step;
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) fail(path, "cannot create " + tmp, errno);
    for (std::string_view piece : pieces) {
      err = write_all(fd.get(), piece.data(), piece.size());
      if (err != 0) { step = "write"; break; }
    }
    if (err == 0 && ::fsync(fd.get()) != 0) { err = errno; step = "fsync"; }
    if (err == 0 && fd.close() != 0) { err = errno; step = "close"; }
  }
  if (err == 0 && std::rename(tmp.c_str(), target.c_str()) != 0) {
    err = errno;
    step = "rename";
  }
  if (err != 0) {
    ::unlink(tmp.c_str());
    fail(path, step, err);
  }
  // best effort: some filesystems refuse fsync on directories.
  Fd dir(::open(parent_dir(target).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());
}

std::string read_file(const std::string& path) {
  Fd fd(open_input_file(path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_read(path, errno);
  std::string out;
  // one allocation, read in place: this also serves multi-GB files.
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd.get(), &out[done], out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_read(path, errno);
    if (n == 0) break;  // shrank while reading
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  // then read until EOF rather than trusting st_size (a file that grows).
  char chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_read(path, errno);
    }
    if (n == 0) break;
    out.append(chunk, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace namm
