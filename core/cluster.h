// The processes that share one job. Evolution is embarrassingly parallel over
// the population, so spreading it over machines needs only two collective
// operations: the coordinator (rank 0) broadcasts a work order and gathers
// every rank's results. With MPI (Open MPI, started by mpirun or srun) the
// ranks are MPI_COMM_WORLD; without it the job is this one process.
//
// MPI is an optional build feature (CMake finds it or not): a build without
// it still has single_process_cluster() and says so when asked for MPI.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace namm {

/// A fixed group of cooperating processes, numbered 0 .. size() - 1.
class Cluster {
 public:
  virtual ~Cluster() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "single process" or "MPI, N ranks".
  virtual std::string description() const = 0;
  /// root's bytes replace `bytes` on every other rank (collective: every rank calls it).
  virtual void broadcast(std::string& bytes, int root = 0) = 0;
  /// Every rank's bytes, in rank order, on root (others get an empty vector; collective).
  virtual std::vector<std::string> gather(const std::string& bytes, int root = 0) = 0;
  /// Ends every rank of the job at once after printing message (a failure on
  /// one rank must not leave the others waiting forever). Never returns.
  [[noreturn]] virtual void abort_job(const std::string& message, int exit_code) = 0;
};

/// This process alone: rank 0 of 1.
std::unique_ptr<Cluster> single_process_cluster();

/// True when this build has MPI support.
bool built_with_mpi();

/// True when the environment says a launcher (mpirun, srun) started this
/// process as one of several ranks (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK).
bool launched_by_mpi();

/// MPI_COMM_WORLD (initialises MPI once; finalised when the object goes).
/// Throws std::runtime_error if the build has no MPI support.
std::unique_ptr<Cluster> mpi_cluster();

/// Contiguous share of `count` items for `rank` of `size`: [first, last).
/// Items differ by at most one between ranks; rank 0 gets the smaller shares.
std::pair<long long, long long> share_of(long long count, int rank, int size);

}  // namespace namm
