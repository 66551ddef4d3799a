// Pins rl/mujoco_env, rl/hopper and rl/walker2d to Gymnasium v4's Hopper and
// Walker2d: model facts, observation layout, reward terms, health rules,
// truncation, seeding, and errors.
#include <mujoco/mujoco.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "rl/hopper.h"
#include "rl/mujoco_env.h"
#include "rl/walker2d.h"

namespace namm {
namespace {

std::string scene(const std::string& name) {
  return std::string(NAMM_SCENES_DIR) + "/mujoco/" + name + ".xml";
}

// Capsule mass at density 1000 kg/m^3: cylinder plus two half-spheres.
double capsule_mass(double radius, double length) {
  return 1000.0 * (M_PI * radius * radius * length + 4.0 / 3.0 * M_PI * radius * radius * radius);
}

double total_mass(const mjModel* m) {
  double total = 0.0;
  for (int b = 0; b < m->nbody; ++b) total += m->body_mass[b];
  return total;
}

double body_mass(const mjModel* m, const char* name) {
  const int id = mj_name2id(m, mjOBJ_BODY, name);
  EXPECT_GE(id, 0) << name;
  return id >= 0 ? m->body_mass[id] : -1.0;
}

std::vector<double> joint_range(const mjModel* m, const char* name) {
  const int id = mj_name2id(m, mjOBJ_JOINT, name);
  EXPECT_GE(id, 0) << name;
  if (id < 0) return {};
  return {m->jnt_range[2 * id], m->jnt_range[2 * id + 1]};
}

// Message of the exception f throws as type E ("" if it throws nothing).
template <typename E, typename F>
std::string message_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

bool bitwise_equal(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// Deterministic action in [-1, 1] for step t and actuator i.
double scripted_action(int t, int i) { return std::sin(0.37 * t + 1.3 * i); }

// ---- model facts ------------------------------------------------------------

TEST(HopperModel, MatchesGymnasiumDimensionsAndMasses) {
  Hopper env(scene("hopper"));
  const mjModel* m = env.model();
  EXPECT_EQ(m->nq, 6);
  EXPECT_EQ(m->nv, 6);
  EXPECT_EQ(m->nu, 3);
  EXPECT_EQ(m->njnt, 6);
  EXPECT_EQ(m->nbody, 5);  // world, torso, thigh, leg, foot
  EXPECT_DOUBLE_EQ(m->opt.timestep, 0.002);
  EXPECT_EQ(m->opt.integrator, mjINT_RK4);
  EXPECT_DOUBLE_EQ(env.dt(), 0.008);
  EXPECT_EQ(env.frame_skip(), 4);
  // capsules at density 1000, as MuJoCo computes them for Gymnasium's model.
  EXPECT_NEAR(body_mass(m, "torso"), capsule_mass(0.05, 0.40), 1e-9);
  EXPECT_NEAR(body_mass(m, "thigh"), capsule_mass(0.05, 0.45), 1e-9);
  EXPECT_NEAR(body_mass(m, "leg"), capsule_mass(0.04, 0.50), 1e-9);
  EXPECT_NEAR(body_mass(m, "foot"), capsule_mass(0.06, 0.39), 1e-9);
  EXPECT_NEAR(total_mass(m), 15.820013406, 1e-8);
  for (int a = 0; a < m->nu; ++a) {
    EXPECT_DOUBLE_EQ(m->actuator_gear[6 * a], 200.0) << "actuator " << a;
  }
  const double deg = M_PI / 180.0;
  EXPECT_NEAR(joint_range(m, "thigh_joint")[0], -150 * deg, 1e-12);
  EXPECT_NEAR(joint_range(m, "leg_joint")[0], -150 * deg, 1e-12);
  EXPECT_NEAR(joint_range(m, "foot_joint")[1], 45 * deg, 1e-12);
  const int thigh_dof = m->jnt_dofadr[mj_name2id(m, mjOBJ_JOINT, "thigh_joint")];
  EXPECT_DOUBLE_EQ(m->dof_armature[thigh_dof], 1.0);
  EXPECT_DOUBLE_EQ(m->dof_damping[thigh_dof], 1.0);
  EXPECT_DOUBLE_EQ(m->qpos0[1], 1.25);  // rootz ref: qpos[1] is the torso height
  EXPECT_DOUBLE_EQ(m->geom_friction[3 * mj_name2id(m, mjOBJ_GEOM, "foot_geom")], 2.0);
}

TEST(Walker2dModel, MatchesGymnasiumDimensionsAndMasses) {
  Walker2d env(scene("walker2d"));
  const mjModel* m = env.model();
  EXPECT_EQ(m->nq, 9);
  EXPECT_EQ(m->nv, 9);
  EXPECT_EQ(m->nu, 6);
  EXPECT_EQ(m->njnt, 9);
  EXPECT_EQ(m->nbody, 8);
  EXPECT_DOUBLE_EQ(m->opt.timestep, 0.002);
  EXPECT_EQ(m->opt.integrator, mjINT_RK4);
  EXPECT_DOUBLE_EQ(env.dt(), 0.008);
  for (const char* side : {"", "_left"}) {
    EXPECT_NEAR(body_mass(m, (std::string("thigh") + side).c_str()), capsule_mass(0.05, 0.45), 1e-9);
    EXPECT_NEAR(body_mass(m, (std::string("leg") + side).c_str()), capsule_mass(0.04, 0.50), 1e-9);
    EXPECT_NEAR(body_mass(m, (std::string("foot") + side).c_str()), capsule_mass(0.06, 0.20), 1e-9);
  }
  EXPECT_NEAR(body_mass(m, "torso"), capsule_mass(0.05, 0.40), 1e-9);
  EXPECT_NEAR(total_mass(m), 23.677136633, 1e-8);
  for (int a = 0; a < m->nu; ++a) {
    EXPECT_DOUBLE_EQ(m->actuator_gear[6 * a], 100.0) << "actuator " << a;
  }
  const int thigh_dof = m->jnt_dofadr[mj_name2id(m, mjOBJ_JOINT, "thigh_left_joint")];
  EXPECT_DOUBLE_EQ(m->dof_armature[thigh_dof], 0.01);
  EXPECT_DOUBLE_EQ(m->dof_damping[thigh_dof], 0.1);
  EXPECT_DOUBLE_EQ(m->geom_friction[3 * mj_name2id(m, mjOBJ_GEOM, "foot_geom")], 0.9);
  EXPECT_DOUBLE_EQ(m->geom_friction[3 * mj_name2id(m, mjOBJ_GEOM, "foot_left_geom")], 1.9);
}

// ---- sizes and observation layout ------------------------------------------

TEST(EnvSizes, HopperHas11ObservationsAnd3ActionsInUnitBox) {
  auto env = make_env("hopper");
  EXPECT_EQ(env->name(), "hopper");
  EXPECT_EQ(env->observation_size(), 11);
  EXPECT_EQ(env->action_size(), 3);
  EXPECT_EQ(env->reset().size(), 11u);
  EXPECT_EQ(env->action_low(), std::vector<double>(3, -1.0));
  EXPECT_EQ(env->action_high(), std::vector<double>(3, 1.0));
}

TEST(EnvSizes, Walker2dHas17ObservationsAnd6ActionsInUnitBox) {
  auto env = make_env("walker2d");
  EXPECT_EQ(env->name(), "walker2d");
  EXPECT_EQ(env->observation_size(), 17);
  EXPECT_EQ(env->action_size(), 6);
  EXPECT_EQ(env->reset().size(), 17u);
  EXPECT_EQ(env->action_low(), std::vector<double>(6, -1.0));
  EXPECT_EQ(env->action_high(), std::vector<double>(6, 1.0));
}

TEST(Observation, IsQposWithoutXThenVelocitiesClippedToTen) {
  auto env = make_env("walker2d");
  env->reset();
  std::vector<double> qpos = {7.0, 1.2, 0.1, -0.2, -0.3, 0.1, -0.4, -0.5, 0.2};
  std::vector<double> qvel = {25.0, -0.5, 3.0, -12.0, 0.25, 10.5, -9.0, 0.0, 1.0};
  env->set_state(qpos, qvel);
  const std::vector<double> obs = env->observation();
  ASSERT_EQ(obs.size(), 17u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(obs[i], qpos[i + 1]) << i;
  const std::vector<double> clipped = {10.0, -0.5, 3.0, -10.0, 0.25, 10.0, -9.0, 0.0, 1.0};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(obs[8 + i], clipped[i]) << i;
  // set_state keeps the unclipped velocities in the simulator.
  EXPECT_EQ(env->qvel(), qvel);
}

// ---- reward -----------------------------------------------------------------

TEST(Reward, IsHealthyPlusForwardMinusControlCostOnKnownState) {
  for (const std::string name : {"hopper", "walker2d"}) {
    auto env = make_env(name);
    env->reset();
    std::vector<double> qpos(env->nq(), 0.0), qvel(env->nv(), 0.0);
    qpos[0] = 0.3;   // x
    qpos[1] = 1.25;  // z
    qvel[0] = 1.5;   // moving forward
    env->set_state(qpos, qvel);
    std::vector<double> action(env->action_size());
    double sum_sq = 0.0;
    for (int i = 0; i < env->action_size(); ++i) {
      action[i] = 0.5 - 0.25 * i;
      sum_sq += action[i] * action[i];
    }
    const double x_before = env->qpos()[0];
    const StepResult r = env->step(action);
    const double x_after = env->qpos()[0];
    const double x_velocity = (x_after - x_before) / 0.008;
    EXPECT_EQ(r.x_position, x_after) << name;
    EXPECT_NEAR(r.x_velocity, x_velocity, 1e-12) << name;
    EXPECT_GT(r.x_velocity, 1.0) << name;  // still moving forward at about 1.5 m/s
    EXPECT_NEAR(r.reward_forward, 1.0 * x_velocity, 1e-12) << name;
    EXPECT_EQ(r.reward_healthy, 1.0) << name;
    EXPECT_NEAR(r.ctrl_cost, 1e-3 * sum_sq, 1e-15) << name;
    EXPECT_NEAR(r.reward, r.reward_healthy + r.reward_forward - r.ctrl_cost, 1e-9) << name;
    EXPECT_NEAR(r.reward, 1.0 + x_velocity - 1e-3 * sum_sq, 1e-9) << name;
    EXPECT_FALSE(r.terminated) << name;
    EXPECT_FALSE(r.truncated) << name;
    EXPECT_TRUE(bitwise_equal(r.observation, env->observation())) << name;
  }
}

TEST(Reward, ControlCostUsesTheUnclippedActionWhileMujocoClampsTheTorque) {
  auto a = make_env("hopper");
  auto b = make_env("hopper");
  a->seed(3);
  b->seed(3);
  a->reset();
  b->reset();
  const StepResult ra = a->step({2.0, -3.0, 1.5});
  const StepResult rb = b->step({1.0, -1.0, 1.0});
  EXPECT_NEAR(ra.ctrl_cost, 1e-3 * (4.0 + 9.0 + 2.25), 1e-15);
  EXPECT_NEAR(rb.ctrl_cost, 1e-3 * 3.0, 1e-15);
  EXPECT_TRUE(bitwise_equal(ra.observation, rb.observation));
}

// ---- health rules -------------------------------------------------------------

// Steps once from (qpos, qvel) with a zero action and returns the result.
StepResult step_from(MujocoEnv& env, std::vector<double> qpos, std::vector<double> qvel) {
  env.reset();
  env.set_state(qpos, qvel);
  return env.step(std::vector<double>(env.action_size(), 0.0));
}

TEST(HopperHealth, LowTorsoTerminatesButStillEarnsHealthyReward) {
  Hopper env(scene("hopper"));
  const StepResult r = step_from(env, {0, 0.5, 0, 0, 0, 0}, std::vector<double>(6, 0.0));
  EXPECT_TRUE(r.terminated);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(r.reward_healthy, 1.0);  // Gymnasium: healthy or terminate_when_unhealthy
  EXPECT_TRUE(env.needs_reset());
}

TEST(HopperHealth, TiltedTorsoTerminates) {
  Hopper env(scene("hopper"));
  EXPECT_TRUE(step_from(env, {0, 1.25, 0.3, 0, 0, 0}, std::vector<double>(6, 0.0)).terminated);
  EXPECT_TRUE(step_from(env, {0, 1.25, -0.3, 0, 0, 0}, std::vector<double>(6, 0.0)).terminated);
  EXPECT_FALSE(step_from(env, {0, 1.25, 0.1, 0, 0, 0}, std::vector<double>(6, 0.0)).terminated);
}

TEST(HopperHealth, RunawayVelocityTerminates) {
  Hopper env(scene("hopper"));
  // rootx velocity 150 m/s: outside the (-100, 100) state range, nothing brakes it in 8 ms.
  EXPECT_TRUE(step_from(env, {0, 1.25, 0, 0, 0, 0}, {150, 0, 0, 0, 0, 0}).terminated);
}

TEST(HopperHealth, BoundsAreStrict) {
  Hopper env(scene("hopper"));
  env.reset();
  const std::vector<double> still(6, 0.0);
  env.set_state({0, 0.7, 0, 0, 0, 0}, still);
  EXPECT_FALSE(env.is_healthy());  // z must exceed 0.7
  env.set_state({0, 0.7001, 0, 0, 0, 0}, still);
  EXPECT_TRUE(env.is_healthy());
  env.set_state({0, 1.25, 0.2, 0, 0, 0}, still);
  EXPECT_FALSE(env.is_healthy());  // |angle| must stay below 0.2
  env.set_state({0, 1.25, 0.1999, 0, 0, 0}, still);
  EXPECT_TRUE(env.is_healthy());
  env.set_state({500, 1.25, 0, 0, 0, 0}, still);
  EXPECT_TRUE(env.is_healthy());  // x is not part of the state range check
  env.set_state({0, 1.25, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 100});
  EXPECT_FALSE(env.is_healthy());
}

TEST(Walker2dHealth, HeightOutsideOpenRangeOrTiltTerminates) {
  Walker2d env(scene("walker2d"));
  const std::vector<double> still(9, 0.0);
  EXPECT_TRUE(step_from(env, {0, 0.6, 0, 0, 0, 0, 0, 0, 0}, still).terminated);
  EXPECT_TRUE(step_from(env, {0, 2.5, 0, 0, 0, 0, 0, 0, 0}, still).terminated);
  EXPECT_TRUE(step_from(env, {0, 1.25, 1.2, 0, 0, 0, 0, 0, 0}, still).terminated);
  EXPECT_TRUE(step_from(env, {0, 1.25, -1.2, 0, 0, 0, 0, 0, 0}, still).terminated);
  EXPECT_FALSE(step_from(env, {0, 1.25, 0.5, 0, 0, 0, 0, 0, 0}, still).terminated);
  env.set_state({0, 0.8, 0, 0, 0, 0, 0, 0, 0}, still);
  EXPECT_FALSE(env.is_healthy());  // strict lower bound
  env.set_state({0, 1.25, 0, 0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0, 0, 0, 150});
  EXPECT_TRUE(env.is_healthy());  // Walker2d-v4 has no state range check
}

TEST(Episode, WithoutTerminationTruncatesAtExactly1000Steps) {
  MujocoEnvOptions options;
  options.terminate_when_unhealthy = false;  // lets the hopper fall and lie for 1000 steps
  auto env = make_env("hopper", NAMM_SCENES_DIR, options);
  EXPECT_EQ(env->max_episode_steps(), 1000);
  env->reset();
  const std::vector<double> zero(3, 0.0);
  bool fell = false;
  for (int t = 1; t < 1000; ++t) {
    const StepResult r = env->step(zero);
    ASSERT_FALSE(r.truncated) << "step " << t;
    ASSERT_FALSE(r.terminated) << "step " << t;
    if (!env->is_healthy()) {
      fell = true;
      // Gymnasium: no healthy reward once unhealthy unless it terminates.
      ASSERT_EQ(r.reward_healthy, 0.0) << "step " << t;
    }
  }
  EXPECT_TRUE(fell);
  const StepResult last = env->step(zero);
  EXPECT_TRUE(last.truncated);
  EXPECT_FALSE(last.terminated);
  EXPECT_EQ(env->elapsed_steps(), 1000);
  EXPECT_THROW(env->step(zero), std::logic_error);
  env->reset();
  EXPECT_EQ(env->elapsed_steps(), 0);
  EXPECT_NO_THROW(env->step(zero));
}

TEST(Episode, HealthyRolloutTruncatesAtConfiguredLength) {
  auto env = make_env("walker2d");
  env->set_max_episode_steps(20);
  env->reset();
  const std::vector<double> zero(6, 0.0);
  for (int t = 1; t <= 20; ++t) {
    const StepResult r = env->step(zero);
    ASSERT_FALSE(r.terminated) << "step " << t;
    ASSERT_EQ(r.truncated, t == 20) << "step " << t;
  }
  EXPECT_THROW(env->step(zero), std::logic_error);
}

TEST(Episode, StepBeforeResetOrAfterTerminationIsAnError) {
  Hopper env(scene("hopper"));
  const std::string before = message_of<std::logic_error>([&] { env.step({0, 0, 0}); });
  EXPECT_NE(before.find("reset()"), std::string::npos) << before;
  step_from(env, {0, 0.3, 0, 0, 0, 0}, std::vector<double>(6, 0.0));
  ASSERT_TRUE(env.needs_reset());
  const std::string after = message_of<std::logic_error>([&] { env.step({0, 0, 0}); });
  EXPECT_NE(after.find("hopper"), std::string::npos) << after;
  EXPECT_NE(after.find("reset()"), std::string::npos) << after;
}

// ---- seeding and reset noise -------------------------------------------------------

std::vector<double> rollout(MujocoEnv& env, uint64_t seed, int steps) {
  env.seed(seed);
  std::vector<double> trace = env.reset();
  std::vector<double> action(env.action_size());
  for (int t = 0; t < steps; ++t) {
    for (int i = 0; i < env.action_size(); ++i) action[i] = scripted_action(t, i);
    const StepResult r = env.step(action);
    trace.insert(trace.end(), r.observation.begin(), r.observation.end());
    trace.push_back(r.reward);
    if (r.terminated || r.truncated) break;
  }
  return trace;
}

TEST(Seeding, SameSeedGivesBitwiseIdenticalTrajectories) {
  for (const std::string name : {"hopper", "walker2d"}) {
    auto a = make_env(name);
    auto b = make_env(name);
    const std::vector<double> first = rollout(*a, 42, 60);
    EXPECT_TRUE(bitwise_equal(first, rollout(*b, 42, 60))) << name;
    EXPECT_TRUE(bitwise_equal(first, rollout(*a, 42, 60))) << name << " (same instance, reseeded)";
    EXPECT_FALSE(bitwise_equal(first, rollout(*b, 43, 60))) << name;
  }
}

TEST(Seeding, ResetNoiseIsUniformWithinScaleOnPositionsAndVelocities) {
  for (const std::string name : {"hopper", "walker2d"}) {
    auto env = make_env(name);
    const mjModel* m = env->model();
    double largest = 0.0;
    for (uint64_t seed = 0; seed < 50; ++seed) {
      env->seed(seed);
      env->reset();
      const std::vector<double> qpos = env->qpos(), qvel = env->qvel();
      for (int i = 0; i < env->nq(); ++i) {
        const double noise = qpos[i] - m->qpos0[i];
        ASSERT_LE(std::abs(noise), 5e-3) << name << " qpos " << i;
        largest = std::max(largest, std::abs(noise));
      }
      for (int i = 0; i < env->nv(); ++i) {
        ASSERT_LE(std::abs(qvel[i]), 5e-3) << name << " qvel " << i;
        largest = std::max(largest, std::abs(qvel[i]));
      }
    }
    EXPECT_GT(largest, 4.5e-3) << name;  // the noise actually reaches its scale
  }
}

TEST(Seeding, ResetNoiseScaleZeroGivesTheInitialState) {
  MujocoEnvOptions options;
  options.reset_noise_scale = 0.0;
  auto env = make_env("walker2d", NAMM_SCENES_DIR, options);
  const std::vector<double> obs = env->reset();
  std::vector<double> expected(17, 0.0);
  expected[0] = 1.25;
  EXPECT_EQ(obs, expected);
}

// ---- errors ----------------------------------------------------------------------

TEST(Errors, WrongActionLengthNamesBothLengthsAndValues) {
  auto env = make_env("hopper");
  env->reset();
  const std::string msg =
      message_of<std::invalid_argument>([&] { env->step({0.25, 0.5}); });
  EXPECT_NE(msg.find("2 values"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0.25"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  // the rejected action leaves the episode usable.
  EXPECT_NO_THROW(env->step({0.0, 0.0, 0.0}));
}

TEST(Errors, NonFiniteActionNamesTheIndexAndValue) {
  auto env = make_env("walker2d");
  env->reset();
  const std::string nan_msg = message_of<std::invalid_argument>(
      [&] { env->step({0, 0, NAN, 0, 0, 0}); });
  EXPECT_NE(nan_msg.find("action[2] = nan"), std::string::npos) << nan_msg;
  const std::string inf_msg = message_of<std::invalid_argument>(
      [&] { env->step({0, 0, 0, 0, 0, -INFINITY}); });
  EXPECT_NE(inf_msg.find("action[5] = -inf"), std::string::npos) << inf_msg;
  EXPECT_THROW(env->set_state(std::vector<double>(9, 0.0), std::vector<double>(8, 0.0)),
               std::invalid_argument);
}

TEST(Errors, UnknownEnvironmentNamesAllowedValues) {
  const std::string msg = message_of<std::invalid_argument>([] { make_env("halfcheetah"); });
  EXPECT_NE(msg.find("halfcheetah"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hopper, walker2d"), std::string::npos) << msg;
}

TEST(Errors, MissingSceneFileIsNamedInOneLine) {
  const std::string msg =
      message_of<std::runtime_error>([] { make_env("hopper", "/nonexistent/scenes"); });
  EXPECT_NE(msg.find("/nonexistent/scenes/mujoco/hopper.xml"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(Errors, WrongModelForTheEnvironmentIsRejected) {
  const std::string msg = message_of<std::runtime_error>([] { Hopper env(scene("walker2d")); });
  EXPECT_NE(msg.find("nq 9"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hopper needs nq 6"), std::string::npos) << msg;
}

// ---- D4RL ------------------------------------------------------------------------

TEST(D4rl, NormalisedScoreIsZeroForRandomAndHundredForExpert) {
  EXPECT_NEAR(d4rl_normalized_score("hopper", -20.272305), 0.0, 1e-12);
  EXPECT_NEAR(d4rl_normalized_score("hopper", 3234.3), 100.0, 1e-12);
  EXPECT_NEAR(d4rl_normalized_score("walker2d", 1.629008), 0.0, 1e-12);
  EXPECT_NEAR(d4rl_normalized_score("walker2d", 4592.3), 100.0, 1e-12);
  EXPECT_NEAR(d4rl_normalized_score("hopper", 1600.0),
              100.0 * (1600.0 + 20.272305) / (3234.3 + 20.272305), 1e-12);
  EXPECT_THROW(d4rl_normalized_score("ant", 1.0), std::invalid_argument);
}

}  // namespace
}  // namespace namm
