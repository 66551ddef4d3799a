// Pictures of a Decision Transformer episode:
//
//   a side-view video of the robot   a 2D drawing of the MuJoCo model's geoms
//                                    (capsules, cylinders, spheres, boxes; the
//                                    plane as a ground line with a tick every
//                                    0.5 m so forward motion is visible),
//                                    looking along -y at the x-z plane, the
//                                    camera following the torso in x, with a
//                                    HUD (env, memory policy, step, return so
//                                    far, KV kept). Written as H.264 mp4
//                                    through vision/video_encoder.h, which
//                                    writes "<path>.tmp" and renames it on
//                                    finish(): no partial file looks complete.
//   a token-kind plot                the share of return / state / action
//                                    tokens a policy keeps over an episode's
//                                    steps, one panel per layer, as PNG.
//
// Why 2D and not MuJoCo's own renderer: mjr_* needs an OpenGL context (EGL or
// OSMesa) that headless machines often lack or give only through a software
// rasteriser; Hopper and Walker2d are planar, so a side view loses nothing.
//
// Drawing uses OpenCV and the MuJoCo header; both stay in render.cpp (a
// firewall). Frames are packed RGB, [H, W, 3] uint8, row-major.
#pragma once

#include "rl/rollout.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace namm {

class MujocoEnv;

/// Frame geometry of the side view.
struct RenderOptions {
  int width = 960;                 ///< pixels, even (H.264 yuv420p).
  int height = 540;                ///< pixels, even.
  double pixels_per_metre = 200.0;  ///< scale of the drawing.
  double ground_fraction = 0.88;   ///< height of the ground line, as a share of the frame from the top.
  double fps = 30.0;               ///< video frame rate.
  int steps_per_frame = 2;         ///< one video frame every this many env steps (env dt 0.008 s: 2 -> half speed at 30 fps).
  int hold_last_frames = 15;       ///< the last frame repeats this often so the end stays readable.

  /// Throws std::invalid_argument naming the first bad field and its value.
  void validate() const;
};

/// One geom as the side view needs it (world frame, metres).
struct SceneGeom {
  int type = 0;                ///< mjtGeom: 0 plane, 2 sphere, 3 capsule, 5 cylinder, 6 box (others drawn as spheres).
  double size[3] = {0, 0, 0};  ///< MuJoCo geom_size.
  double pos[3] = {0, 0, 0};   ///< geom_xpos.
  double mat[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};  ///< geom_xmat, row-major.
  std::string body;            ///< name of the geom's body ("" for the world).
};

/// Everything needed to draw one instant of the robot.
struct SceneSnapshot {
  std::vector<SceneGeom> geoms;        ///< every geom, in model order.
  std::vector<double> joint_points;    ///< [2 * J] (x, z) of each non-root body frame (drawn as joints).
  double torso_x = 0.0;                ///< the camera follows this.
  double torso_z = 0.0;
};

/// Copies the geometry of env's current state (no drawing).
SceneSnapshot snapshot_scene(const MujocoEnv& env);

/// Text of the heads-up display; empty fields are left out.
struct HudInfo {
  std::string env;         ///< "hopper"
  std::string policy;      ///< "namm", "full", "window 20", ...
  int episode = -1;        ///< < 0: not shown.
  int64_t step = -1;       ///< 0-based env step just taken; < 0: not shown.
  double return_so_far = 0.0;
  bool show_return = false;
  double kv_tokens = -1.0;  ///< mean cached tokens per head; < 0: not shown.
  double kv_full = -1.0;    ///< tokens a full cache would hold per head.
  std::string note;         ///< one extra line ("fell", "window: 59 tokens re-encoded").
};

/// Draws snapshot with hud into a packed RGB frame: [height, width, 3].
std::vector<uint8_t> draw_scene(const SceneSnapshot& snapshot, const HudInfo& hud, const RenderOptions& options);

