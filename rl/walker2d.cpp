#include "rl/walker2d.h"

namespace namm {

Walker2d::Walker2d(const std::string& xml_path, const MujocoEnvOptions& options,
                   const Walker2dHealth& health)
    : MujocoEnv(xml_path, options), health_(health) {
  check_model_sizes(9, 9, kActionSize);
}

bool Walker2d::is_healthy() const {
  const double* qpos = qpos_data();
  const double z = qpos[1];
  const double angle = qpos[2];
  // Written as conjunctions of strict comparisons so that NaN is unhealthy.
  return health_.z_min < z && z < health_.z_max && health_.angle_min < angle &&
         angle < health_.angle_max;
}

}  // namespace namm
