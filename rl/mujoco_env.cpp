// The one translation unit of rl/ that includes the MuJoCo header: model
// loading, the episode loop, reset noise, the factory and D4RL normalisation.
#include "rl/mujoco_env.h"

#include <mujoco/mujoco.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "rl/hopper.h"
#include "rl/walker2d.h"

namespace namm {
namespace {

// "[0.1, nan, 3]" with enough digits to tell values apart in an error message.
std::string format_values(const std::vector<double>& values) {
  std::ostringstream out;
  out.precision(9);
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  out << "]";
  return out.str();
}

// Throws std::invalid_argument unless values has `expected` finite entries.
void check_vector(const char* what, const std::vector<double>& values, int expected) {
  if (static_cast<int>(values.size()) != expected) {
    std::ostringstream msg;
    msg << what << " has " << values.size() << " values, expected " << expected << ": "
        << format_values(values);
    throw std::invalid_argument(msg.str());
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      std::ostringstream msg;
      msg << what << "[" << i << "] = " << values[i] << " is not finite: " << format_values(values);
      throw std::invalid_argument(msg.str());
    }
  }
}

}  // namespace

void MujocoEnv::ModelDeleter::operator()(mjModel_* m) const { mj_deleteModel(m); }
void MujocoEnv::DataDeleter::operator()(mjData_* d) const { mj_deleteData(d); }

MujocoEnv::MujocoEnv(const std::string& xml_path, const MujocoEnvOptions& options)
    : xml_path_(xml_path), options_(options) {
  if (options_.frame_skip < 1) {
    throw std::invalid_argument("MujocoEnv: frame_skip must be >= 1, got " +
                                std::to_string(options_.frame_skip));
  }
  if (options_.max_episode_steps < 1) {
    throw std::invalid_argument("MujocoEnv: max_episode_steps must be >= 1, got " +
                                std::to_string(options_.max_episode_steps));
  }
  char error[1000] = "";
  model_.reset(mj_loadXML(xml_path.c_str(), nullptr, error, sizeof(error)));
  if (!model_) {
    std::string reason(error);
    for (char& c : reason) {
      if (c == '\n') c = ' ';  // keep the message on one line
    }
    while (!reason.empty() && reason.back() == ' ') reason.pop_back();
    throw std::runtime_error("cannot load MJCF '" + xml_path + "': " + reason);
  }
  data_.reset(mj_makeData(model_.get()));
  if (!data_) throw std::runtime_error("cannot allocate mjData for '" + xml_path + "'");

  const mjModel* m = model_.get();
  action_low_.resize(m->nu);
  action_high_.resize(m->nu);
  for (int i = 0; i < m->nu; ++i) {
    const bool limited = m->actuator_ctrllimited[i] != 0;
    action_low_[i] = limited ? m->actuator_ctrlrange[2 * i] : -INFINITY;
    action_high_[i] = limited ? m->actuator_ctrlrange[2 * i + 1] : INFINITY;
  }
  // deterministic even without seed(): the generator's default seed.
  rng_.seed(0);
}

MujocoEnv::~MujocoEnv() = default;

void MujocoEnv::check_model_sizes(int expected_nq, int expected_nv, int expected_nu) const {
  const mjModel* m = model_.get();
  if (m->nq != expected_nq || m->nv != expected_nv || m->nu != expected_nu) {
    std::ostringstream msg;
    msg << "MJCF '" << xml_path_ << "' has nq " << m->nq << ", nv " << m->nv << ", nu " << m->nu
        << "; " << name() << " needs nq " << expected_nq << ", nv " << expected_nv << ", nu "
        << expected_nu;
    throw std::runtime_error(msg.str());
  }
}

void MujocoEnv::seed(uint64_t seed) { rng_.seed(seed); }

double MujocoEnv::uniform_noise() {
  // our own draw (not std::uniform_real_distribution, whose algorithm is
  // library-defined): the top 53 bits as a double in [0, 1).
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  const double s = options_.reset_noise_scale;
  return -s + 2.0 * s * u;
}

std::vector<double> MujocoEnv::reset() {
  const mjModel* m = model_.get();
  mjData* d = data_.get();
  mj_resetData(m, d);
  // Gymnasium's reset_model: all qpos noise first, then all qvel noise.
  for (int i = 0; i < m->nq; ++i) d->qpos[i] = m->qpos0[i] + uniform_noise();
  for (int i = 0; i < m->nv; ++i) d->qvel[i] = uniform_noise();
  mj_forward(m, d);
  elapsed_steps_ = 0;
  needs_reset_ = false;
  return observation();
}