/// Records an episode through RolloutOptions::on_step and writes it as a video.
///
///   EpisodeRecorder recorder;
///   rollout_options.on_step = recorder.hook(0);     // records episode 0 only
///   RolloutReport report = run_rollouts(...);
///   recorder.write_video("out.mp4", report, 0);
///
/// The return shown is rebuilt from the env's reward terms (forward velocity,
/// healthy reward, control cost) of the recorded x positions and actions,
/// anchored on the episode's final return (the first step's reward needs the
/// reset x, which the hook never sees), so it ends exactly at the episode's
/// return. The KV shown comes from the episode's token-kind records (cached
/// mode) or, for a window rollout, the tokens the window re-encodes.
class EpisodeRecorder {
 public:
  /// policy_label: the HUD's memory label; empty = made from the report
  /// ("namm", "h2o 25%", "window 20").
  explicit EpisodeRecorder(RenderOptions options = {}, std::string policy_label = "");
  ~EpisodeRecorder();
  EpisodeRecorder(const EpisodeRecorder&) = delete;
  EpisodeRecorder& operator=(const EpisodeRecorder&) = delete;

  /// A step hook that records the steps of episode `episode` only (-1: every
  /// episode, each kept apart). The recorder must outlive the rollout; the
  /// hook is not thread-safe (one rollout at a time).
  RolloutStepHook hook(int episode = 0);

  /// Episodes recorded so far (their indices, in order).
  std::vector<int> recorded_episodes() const;
  /// Steps recorded for episode (0 if none).
  int64_t recorded_steps(int episode) const;
  /// Video frames an episode of `steps` steps gives: ceil(steps / steps_per_frame) + hold_last_frames.
  int64_t frames_for(int64_t steps) const;
  /// Return so far after each recorded step of episode, rebuilt as above: [steps];
  /// the last value is result's return. Throws like write_video.
  std::vector<double> returns_so_far(const EpisodeResult& result) const;

  /// Encodes the recorded steps of report's episode `episode` (H.264 mp4 at
  /// options.fps, one frame every steps_per_frame steps and the last step,
  /// then the last frame held). Throws std::runtime_error naming path when
  /// the report has no such episode, nothing was recorded for it, the step
  /// counts differ, or the encoder fails (no file is left then).
  void write_video(const std::string& path, const RolloutReport& report, int episode = 0) const;

  const RenderOptions& options() const { return options_; }

 private:
  struct Recording;
  RenderOptions options_;
  std::string policy_label_;
  std::vector<std::unique_ptr<Recording>> recordings_;
  const Recording* find(int episode) const;
  const Recording& recording_of(const EpisodeResult& result, const std::string& what) const;
};

/// Size and labels of the token-kind plot.
struct KindsPlotOptions {
  int width = 960;          ///< pixels.
  int panel_height = 230;   ///< pixels per layer panel.
  int header_height = 90;   ///< title, subtitle and legend.
  int footer_height = 50;   ///< x-axis label.
  std::string title;        ///< first line of the title; empty = "Token kinds kept".
};

/// The plot's size for `layers` panels: {width, height}.
std::pair<int, int> kinds_plot_size(int64_t layers, const KindsPlotOptions& options = {});

/// Writes a PNG (atomically) of the share of each token kind kept over an
/// episode: per layer panel, for kind k in {return, state, action}, the line
/// kept_k / (heads * tokens of kind k seen so far) against the step, plus the
/// all-kinds share as a grey dashed line. steps: an episode's token-kind
/// records [S] (EpisodeResult::token_kinds), each with [L] layers.
/// Throws std::invalid_argument for no steps, layers that differ between steps
/// or heads < 1, std::runtime_error naming path when it cannot be written.
void write_kinds_plot(const std::string& path, const std::vector<StepTokenKinds>& steps, int64_t heads,
                      const KindsPlotOptions& options = {});

}  // namespace namm
