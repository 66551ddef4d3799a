#include "core/cluster.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <stdexcept>

namespace namm {
namespace {

class SingleProcess final : public Cluster {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string description() const override { return "single process"; }
  void broadcast(std::string&, int) override {}
  std::vector<std::string> gather(const std::string& bytes, int) override { return {bytes}; }
  [[noreturn]] void abort_job(const std::string& message, int exit_code) override {
    std::cerr << message << std::endl;
    std::exit(exit_code);
  }
};

}  // namespace

std::unique_ptr<Cluster> single_process_cluster() { return std::make_unique<SingleProcess>(); }

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

std::pair<long long, long long> share_of(long long count, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size || count < 0) {
    throw std::invalid_argument("share_of: count " + std::to_string(count) + ", rank " + std::to_string(rank) +
                                ", size " + std::to_string(size));
  }
  // the remainder goes to the last ranks: rank 0 also coordinates
  const long long base = count / size, extra = count % size;
  const auto first = [&](int r) { return r * base + std::max<long long>(0, r - (size - extra)); };
  return {first(rank), first(rank + 1)};
}

}  // namespace namm
