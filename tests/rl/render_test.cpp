// Pins rl/render: the side view shows the pose and follows the torso, an
// episode video decodes back to the announced frames and size, the HUD's
// return is the episode's, and the token-kind plot writes a PNG of the
// announced size.
#include "rl/decision_transformer.h"
#include "rl/dt_checkpoint.h"
#include "rl/mujoco_env.h"
#include "rl/render.h"
#include "rl/rollout.h"
#include "vision/video_decoder.h"
#include "tests/rl/tiny_hopper.h"
#include "tests/temp_files.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace namm {
namespace {

using test_support::hopper_sidecar;
using test_support::tiny_hopper_model;

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("namm_render_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

RenderOptions small_view() {
  RenderOptions o;
  o.width = 320;
  o.height = 180;
  o.pixels_per_metre = 80;
  return o;
}

// pixels of the torso's blue (55, 95, 185), with some tolerance for anti-aliasing
std::vector<std::pair<int, int>> torso_pixels(const std::vector<uint8_t>& rgb, int width, int height) {
  std::vector<std::pair<int, int>> out;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const uint8_t* p = &rgb[(static_cast<size_t>(y) * width + x) * 3];
      if (std::abs(p[0] - 55) < 6 && std::abs(p[1] - 95) < 6 && std::abs(p[2] - 185) < 6) out.emplace_back(x, y);
    }
  }
  return out;
}

double mean_x(const std::vector<std::pair<int, int>>& pixels) {
  double sum = 0;
  for (const auto& p : pixels) sum += p.first;
  return pixels.empty() ? -1 : sum / static_cast<double>(pixels.size());
}

