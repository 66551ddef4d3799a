#include "rl/hopper.h"

namespace namm {

Hopper::Hopper(const std::string& xml_path, const MujocoEnvOptions& options,
               const HopperHealth& health)
    : MujocoEnv(xml_path, options), health_(health) {
  check_model_sizes(6, 6, kActionSize);
}

bool Hopper::is_healthy() const {
  const double* qpos = qpos_data();
  const double* qvel = qvel_data();
  const double z = qpos[1];
  const double angle = qpos[2];
  if (!(health_.z_min < z && z < health_.z_max)) return false;
  if (!(health_.angle_min < angle && angle < health_.angle_max)) return false;
  // Gymnasium's state_vector()[2:]: positions from the pitch on, then all
  // velocities, unclipped. Written as !(inside) so that NaN is unhealthy.
  auto inside = [&](double v) { return health_.state_min < v && v < health_.state_max; };
  for (int i = 2; i < nq(); ++i) {
    if (!inside(qpos[i])) return false;
  }
  for (int i = 0; i < nv(); ++i) {
    if (!inside(qvel[i])) return false;
  }
  return true;
}

}  // namespace namm
