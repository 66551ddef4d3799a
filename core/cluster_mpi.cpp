// MPI_COMM_WORLD as a Cluster. Compiled only when CMake found MPI.
#include "core/cluster.h"

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <stdexcept>

namespace namm {
namespace {

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw std::runtime_error(std::string("MPI ") + what + " failed: " + std::string(text, static_cast<size_t>(length)));
}

class MpiWorld final : public Cluster {
 public:
  MpiWorld() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
      check(MPI_Init(nullptr, nullptr), "MPI_Init");
      owns_ = true;
    }
    // errors come back as codes (turned into exceptions) instead of aborting inside MPI
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiWorld() override {
    if (owns_) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string description() const override { return "MPI, " + std::to_string(size_) + " ranks"; }

  void broadcast(std::string& bytes, int root) override {
    unsigned long long length = bytes.size();
    check(MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Bcast");
    bytes.resize(static_cast<size_t>(length));
    send_in_pieces(bytes.data(), length, [&](char* data, int count) {
      check(MPI_Bcast(data, count, MPI_CHAR, root, MPI_COMM_WORLD), "MPI_Bcast");
    });
  }

  std::vector<std::string> gather(const std::string& bytes, int root) override {
    // lengths first, then each rank's bytes to root (point to point: sizes differ)
    unsigned long long length = bytes.size();
    std::vector<unsigned long long> lengths(static_cast<size_t>(size_));
    check(MPI_Gather(&length, 1, MPI_UNSIGNED_LONG_LONG, lengths.data(), 1, MPI_UNSIGNED_LONG_LONG, root,
                     MPI_COMM_WORLD),
          "MPI_Gather");
    std::vector<std::string> out;
    if (rank_ != root) {
      std::string copy = bytes;
      send_in_pieces(copy.data(), length, [&](char* data, int count) {
        check(MPI_Send(data, count, MPI_CHAR, root, kTag, MPI_COMM_WORLD), "MPI_Send");
      });
      return out;
    }
    out.resize(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      if (r == root) {
        out[static_cast<size_t>(r)] = bytes;
        continue;
      }
      std::string& piece = out[static_cast<size_t>(r)];
      piece.resize(static_cast<size_t>(lengths[static_cast<size_t>(r)]));
      send_in_pieces(piece.data(), piece.size(), [&](char* data, int count) {
        check(MPI_Recv(data, count, MPI_CHAR, r, kTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
      });
    }
    return out;
  }

  [[noreturn]] void abort_job(const std::string& message, int exit_code) override {
    std::cerr << message << std::endl;
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::abort();  // MPI_Abort does not return; keep the promise if it ever does
  }

 private:
  static constexpr int kTag = 7;
  // MPI counts are int: move large buffers in pieces of at most 1 GiB
  template <class Op>
  static void send_in_pieces(char* data, unsigned long long length, Op op) {
    constexpr unsigned long long kPiece = 1ull << 30;
    for (unsigned long long offset = 0; offset < length; offset += kPiece) {
      op(data + offset, static_cast<int>(std::min(kPiece, length - offset)));
    }
  }

  int rank_ = 0, size_ = 1;
  bool owns_ = false;
};

}  // namespace

bool built_with_mpi() { return true; }

std::unique_ptr<Cluster> mpi_cluster() { return std::make_unique<MpiWorld>(); }

}  // namespace namm
