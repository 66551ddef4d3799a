// Atomic writes: temp file in the same directory (so rename stays within one
// filesystem), fsync before rename (so a crash leaves the old or the new
// file, never a torn one), then fsync of the directory (so the rename itself
// survives a crash).
#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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

}  // namespace

void write_file_atomically(const std::string& path, std::string_view bytes) {
  write_file_atomically(path, std::vector<std::string_view>{bytes});
}

void write_file_atomically(const std::string& path,
                           const std::vector<std::string_view>& pieces) {
  const std::string tmp = path + ".tmp";
  int err = 0;
  std::string step;
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) fail(path, "cannot create " + tmp, errno);
    for (std::string_view piece : pieces) {
      err = write_all(fd.get(), piece.data(), piece.size());
      if (err != 0) { step = "write"; break; }
    }
    if (err == 0 && ::fsync(fd.get()) != 0) { err = errno; step = "fsync"; }
    if (err == 0 && fd.close() != 0) { err = errno; step = "close"; }
  }
  if (err == 0 && std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    step = "rename";
  }
  if (err != 0) {
    ::unlink(tmp.c_str());
    fail(path, step, err);
  }
  // best effort: some filesystems refuse fsync on directories.
  Fd dir(::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());
}

std::string read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail_read(path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_read(path, errno);
  if (S_ISDIR(st.st_mode)) fail_read(path, EISDIR);
  std::string out;
  if (S_ISREG(st.st_mode)) {
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
  }
  // then read until EOF rather than trusting st_size (pipes, files that grow).
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