int64_t differing_pixels(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int64_t n = 0;
  for (size_t i = 0; i + 2 < a.size(); i += 3) {
    if (a[i] != b[i] || a[i + 1] != b[i + 1] || a[i + 2] != b[i + 2]) ++n;
  }
  return n;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// PNG: 8-byte signature, then the IHDR chunk with big-endian width and height
std::pair<int, int> png_size(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> head(24);
  in.read(reinterpret_cast<char*>(head.data()), 24);
  EXPECT_EQ(in.gcount(), 24);
  EXPECT_EQ(head[1], 'P');
  EXPECT_EQ(head[2], 'N');
  EXPECT_EQ(head[3], 'G');
  auto be32 = [&](int at) { return (head[at] << 24) | (head[at + 1] << 16) | (head[at + 2] << 8) | head[at + 3]; };
  return {be32(16), be32(20)};
}

TEST(SideView, DifferentPosesDrawDifferentRobots) {
  auto env = make_env("hopper");
  env->seed(1);
  env->reset();
  std::vector<double> qpos = env->qpos(), qvel = env->qvel();
  const RenderOptions view = small_view();
  const HudInfo hud;
  const std::vector<uint8_t> straight = draw_scene(snapshot_scene(*env), hud, view);
  ASSERT_EQ(straight.size(), static_cast<size_t>(view.width * view.height * 3));
  EXPECT_GT(torso_pixels(straight, view.width, view.height).size(), 50u) << "the torso is drawn";
  qpos[3] = -1.0;  // bend the hip
  qpos[4] = -1.2;  // and the knee
  env->set_state(qpos, qvel);
  const std::vector<uint8_t> bent = draw_scene(snapshot_scene(*env), hud, view);
  EXPECT_GT(differing_pixels(straight, bent), 300) << "a bent leg must look different";
  // the same pose draws the same frame
  EXPECT_EQ(differing_pixels(bent, draw_scene(snapshot_scene(*env), hud, view)), 0);
}

TEST(SideView, CameraFollowsTheTorsoWhileTheGroundMoves) {
  auto env = make_env("walker2d");
  env->seed(2);
  env->reset();
  std::vector<double> qpos = env->qpos();
  const std::vector<double> qvel = env->qvel();
  const RenderOptions view = small_view();
  const std::vector<uint8_t> here = draw_scene(snapshot_scene(*env), HudInfo{}, view);
  qpos[0] += 0.37;  // walk forward, same pose
  env->set_state(qpos, qvel);
  const std::vector<uint8_t> there = draw_scene(snapshot_scene(*env), HudInfo{}, view);
  const auto torso_here = torso_pixels(here, view.width, view.height);
  const auto torso_there = torso_pixels(there, view.width, view.height);
  ASSERT_GT(torso_here.size(), 50u);
  EXPECT_NEAR(mean_x(torso_here), mean_x(torso_there), 1.0) << "the torso stays in the middle";
  EXPECT_NEAR(mean_x(torso_here), view.width / 2.0, 4.0);
  EXPECT_GT(differing_pixels(here, there), 100) << "the ground ticks move under the robot";
}

TEST(SideView, HudTextChangesTheFrame) {
  auto env = make_env("hopper");
  env->seed(3);
  env->reset();
  const RenderOptions view = small_view();
  HudInfo a;
  a.env = "hopper";
  a.step = 10;
  HudInfo b = a;
  b.step = 11;
  const SceneSnapshot s = snapshot_scene(*env);
  EXPECT_GT(differing_pixels(draw_scene(s, a, view), draw_scene(s, b, view)), 5);
  EXPECT_GT(differing_pixels(draw_scene(s, HudInfo{}, view), draw_scene(s, a, view)), 100);
}

TEST(SideView, RejectsOddFrameSizes) {
  RenderOptions o;
  o.width = 321;
  EXPECT_NE(error_of([&] { o.validate(); }).find("width must be even"), std::string::npos);
  EXPECT_THROW(EpisodeRecorder{o}, std::invalid_argument);
}

TEST(EpisodeVideo, DecodesToTheAnnouncedFrameCountAndSize) {
  at::set_num_threads(1);
  const fs::path dir = temp_dir("video");
  RenderOptions view = small_view();
  view.hold_last_frames = 3;
  EpisodeRecorder recorder(view);
  RolloutOptions o;
  o.policy.name = "recency";
  o.policy.budget = Budget::parse("20");
  o.delay = 9;
  o.episodes = 2;
  o.max_steps = 21;  // odd: the last step gets a frame of its own
  o.seed = 5;
  o.on_step = recorder.hook(1);
  DtSidecar sidecar;
  sidecar.env = "hopper";
  const RolloutReport report = run_rollouts(tiny_hopper_model(), sidecar, "hopper", o);
  ASSERT_EQ(recorder.recorded_episodes(), std::vector<int>{1}) << "only the asked-for episode is recorded";
  const EpisodeResult& episode = report.episodes[1];
  ASSERT_EQ(recorder.recorded_steps(1), episode.steps);
  ASSERT_GE(episode.steps, 5) << "the random model should stay up a few steps";
  const int64_t frames = recorder.frames_for(episode.steps);
  EXPECT_EQ(frames, (episode.steps + 1) / 2 + 3);

  const std::string path = (dir / "episode.mp4").string();
  recorder.write_video(path, report, 1);
  EXPECT_FALSE(test_support::has_temporary(path));
  const VideoInfo info = probe_video(path);
  EXPECT_EQ(info.width, view.width);
  EXPECT_EQ(info.height, view.height);
  EXPECT_EQ(info.codec, "h264");
  EXPECT_EQ(info.frame_count_estimate, frames);
  EXPECT_NEAR(info.duration_seconds, static_cast<double>(frames) / view.fps, 0.05);
  const std::vector<DecodedFrame> decoded = sample_frames_uniform(path, static_cast<int>(frames));
  ASSERT_EQ(static_cast<int64_t>(decoded.size()), frames);
  EXPECT_EQ(decoded.back().index, frames - 1);
  EXPECT_EQ(decoded.front().rgb.size(), static_cast<size_t>(view.width * view.height * 3));
  // the robot moves: the first and last frames differ (after compression)
  EXPECT_GT(differing_pixels(decoded.front().rgb, decoded[static_cast<size_t>(frames - 4)].rgb), 100);
  fs::remove_all(dir);
}

TEST(EpisodeVideo, HudReturnEndsAtTheEpisodeReturnAndFollowsTheRewards) {
  auto env = make_env("hopper");
  env->seed(7);
  env->reset();
  EpisodeRecorder recorder(small_view());
  const RolloutStepHook hook = recorder.hook(0);
  std::vector<double> cumulative;
  double total = 0;
  for (int t = 0; t < 15; ++t) {
    const std::vector<double> action = {0.3 * std::sin(t), -0.2, 0.5 * std::cos(0.5 * t)};
    const StepResult r = env->step(action);
    total += r.reward;
    cumulative.push_back(total);
    hook(*env, 0, t, action);
    if (r.terminated) break;
  }
  EpisodeResult result;
  result.episode = 0;
  result.steps = static_cast<int64_t>(cumulative.size());
  result.episode_return = total;
  const std::vector<double> shown = recorder.returns_so_far(result);
  ASSERT_EQ(shown.size(), cumulative.size());
  for (size_t t = 0; t < shown.size(); ++t) EXPECT_NEAR(shown[t], cumulative[t], 1e-6) << "step " << t;
  // a result with another step count was not what was recorded
  result.steps += 1;
  EXPECT_NE(error_of([&] { recorder.returns_so_far(result); }).find("were recorded"), std::string::npos);
}

TEST(EpisodeVideo, UnrecordedEpisodeIsAnErrorAndLeavesNoFile) {
  const fs::path dir = temp_dir("missing");
  EpisodeRecorder recorder(small_view());
  RolloutReport report;
  report.env = "hopper";
  EpisodeResult e;
  e.episode = 0;
  e.steps = 3;
  report.episodes.push_back(e);
  const std::string path = (dir / "none.mp4").string();
  const std::string message = error_of([&] { recorder.write_video(path, report, 0); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("no steps were recorded"), std::string::npos) << message;
  EXPECT_NE(error_of([&] { recorder.write_video(path, report, 4); }).find("no episode 4"), std::string::npos);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(test_support::has_temporary(path));
  fs::remove_all(dir);
}

// an episode's records where layer l keeps every state token but only some returns and actions
std::vector<StepTokenKinds> synthetic_kinds(int layers, int steps, int heads) {
  std::vector<StepTokenKinds> out;
  for (int t = 0; t < steps; ++t) {
    StepTokenKinds s;
    s.tokens_seen = 3 * t + 2;
    for (int l = 0; l < layers; ++l) {
      const int64_t returns = t + 1, states = t + 1, actions = t;
      s.kept.push_back({heads * returns / (l + 2), heads * states, heads * actions / 3});
    }
    out.push_back(s);
  }
  return out;
}

TEST(KindsPlot, WritesAPngOfTheAnnouncedSize) {
  const fs::path dir = temp_dir("plot");
  for (int layers : {1, 3}) {
    const std::string path = (dir / ("kinds_" + std::to_string(layers) + ".png")).string();
    KindsPlotOptions o;
    o.title = "test plot";
    write_kinds_plot(path, synthetic_kinds(layers, 120, 2), 2, o);
    const auto [w, h] = kinds_plot_size(layers, o);
    EXPECT_EQ(png_size(path), std::make_pair(w, h));
    EXPECT_EQ(h, o.header_height + o.footer_height + layers * o.panel_height);
    EXPECT_FALSE(test_support::has_temporary(path));
  }
  fs::remove_all(dir);
}

TEST(KindsPlot, RejectsEmptyOrRaggedRecords) {
  const std::string path = (fs::temp_directory_path() / "namm_render_test_never.png").string();
  EXPECT_NE(error_of([&] { write_kinds_plot(path, {}, 1); }).find("no steps"), std::string::npos);
  std::vector<StepTokenKinds> ragged = synthetic_kinds(2, 5, 1);
  ragged[3].kept.pop_back();
  EXPECT_NE(error_of([&] { write_kinds_plot(path, ragged, 1); }).find("step 3 has 1 layers"), std::string::npos);
  EXPECT_NE(error_of([&] { write_kinds_plot(path, synthetic_kinds(2, 5, 1), 0); }).find("heads"), std::string::npos);
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
}  // namespace namm
