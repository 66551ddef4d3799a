#pragma once
// MuJoCo locomotion environments with Gymnasium v4 semantics (Hopper-v4,
// Walker2d-v4): the base class that owns the model and the episode, the
// factory, and the D4RL score normalisation.
//
// This is not a Gymnasium port: no spaces, no wrappers, no rendering. The
// MuJoCo header stays out of this file (style: one firewall .cpp per heavy
// dependency); mjModel/mjData are forward-declared and only mujoco_env.cpp
// touches their fields.

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

struct mjModel_;
struct mjData_;

namespace namm {

/// Reward and episode options shared by Hopper and Walker2d; the defaults are
/// Gymnasium v4's.
struct MujocoEnvOptions {
  int frame_skip = 4;                     // mj_step calls per env step
  double forward_reward_weight = 1.0;     // times x velocity
  double ctrl_cost_weight = 1e-3;         // times sum(action^2)
  double healthy_reward = 1.0;            // per step while alive
  bool terminate_when_unhealthy = true;   // end the episode when unhealthy
  double reset_noise_scale = 5e-3;        // uniform [-s, s] on qpos0 and qvel0
  int max_episode_steps = 1000;           // truncation (Gymnasium TimeLimit)
  double observation_velocity_clip = 10.0;  // qvel clipped to [-c, c] in obs
};

/// What one env step returns: Gymnasium's (obs, reward, terminated,
/// truncated, info) with the reward terms spelled out.
struct StepResult {
  std::vector<double> observation;  // [observation_size()]
  double reward = 0.0;              // reward_healthy + reward_forward - ctrl_cost
  double reward_forward = 0.0;      // forward_reward_weight * x_velocity
  double reward_healthy = 0.0;      // healthy_reward (also on the terminating step)
  double ctrl_cost = 0.0;           // ctrl_cost_weight * sum(action^2), unclipped action
  bool terminated = false;          // unhealthy after this step
  bool truncated = false;           // elapsed steps reached max_episode_steps
  double x_position = 0.0;          // qpos[0] after the step
  double x_velocity = 0.0;          // (x_after - x_before) / dt
};

/// A planar MuJoCo body with a Gymnasium-style episode: reset() draws the
/// initial state, step() applies an action for frame_skip physics steps.
/// Subclasses supply the health rule; the observation is qpos[1:] followed by
/// clipped qvel. Not thread-safe; one instance per thread.
class MujocoEnv {
 public:
  /// Loads the MJCF at xml_path; throws std::runtime_error naming the file
  /// and MuJoCo's message on failure.
  MujocoEnv(const std::string& xml_path, const MujocoEnvOptions& options);
  virtual ~MujocoEnv();
  MujocoEnv(const MujocoEnv&) = delete;
  MujocoEnv& operator=(const MujocoEnv&) = delete;

  /// Short name: "hopper" or "walker2d".
  virtual std::string name() const = 0;

  /// Reseeds the reset-noise generator (std::mt19937_64). The same seed
  /// gives bitwise identical resets and, with the same actions, trajectories.
  void seed(uint64_t seed);

  /// Starts an episode: qpos0 and zero qvel plus uniform noise; observation:
  /// [observation_size()].
  std::vector<double> reset();

  /// Applies action: [action_size()] for frame_skip physics steps. Throws
  /// std::invalid_argument for a wrong length or a non-finite value, and
  /// std::logic_error when no episode is running (before reset() or after
  /// termination/truncation).
  StepResult step(const std::vector<double>& action);

  /// Current observation: [observation_size()] = qpos[1:nq], clip(qvel, ±c).
  std::vector<double> observation() const;
  /// Gymnasium's is_healthy for the current state.
  virtual bool is_healthy() const = 0;

  int observation_size() const;  // nq - 1 + nv
  int action_size() const;       // nu
  int nq() const;                // generalized positions
  int nv() const;                // generalized velocities
  /// Per-actuator bounds from ctrlrange: [action_size()].
  const std::vector<double>& action_low() const { return action_low_; }
  const std::vector<double>& action_high() const { return action_high_; }

  /// Generalized positions: [nq]; velocities: [nv].
  std::vector<double> qpos() const;
  std::vector<double> qvel() const;
  /// Overwrites qpos: [nq] and qvel: [nv] and recomputes derived quantities
  /// (mj_forward); leaves the episode counters alone. Throws
  /// std::invalid_argument on wrong lengths or non-finite values.
  void set_state(const std::vector<double>& qpos, const std::vector<double>& qvel);

  double timestep() const;  // physics step, seconds
  double dt() const;        // timestep * frame_skip, seconds per env step
  int frame_skip() const { return options_.frame_skip; }
  int max_episode_steps() const { return options_.max_episode_steps; }
  /// Changes the truncation length (> 0); takes effect from the next step.
  void set_max_episode_steps(int steps);
  int elapsed_steps() const { return elapsed_steps_; }
  /// True after termination or truncation, and before the first reset().
  bool needs_reset() const { return needs_reset_; }
  const MujocoEnvOptions& options() const { return options_; }

  /// The compiled model and the live data, for renderers and benchmarks.
  const mjModel_* model() const { return model_.get(); }
  const mjData_* data() const { return data_.get(); }

 protected:
  /// Live state for subclasses' health rules: qpos: [nq], qvel: [nv].
  const double* qpos_data() const;
  const double* qvel_data() const;
  /// Throws std::runtime_error unless the model has the expected sizes.
  void check_model_sizes(int expected_nq, int expected_nv, int expected_nu) const;

 private:
  struct ModelDeleter {
    void operator()(mjModel_* m) const;
  };
  struct DataDeleter {
    void operator()(mjData_* d) const;
  };
  void write_observation(double* out) const;
  double uniform_noise();  // in [-reset_noise_scale, reset_noise_scale)

  std::string xml_path_;
  MujocoEnvOptions options_;
  std::unique_ptr<mjModel_, ModelDeleter> model_;
  std::unique_ptr<mjData_, DataDeleter> data_;
  std::vector<double> action_low_;   // [nu]
  std::vector<double> action_high_;  // [nu]
  std::mt19937_64 rng_;
  int elapsed_steps_ = 0;
  bool needs_reset_ = true;
};

/// The environment names make_env accepts.
std::vector<std::string> env_names();

/// Builds "hopper" or "walker2d" from scenes_dir/mujoco/<name>.xml; throws
/// std::invalid_argument naming the allowed values for any other name.
std::unique_ptr<MujocoEnv> make_env(const std::string& name,
                                    const std::string& scenes_dir = NAMM_SCENES_DIR,
                                    const MujocoEnvOptions& options = MujocoEnvOptions());

/// D4RL reference returns for one environment (random and expert policies).
struct D4rlReference {
  double random_return = 0.0;
  double expert_return = 0.0;
};

/// The D4RL reference for "hopper" or "walker2d"; throws
/// std::invalid_argument for other names.
D4rlReference d4rl_reference(const std::string& env_name);

/// D4RL normalised score: 100 * (R - random) / (expert - random).
double d4rl_normalized_score(const std::string& env_name, double episode_return);

}  // namespace namm
