// Environment step throughput: namm::MujocoEnv::step against a bare mj_step
// loop on the same compiled model, in one run, for Hopper and Walker2d.
//
// Both loops do the same physics: the same uniform random actions in
// [-1, 1] (one draw per actuator per env step), frame_skip mj_step calls per
// env step, and a reset at exactly the env steps where the env's episodes
// ended (terminated or truncated), so the contact workload matches. The env
// loop adds what a user pays for: action checks, the observation vector, the
// reward terms, the health rule and the episode bookkeeping.
//
// Reports the median of several repetitions: env steps per second for each,
// and the ratio raw/env (1.0 = no overhead). CPU time is the steadier figure
// on a shared machine; wall time is printed next to it.
//
//   namm_bench_env_step [env_steps=20000] [reps=5] [hopper|walker2d|both]
#include <mujoco/mujoco.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "rl/mujoco_env.h"

namespace {

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double wall = 0;  // wall-clock seconds
  double cpu = 0;   // process CPU seconds
};

Timing time_once(const std::function<void()>& fn) {
  const double cpu_start = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  fn();
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
          cpu_seconds() - cpu_start};
}

// Uniform action in [-1, 1] from our own 53-bit draw, identical in both loops.
double draw_action(std::mt19937_64& rng) {
  return -1.0 + 2.0 * (static_cast<double>(rng() >> 11) * 0x1.0p-53);
}

void bench(const std::string& name, int env_steps, int reps) {
  auto env = namm::make_env(name);
  const mjModel* m = env->model();
  const int nu = env->action_size();
  const int frame_skip = env->frame_skip();

  // env loop; records the steps after which an episode ended.
  std::vector<int> resets;
  double sink = 0.0;
  auto run_env = [&] {
    resets.clear();
    std::mt19937_64 rng(7);
    std::vector<double> action(nu);
    env->seed(1);
    env->reset();
    for (int t = 0; t < env_steps; ++t) {
      for (int i = 0; i < nu; ++i) action[i] = draw_action(rng);
      const namm::StepResult r = env->step(action);
      sink += r.reward + r.observation[0];
      if (r.terminated || r.truncated) {
        resets.push_back(t);
        env->reset();
      }
    }
  };

  // raw loop: same actions, same reset steps, no observation or reward.
  std::unique_ptr<mjData, void (*)(mjData*)> data(mj_makeData(m), mj_deleteData);
  mjData* d = data.get();
  auto run_raw = [&] {
    std::mt19937_64 rng(7);
    std::mt19937_64 noise_rng(1);
    size_t next_reset = 0;
    auto reset_raw = [&] {
      mj_resetData(m, d);
      for (int i = 0; i < m->nq; ++i) d->qpos[i] = m->qpos0[i] + 5e-3 * draw_action(noise_rng);
      for (int i = 0; i < m->nv; ++i) d->qvel[i] = 5e-3 * draw_action(noise_rng);
      mj_forward(m, d);
    };
    reset_raw();
    for (int t = 0; t < env_steps; ++t) {
      for (int i = 0; i < nu; ++i) d->ctrl[i] = draw_action(rng);
      for (int k = 0; k < frame_skip; ++k) mj_step(m, d);
      sink += d->qpos[0];
      if (next_reset < resets.size() && resets[next_reset] == t) {
        ++next_reset;
        reset_raw();
      }
    }
  };

  run_env();  // warm-up, and fixes the reset schedule for the raw loop
  const size_t episodes = resets.size();
  run_raw();
  // interleave the two so that load from other processes hits both alike.
  std::vector<double> raw_cpu, env_cpu, raw_wall, env_wall;
  for (int r = 0; r < reps; ++r) {
    const Timing tr = time_once(run_raw);
    const Timing te = time_once(run_env);
    raw_cpu.push_back(tr.cpu);
    raw_wall.push_back(tr.wall);
    env_cpu.push_back(te.cpu);
    env_wall.push_back(te.wall);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double rc = median(raw_cpu), ec = median(env_cpu);
  const double rw = median(raw_wall), ew = median(env_wall);
  std::printf("%-9s %7d env steps (%d episodes, frame_skip %d, dt %.3f s), median of %d\n",
              name.c_str(), env_steps, static_cast<int>(episodes), frame_skip, env->dt(), reps);
  std::printf("  raw mj_step loop : %9.0f env steps/s cpu  %9.0f wall  (%9.0f physics steps/s cpu)\n",
              env_steps / rc, env_steps / rw, env_steps * frame_skip / rc);
  std::printf("  MujocoEnv::step  : %9.0f env steps/s cpu  %9.0f wall\n", env_steps / ec,
              env_steps / ew);
  std::printf("  env/raw time     : %.3fx cpu  %.3fx wall\n", ec / rc, ew / rw);
  if (sink == 12345.678) std::printf(" ");  // keeps the loops observable
}

}  // namespace

int main(int argc, char** argv) {
  const int env_steps = argc > 1 ? std::atoi(argv[1]) : 20000;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string which = argc > 3 ? argv[3] : "both";
  if (env_steps < 1 || reps < 1 || (which != "both" && which != "hopper" && which != "walker2d")) {
    std::fprintf(stderr, "usage: namm_bench_env_step [env_steps>0] [reps>0] [hopper|walker2d|both]\n");
    return 2;
  }
  try {
    std::printf("MuJoCo %d, one thread\n", mj_version());
    if (which != "walker2d") bench("hopper", env_steps, reps);
    if (which != "hopper") bench("walker2d", env_steps, reps);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "namm_bench_env_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
