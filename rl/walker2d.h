#pragma once
// Walker2d-v4: a planar biped (scenes/mujoco/walker2d.xml) with Gymnasium
// v4's health rule. Observation 17 = qpos[1:9] + clip(qvel[0:9]); action 6
// in [-1, 1] (right thigh, leg, foot, then left; gear 100).

#include <string>

#include "rl/mujoco_env.h"

namespace namm {

/// Gymnasium v4 Walker2d health bounds; all comparisons are strict.
struct Walker2dHealth {
  double z_min = 0.8;  // torso height qpos[1]
  double z_max = 2.0;
  double angle_min = -1.0;  // torso pitch qpos[2], radians
  double angle_max = 1.0;
};

/// The Walker2d environment; see MujocoEnv for the episode contract.
class Walker2d : public MujocoEnv {
 public:
  static constexpr int kObservationSize = 17;
  static constexpr int kActionSize = 6;

  /// Loads the MJCF at xml_path; throws std::runtime_error if the file does
  /// not load or does not have Walker2d's sizes (nq 9, nv 9, nu 6).
  explicit Walker2d(const std::string& xml_path, const MujocoEnvOptions& options = MujocoEnvOptions(),
                    const Walker2dHealth& health = Walker2dHealth());

  std::string name() const override { return "walker2d"; }
  /// z_min < z < z_max and angle_min < angle < angle_max.
  bool is_healthy() const override;
  const Walker2dHealth& health() const { return health_; }

 private:
  Walker2dHealth health_;
};

}  // namespace namm