StepResult MujocoEnv::step(const std::vector<double>& action) {
  if (needs_reset_) {
    std::ostringstream msg;
    msg << name() << ": step() called without a running episode (elapsed steps "
        << elapsed_steps_ << "); call reset() first";
    throw std::logic_error(msg.str());
  }
  const mjModel* m = model_.get();
  mjData* d = data_.get();
  check_vector("action", action, m->nu);

  const double x_before = d->qpos[0];
  // MuJoCo clamps ctrl to ctrlrange inside mj_step; the control cost below
  // uses the action as given, as Gymnasium does.
  double action_sq = 0.0;
  for (int i = 0; i < m->nu; ++i) {
    d->ctrl[i] = action[i];
    action_sq += action[i] * action[i];
  }
  for (int k = 0; k < options_.frame_skip; ++k) mj_step(m, d);
  // Gymnasium also calls mj_rnePostConstraint here; it only fills cacc and
  // cfrc_*, which neither observation reads, so it is skipped.

  StepResult r;
  r.x_position = d->qpos[0];
  r.x_velocity = (r.x_position - x_before) / dt();
  r.reward_forward = options_.forward_reward_weight * r.x_velocity;
  const bool healthy = is_healthy();
  // Gymnasium: float(is_healthy or terminate_when_unhealthy) * healthy_reward,
  // so the terminating step still earns the healthy reward.
  r.reward_healthy =
      (healthy || options_.terminate_when_unhealthy) ? options_.healthy_reward : 0.0;
  r.ctrl_cost = options_.ctrl_cost_weight * action_sq;
  r.reward = r.reward_forward + r.reward_healthy - r.ctrl_cost;
  r.observation.resize(observation_size());
  write_observation(r.observation.data());

  ++elapsed_steps_;
  r.terminated = options_.terminate_when_unhealthy && !healthy;
  r.truncated = elapsed_steps_ >= options_.max_episode_steps;
  if (r.terminated || r.truncated) needs_reset_ = true;
  return r;
}

void MujocoEnv::write_observation(double* out) const {
  const mjModel* m = model_.get();
  const mjData* d = data_.get();
  const double c = options_.observation_velocity_clip;
  // qpos without the x position (Gymnasium's exclude_current_positions), then
  // qvel clipped to [-c, c].
  for (int i = 1; i < m->nq; ++i) *out++ = d->qpos[i];
  for (int i = 0; i < m->nv; ++i) *out++ = std::min(std::max(d->qvel[i], -c), c);
}

std::vector<double> MujocoEnv::observation() const {
  std::vector<double> obs(observation_size());
  write_observation(obs.data());
  return obs;
}

int MujocoEnv::observation_size() const { return model_->nq - 1 + model_->nv; }
int MujocoEnv::action_size() const { return model_->nu; }
int MujocoEnv::nq() const { return model_->nq; }
int MujocoEnv::nv() const { return model_->nv; }

std::vector<double> MujocoEnv::qpos() const {
  return std::vector<double>(data_->qpos, data_->qpos + model_->nq);
}

std::vector<double> MujocoEnv::qvel() const {
  return std::vector<double>(data_->qvel, data_->qvel + model_->nv);
}

const double* MujocoEnv::qpos_data() const { return data_->qpos; }
const double* MujocoEnv::qvel_data() const { return data_->qvel; }

void MujocoEnv::set_state(const std::vector<double>& qpos, const std::vector<double>& qvel) {
  const mjModel* m = model_.get();
  mjData* d = data_.get();
  check_vector("qpos", qpos, m->nq);
  check_vector("qvel", qvel, m->nv);
  for (int i = 0; i < m->nq; ++i) d->qpos[i] = qpos[i];
  for (int i = 0; i < m->nv; ++i) d->qvel[i] = qvel[i];
  mj_forward(m, d);
}

double MujocoEnv::timestep() const { return model_->opt.timestep; }
double MujocoEnv::dt() const { return model_->opt.timestep * options_.frame_skip; }

void MujocoEnv::set_max_episode_steps(int steps) {
  if (steps < 1) {
    throw std::invalid_argument("max_episode_steps must be >= 1, got " + std::to_string(steps));
  }
  options_.max_episode_steps = steps;
}

std::vector<std::string> env_names() { return {"hopper", "walker2d"}; }

std::unique_ptr<MujocoEnv> make_env(const std::string& name, const std::string& scenes_dir,
                                    const MujocoEnvOptions& options) {
  const std::string path = scenes_dir + "/mujoco/" + name + ".xml";
  if (name == "hopper") return std::make_unique<Hopper>(path, options);
  if (name == "walker2d") return std::make_unique<Walker2d>(path, options);
  throw std::invalid_argument("unknown environment '" + name + "'; allowed: hopper, walker2d");
}

D4rlReference d4rl_reference(const std::string& env_name) {
  // D4RL's REF_MIN_SCORE / REF_MAX_SCORE for the v2 locomotion datasets.
  if (env_name == "hopper") return {-20.272305, 3234.3};
  if (env_name == "walker2d") return {1.629008, 4592.3};
  throw std::invalid_argument("no D4RL reference for '" + env_name +
                              "'; allowed: hopper, walker2d");
}

double d4rl_normalized_score(const std::string& env_name, double episode_return) {
  const D4rlReference ref = d4rl_reference(env_name);
  return 100.0 * (episode_return - ref.random_return) / (ref.expert_return - ref.random_return);
}

}  // namespace namm
