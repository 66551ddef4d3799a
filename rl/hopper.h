#pragma once
// Hopper-v4: a planar one-legged hopper (scenes/mujoco/hopper.xml) with
// Gymnasium v4's health rule. Observation 11 = qpos[1:6] + clip(qvel[0:6]);
// action 3 in [-1, 1] (thigh, leg, foot torques, gear 200).

#include <limits>
#include <string>

#include "rl/mujoco_env.h"

namespace namm {

/// Gymnasium v4 Hopper health bounds; all comparisons are strict.
struct HopperHealth {
  double z_min = 0.7;  // torso height qpos[1]
  double z_max = std::numeric_limits<double>::infinity();
  double angle_min = -0.2;  // torso pitch qpos[2], radians
  double angle_max = 0.2;
  double state_min = -100.0;  // every element of [qpos[2:], qvel] (unclipped)
  double state_max = 100.0;
};

/// The Hopper environment; see MujocoEnv for the episode contract.
class Hopper : public MujocoEnv {
 public:
  static constexpr int kObservationSize = 11;
  static constexpr int kActionSize = 3;

  /// Loads the MJCF at xml_path; throws std::runtime_error if the file does
  /// not load or does not have Hopper's sizes (nq 6, nv 6, nu 3).
  explicit Hopper(const std::string& xml_path, const MujocoEnvOptions& options = MujocoEnvOptions(),
                  const HopperHealth& health = HopperHealth());

  std::string name() const override { return "hopper"; }
  /// z_min < z < z_max, angle_min < angle < angle_max, and every element of
  /// [qpos[2:], qvel] inside (state_min, state_max).
  bool is_healthy() const override;
  const HopperHealth& health() const { return health_; }

 private:
  HopperHealth health_;
};

}  // namespace namm
