// The Cluster entry points of a build without MPI.
#include "core/cluster.h"

#include <stdexcept>

namespace namm {

bool built_with_mpi() { return false; }

std::unique_ptr<Cluster> mpi_cluster() {
  throw std::runtime_error(
      "this namm was built without MPI (install libopenmpi-dev and reconfigure with -DNAMM_WITH_MPI=ON)");
}

}  // namespace namm
