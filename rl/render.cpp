// render: see render.h
#include "rl/render.h"

#include "core/atomic_file.h"
#include "rl/mujoco_env.h"
#include "vision/video_encoder.h"

#include <mujoco/mujoco.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string_view>

namespace namm {
namespace {

// colours are RGB throughout: frames go to the encoder as RGB, and the plot is
// converted to OpenCV's BGR only when it is encoded
const cv::Scalar kSky(234, 241, 250);
const cv::Scalar kSkyGrid(214, 224, 238);
const cv::Scalar kGround(196, 186, 160);
const cv::Scalar kGroundLine(70, 62, 50);
const cv::Scalar kInk(25, 25, 30);
const cv::Scalar kOutline(35, 35, 45);

// body name without the Walker2d "_left" suffix
std::string base_body(const std::string& body) {
  const std::string suffix = "_left";
  if (body.size() > suffix.size() && body.compare(body.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return body.substr(0, body.size() - suffix.size());
  }
  return body;
}

bool is_left(const std::string& body) { return base_body(body) != body; }

// one colour per limb so the segments read apart; the far (left) leg paler
cv::Scalar body_colour(const std::string& body) {
  const std::string base = base_body(body);
  cv::Scalar c(130, 130, 140);
  if (base == "torso") c = cv::Scalar(55, 95, 185);
  if (base == "thigh") c = cv::Scalar(235, 140, 40);
  if (base == "leg") c = cv::Scalar(55, 160, 85);
  if (base == "foot") c = cv::Scalar(195, 55, 60);
  if (is_left(body)) c = 0.5 * c + cv::Scalar(0.5 * 255, 0.5 * 255, 0.5 * 255);
  return c;
}

// world (x, z) in metres to pixels
struct View {
  double scale = 200.0;
  double cx = 0.0;       // world x at the frame's centre
  double z0 = 0.0;       // world z at the ground line
  double ground_y = 0;   // pixel row of z0
  double half_width = 0;

  cv::Point2d to_px(double x, double z) const { return {half_width + (x - cx) * scale, ground_y - (z - z0) * scale}; }
  // OpenCV draws at integer coordinates; 4 fractional bits keep lines smooth
  cv::Point fixed(double x, double z) const {
    const cv::Point2d p = to_px(x, z);
    return {static_cast<int>(std::lround(p.x * 16)), static_cast<int>(std::lround(p.y * 16))};
  }
};
constexpr int kShift = 4;

void draw_ground(cv::Mat& img, const View& view, double ground_z) {
  const int w = img.cols, h = img.rows;
  const int gy = static_cast<int>(std::lround(view.ground_y));
  // faint vertical lines every metre in the sky: motion stays visible even
  // when the eye is on the robot
  const double left = view.cx - view.half_width / view.scale, right = view.cx + view.half_width / view.scale;
  for (double x = std::floor(left); x <= right + 1; x += 1.0) {
    const int px = static_cast<int>(std::lround(view.to_px(x, ground_z).x));
    cv::line(img, {px, 0}, {px, gy}, kSkyGrid, 1, cv::LINE_AA);
  }
  cv::rectangle(img, cv::Point(0, gy), cv::Point(w - 1, h - 1), kGround, cv::FILLED);
  cv::line(img, {0, gy}, {w - 1, gy}, kGroundLine, 2, cv::LINE_AA);
  // ticks every 0.5 m, labelled every metre
  for (double x = std::floor(left * 2) / 2; x <= right + 0.5; x += 0.5) {
    const int px = static_cast<int>(std::lround(view.to_px(x, ground_z).x));
    const bool major = std::fabs(x - std::round(x)) < 1e-9;
    cv::line(img, {px, gy}, {px, gy + (major ? 12 : 6)}, kGroundLine, major ? 2 : 1, cv::LINE_AA);
    if (major) {
      char label[32];
      std::snprintf(label, sizeof label, "%.0f m", x);
      int base = 0;
      const cv::Size size = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, 0.42, 1, &base);
      cv::putText(img, label, {px - size.width / 2, gy + 14 + size.height + 2}, cv::FONT_HERSHEY_SIMPLEX, 0.42,
                  kGroundLine, 1, cv::LINE_AA);
    }
  }
}

// a segment with round ends: outline first, then the fill
void draw_capsule(cv::Mat& img, const View& view, const double a[2], const double b[2], double radius,
                  const cv::Scalar& colour) {
  const int thick = std::max(2, static_cast<int>(std::lround(2 * radius * view.scale)));
  cv::line(img, view.fixed(a[0], a[1]), view.fixed(b[0], b[1]), kOutline, thick + 3, cv::LINE_AA, kShift);
  cv::line(img, view.fixed(a[0], a[1]), view.fixed(b[0], b[1]), colour, thick, cv::LINE_AA, kShift);
}

void draw_polygon(cv::Mat& img, const View& view, const std::vector<cv::Point2d>& world, const cv::Scalar& colour) {
  std::vector<cv::Point> px;
  for (const cv::Point2d& p : world) px.push_back(view.fixed(p.x, p.y));
  std::vector<cv::Point> hull;
  cv::convexHull(px, hull);
  cv::fillConvexPoly(img, hull, colour, cv::LINE_AA, kShift);
  cv::polylines(img, std::vector<std::vector<cv::Point>>{hull}, true, kOutline, 2, cv::LINE_AA, kShift);
}

void draw_geom(cv::Mat& img, const View& view, const SceneGeom& g) {
  const cv::Scalar colour = body_colour(g.body);
  const double* m = g.mat;  // row-major: column j is local axis j in the world
  switch (g.type) {
    case mjGEOM_CAPSULE:
    case mjGEOM_CYLINDER: {
      const double r = g.size[0], hl = g.size[1];
      const double a[2] = {g.pos[0] - hl * m[2], g.pos[2] - hl * m[8]};
      const double b[2] = {g.pos[0] + hl * m[2], g.pos[2] + hl * m[8]};
      if (g.type == mjGEOM_CAPSULE) {
        draw_capsule(img, view, a, b, r, colour);
      } else {
        // flat ends: a rectangle around the projected axis (a disc when seen end-on)
        double dx = b[0] - a[0], dz = b[1] - a[1];
        const double len = std::hypot(dx, dz);
        if (len < 1e-9) {
          dx = 1;
          dz = 0;
        } else {
          dx /= len;
          dz /= len;
        }
        const double nx = -dz * r, nz = dx * r;
        draw_polygon(img, view,
                     {{a[0] + nx, a[1] + nz}, {b[0] + nx, b[1] + nz}, {b[0] - nx, b[1] - nz}, {a[0] - nx, a[1] - nz}},
                     colour);
      }
      break;
    }
    case mjGEOM_BOX: {
      std::vector<cv::Point2d> corners;
      for (int i = 0; i < 8; ++i) {
        const double l[3] = {(i & 1 ? 1 : -1) * g.size[0], (i & 2 ? 1 : -1) * g.size[1], (i & 4 ? 1 : -1) * g.size[2]};
        corners.emplace_back(g.pos[0] + m[0] * l[0] + m[1] * l[1] + m[2] * l[2],
                             g.pos[2] + m[6] * l[0] + m[7] * l[1] + m[8] * l[2]);
      }
      draw_polygon(img, view, corners, colour);
      break;
    }
    default: {  // sphere, ellipsoid, mesh...: a disc of the largest size
      const double r = std::max({g.size[0], g.size[1], g.size[2], 0.02});
      const int rad = std::max(2, static_cast<int>(std::lround(r * view.scale * 16)));
      cv::circle(img, view.fixed(g.pos[0], g.pos[2]), rad + 2 * 16, kOutline, cv::FILLED, cv::LINE_AA, kShift);
      cv::circle(img, view.fixed(g.pos[0], g.pos[2]), rad, colour, cv::FILLED, cv::LINE_AA, kShift);
    }
  }
}

void draw_hud(cv::Mat& img, const HudInfo& hud) {
  std::vector<std::string> lines;
  char buf[256];
  std::string first;
  if (!hud.env.empty()) first = hud.env;
  if (!hud.policy.empty()) first += (first.empty() ? "" : "   ") + std::string("memory: ") + hud.policy;
  if (hud.episode >= 0) first += (first.empty() ? "" : "   ") + std::string("episode ") + std::to_string(hud.episode);
  if (!first.empty()) lines.push_back(first);
  std::string second;
  if (hud.step >= 0) second = "step " + std::to_string(hud.step + 1);
  if (hud.show_return) {
    std::snprintf(buf, sizeof buf, "return %.1f", hud.return_so_far);
    second += (second.empty() ? "" : "   ") + std::string(buf);
  }
  if (!second.empty()) lines.push_back(second);
  if (hud.kv_tokens >= 0) {
    if (hud.kv_full > 0) {
      std::snprintf(buf, sizeof buf, "KV kept %.0f of %.0f tokens/head (%.0f%%)", hud.kv_tokens, hud.kv_full,
                    100.0 * hud.kv_tokens / hud.kv_full);
    } else {
      std::snprintf(buf, sizeof buf, "KV kept %.0f tokens/head", hud.kv_tokens);
    }
    lines.emplace_back(buf);
  }
  if (!hud.note.empty()) lines.push_back(hud.note);
  if (lines.empty()) return;

  // small enough that the box stays left of the robot, which the camera keeps in the middle
  const double font_scale = std::clamp(img.rows / 1000.0, 0.35, 0.7);
  const int line_height = static_cast<int>(std::lround(28 * font_scale / 0.55 * 0.8));
  int width = 0, base = 0;
  for (const std::string& line : lines) {
    width = std::max(width, cv::getTextSize(line, cv::FONT_HERSHEY_SIMPLEX, font_scale, 1, &base).width);
  }
  const cv::Rect box(8, 8, std::min(img.cols - 16, width + 16), line_height * static_cast<int>(lines.size()) + 10);
  cv::Mat roi = img(box);
  cv::Mat white(roi.size(), roi.type(), cv::Scalar(255, 255, 255));
  cv::addWeighted(roi, 0.25, white, 0.75, 0.0, roi);
  cv::rectangle(img, box, cv::Scalar(150, 150, 160), 1);
  for (size_t i = 0; i < lines.size(); ++i) {
    const int y = box.y + 5 + line_height * static_cast<int>(i + 1) - line_height / 4;
    cv::putText(img, lines[i], {box.x + 8, y}, cv::FONT_HERSHEY_SIMPLEX, font_scale, kInk, i == 0 ? 2 : 1,
                cv::LINE_AA);
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

void RenderOptions::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("render: " + what); };
  if (width < 16 || width % 2 != 0) bad("width must be even and >= 16, got " + std::to_string(width));
  if (height < 16 || height % 2 != 0) bad("height must be even and >= 16, got " + std::to_string(height));
  if (!(pixels_per_metre > 0)) bad("pixels_per_metre must be > 0, got " + std::to_string(pixels_per_metre));
  if (!(ground_fraction > 0.1 && ground_fraction < 1.0)) {
    bad("ground_fraction must be in (0.1, 1), got " + std::to_string(ground_fraction));
  }
  if (!(fps > 0)) bad("fps must be > 0, got " + std::to_string(fps));
  if (steps_per_frame < 1) bad("steps_per_frame must be >= 1, got " + std::to_string(steps_per_frame));
  if (hold_last_frames < 0) bad("hold_last_frames must be >= 0, got " + std::to_string(hold_last_frames));
}

SceneSnapshot snapshot_scene(const MujocoEnv& env) {
  const mjModel* m = env.model();
  const mjData* d = env.data();
  SceneSnapshot s;
  s.geoms.reserve(static_cast<size_t>(m->ngeom));
  for (int g = 0; g < m->ngeom; ++g) {
    SceneGeom geom;
    geom.type = m->geom_type[g];
    std::copy(m->geom_size + 3 * g, m->geom_size + 3 * g + 3, geom.size);
    std::copy(d->geom_xpos + 3 * g, d->geom_xpos + 3 * g + 3, geom.pos);
    std::copy(d->geom_xmat + 9 * g, d->geom_xmat + 9 * g + 9, geom.mat);
    const char* body = mj_id2name(m, mjOBJ_BODY, m->geom_bodyid[g]);
    geom.body = m->geom_bodyid[g] == 0 || body == nullptr ? "" : body;
    s.geoms.push_back(std::move(geom));
  }
  int torso = mj_name2id(m, mjOBJ_BODY, "torso");
  if (torso < 0) torso = m->nbody > 1 ? 1 : 0;
  s.torso_x = d->xpos[3 * torso];
  s.torso_z = d->xpos[3 * torso + 2];
  // every body hanging off another body sits on its joint (hip, knee, ankle)
  for (int b = 1; b < m->nbody; ++b) {
    if (m->body_parentid[b] == 0) continue;
    s.joint_points.push_back(d->xpos[3 * b]);
    s.joint_points.push_back(d->xpos[3 * b + 2]);
  }
  return s;
}

std::vector<uint8_t> draw_scene(const SceneSnapshot& snapshot, const HudInfo& hud, const RenderOptions& options) {
  options.validate();
  cv::Mat img(options.height, options.width, CV_8UC3, kSky);
  double ground_z = 0.0;
  for (const SceneGeom& g : snapshot.geoms) {
    if (g.type == mjGEOM_PLANE) ground_z = g.pos[2];
  }
  View view;
  view.scale = options.pixels_per_metre;
  view.cx = snapshot.torso_x;
  view.half_width = options.width / 2.0;
  view.ground_y = options.height * options.ground_fraction;
  view.z0 = ground_z;
  // follow the torso upward only when it would leave the frame (keeps the
  // ground still in ordinary hopping)
  const double visible_above = view.ground_y / view.scale;
  const double headroom = 0.45;
  if (snapshot.torso_z - ground_z + headroom > visible_above) {
    const double lift = snapshot.torso_z - ground_z + headroom - visible_above;
    view.ground_y += lift * view.scale;
  }
  draw_ground(img, view, ground_z);

  // far (left) limbs first, so the near leg is drawn over them
  std::vector<const SceneGeom*> order;
  for (const SceneGeom& g : snapshot.geoms) {
    if (g.type != mjGEOM_PLANE) order.push_back(&g);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const SceneGeom* a, const SceneGeom* b) { return is_left(a->body) && !is_left(b->body); });
  for (const SceneGeom* g : order) draw_geom(img, view, *g);
  for (size_t j = 0; j + 1 < snapshot.joint_points.size(); j += 2) {
    const cv::Point p = view.fixed(snapshot.joint_points[j], snapshot.joint_points[j + 1]);
    cv::circle(img, p, 5 * 16, kOutline, cv::FILLED, cv::LINE_AA, kShift);
    cv::circle(img, p, 2 * 16, cv::Scalar(250, 250, 250), cv::FILLED, cv::LINE_AA, kShift);
  }
  draw_hud(img, hud);
  return std::vector<uint8_t>(img.data, img.data + img.total() * img.elemSize());
}

// ---------------------------------------------------------------------------
// EpisodeRecorder

struct EpisodeRecorder::Recording {
  int episode = 0;
  std::string env;
  double dt = 0, forward_weight = 0, healthy_reward = 0, ctrl_weight = 0;
  bool terminate_when_unhealthy = true;
  std::vector<SceneSnapshot> snapshots;  // [S]
  std::vector<double> x;                 // [S] x position after each step
  std::vector<double> action_sq;         // [S]
  std::vector<char> healthy;             // [S]
};

EpisodeRecorder::EpisodeRecorder(RenderOptions options, std::string policy_label)
    : options_(options), policy_label_(std::move(policy_label)) {
  options_.validate();
}

EpisodeRecorder::~EpisodeRecorder() = default;

RolloutStepHook EpisodeRecorder::hook(int episode) {
  return [this, episode](const MujocoEnv& env, int e, int64_t step, const std::vector<double>& action) {
    if (episode >= 0 && e != episode) return;
    Recording* rec = nullptr;
    for (auto& r : recordings_) {
      if (r->episode == e) rec = r.get();
    }
    if (rec == nullptr || step == 0) {
      // a new episode (or the same index run again): start afresh
      if (rec == nullptr) {
        recordings_.push_back(std::make_unique<Recording>());
        rec = recordings_.back().get();
      }
      *rec = Recording();
      rec->episode = e;
      rec->env = env.name();
      rec->dt = env.dt();
      rec->forward_weight = env.options().forward_reward_weight;
      rec->healthy_reward = env.options().healthy_reward;
      rec->ctrl_weight = env.options().ctrl_cost_weight;
      rec->terminate_when_unhealthy = env.options().terminate_when_unhealthy;
    }
    double sq = 0.0;
    for (double a : action) sq += a * a;
    rec->snapshots.push_back(snapshot_scene(env));
    rec->x.push_back(env.qpos()[0]);
    rec->action_sq.push_back(sq);
    rec->healthy.push_back(env.is_healthy() ? 1 : 0);
  };
}

std::vector<int> EpisodeRecorder::recorded_episodes() const {
  std::vector<int> out;
  for (const auto& r : recordings_) out.push_back(r->episode);
  return out;
}

const EpisodeRecorder::Recording* EpisodeRecorder::find(int episode) const {
  for (const auto& r : recordings_) {
    if (r->episode == episode) return r.get();
  }
  return nullptr;
}

int64_t EpisodeRecorder::recorded_steps(int episode) const {
  const Recording* r = find(episode);
  return r ? static_cast<int64_t>(r->x.size()) : 0;
}

int64_t EpisodeRecorder::frames_for(int64_t steps) const {
  return steps <= 0 ? 0 : ceil_div(steps, options_.steps_per_frame) + options_.hold_last_frames;
}

const EpisodeRecorder::Recording& EpisodeRecorder::recording_of(const EpisodeResult& result,
                                                                const std::string& what) const {
  const Recording* rec = find(result.episode);
  if (rec == nullptr || rec->x.empty()) {
    throw std::runtime_error(what + ": no steps were recorded for episode " + std::to_string(result.episode) +
                             " (attach EpisodeRecorder::hook to the rollout)");
  }
  if (static_cast<int64_t>(rec->x.size()) != result.steps) {
    throw std::runtime_error(what + ": episode " + std::to_string(result.episode) + " has " +
                             std::to_string(result.steps) + " steps but " + std::to_string(rec->x.size()) +
                             " were recorded");
  }
  return *rec;
}

std::vector<double> EpisodeRecorder::returns_so_far(const EpisodeResult& result) const {
  const Recording& rec = recording_of(result, "render");
  const size_t n = rec.x.size();
  std::vector<double> out(n);
  out[n - 1] = result.episode_return;
  for (size_t t = n - 1; t >= 1; --t) {
    const double healthy = (rec.healthy[t] || rec.terminate_when_unhealthy) ? rec.healthy_reward : 0.0;
    const double reward = rec.forward_weight * (rec.x[t] - rec.x[t - 1]) / rec.dt + healthy - rec.ctrl_weight * rec.action_sq[t];
    out[t - 1] = out[t] - reward;
  }
  return out;
}

void EpisodeRecorder::write_video(const std::string& path, const RolloutReport& report, int episode) const {
  const EpisodeResult* result = nullptr;
  for (const EpisodeResult& e : report.episodes) {
    if (e.episode == episode) result = &e;
  }
  if (result == nullptr) {
    throw std::runtime_error(path + ": the rollout has no episode " + std::to_string(episode));
  }
  const Recording& rec = recording_of(*result, path);
  const std::vector<double> returns = returns_so_far(*result);
  std::string label = policy_label_;
  if (label.empty()) {
    label = report.window > 0 ? "window " + std::to_string(report.window) + " steps (no cache kept)" : report.policy;
    if (report.window <= 0 && report.budget != "-" && !report.budget.empty()) label += " budget " + report.budget;
  }
  const bool kinds = result->token_kinds.size() == rec.x.size();
  const double per_head = static_cast<double>(std::max<int64_t>(1, report.layers * report.heads));

  VideoEncoder encoder(path, options_.width, options_.height, options_.fps);
  const int64_t steps = static_cast<int64_t>(rec.x.size());
  std::vector<uint8_t> frame;
  for (int64_t t = 0; t < steps; ++t) {
    const bool last = t == steps - 1;
    if ((t + 1) % options_.steps_per_frame != 0 && !last) continue;
    HudInfo hud;
    hud.env = report.env.empty() ? rec.env : report.env;
    hud.policy = label;
    hud.episode = episode;
    hud.step = t;
    hud.return_so_far = returns[static_cast<size_t>(t)];
    hud.show_return = true;
    const int64_t seen = 3 * t + 2;  // tokens fed after step t: R, s per step and a per earlier step
    if (kinds) {
      const StepTokenKinds& k = result->token_kinds[static_cast<size_t>(t)];
      double total = 0.0;
      for (const auto& layer : k.kept) total += static_cast<double>(layer[0] + layer[1] + layer[2]);
      hud.kv_tokens = total / per_head;
      hud.kv_full = static_cast<double>(k.tokens_seen);
    } else if (report.window > 0) {
      const int64_t len = std::min<int64_t>(t + 1, report.window);
      hud.kv_tokens = static_cast<double>(3 * len - 1);
      hud.kv_full = static_cast<double>(seen);
      hud.note = "window: last " + std::to_string(len) + " steps re-encoded per step";
    }
    if (last) {
      char note[128];
      if (result->terminated) {
        std::snprintf(note, sizeof note, "fell after %lld steps: return %.1f, D4RL score %.1f",
                      static_cast<long long>(steps), result->episode_return, result->normalized_score);
      } else {
        std::snprintf(note, sizeof note, "episode over after %lld steps: return %.1f, D4RL score %.1f",
                      static_cast<long long>(steps), result->episode_return, result->normalized_score);
      }
      hud.note = note;
    }
    frame = draw_scene(rec.snapshots[static_cast<size_t>(t)], hud, options_);
    encoder.write_frame(frame);
  }
  for (int i = 0; i < options_.hold_last_frames; ++i) encoder.write_frame(frame);
  encoder.finish();
}

// ---------------------------------------------------------------------------
// token-kind plot

std::pair<int, int> kinds_plot_size(int64_t layers, const KindsPlotOptions& options) {
  return {options.width, options.header_height + options.footer_height +
                             static_cast<int>(std::max<int64_t>(1, layers)) * options.panel_height};
}

namespace {

// 1, 2, 5 x 10^k step giving about `target` intervals over range
double nice_step(double range, int target) {
  const double raw = range / std::max(1, target);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10 * p;
}

void text(cv::Mat& img, const std::string& s, cv::Point at, double scale, const cv::Scalar& colour, int thickness = 1,
          int align = 0) {  // align: 0 left, 1 centre, 2 right
  int base = 0;
  const cv::Size size = cv::getTextSize(s, cv::FONT_HERSHEY_SIMPLEX, scale, thickness, &base);
  if (align == 1) at.x -= size.width / 2;
  if (align == 2) at.x -= size.width;
  cv::putText(img, s, at, cv::FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv::LINE_AA);
}

}  // namespace

void write_kinds_plot(const std::string& path, const std::vector<StepTokenKinds>& steps, int64_t heads,
                      const KindsPlotOptions& options) {
  if (steps.empty()) throw std::invalid_argument("kinds plot " + path + ": no steps recorded");
  if (heads < 1) throw std::invalid_argument("kinds plot " + path + ": heads must be >= 1, got " + std::to_string(heads));
  const size_t layers = steps.front().kept.size();
  if (layers == 0) throw std::invalid_argument("kinds plot " + path + ": the records hold no layers");
  for (size_t s = 0; s < steps.size(); ++s) {
    if (steps[s].kept.size() != layers) {
      throw std::invalid_argument("kinds plot " + path + ": step " + std::to_string(s) + " has " +
                                  std::to_string(steps[s].kept.size()) + " layers, step 0 has " + std::to_string(layers));
    }
  }
  if (options.width < 200 || options.panel_height < 60 || options.header_height < 0 || options.footer_height < 0) {
    throw std::invalid_argument("kinds plot " + path + ": too small (width " + std::to_string(options.width) +
                                ", panel height " + std::to_string(options.panel_height) + ")");
  }
  const auto [width, height] = kinds_plot_size(static_cast<int64_t>(layers), options);
  cv::Mat img(height, width, CV_8UC3, cv::Scalar(255, 255, 255));

  // share[l][k][s]: kind k kept / kind k seen (over heads); k = 3: all kinds. NaN: none seen yet
  const size_t n = steps.size();
  std::vector<std::array<std::vector<double>, 4>> share(layers);
  double y_max = 0.0, y_min = 1.0;
  for (size_t l = 0; l < layers; ++l) {
    for (auto& series : share[l]) series.assign(n, std::nan(""));
    for (size_t s = 0; s < n; ++s) {
      const int64_t seen_total = steps[s].tokens_seen;
      int64_t kept_total = 0;
      for (int k = 0; k < 3; ++k) {
        const int64_t seen = std::max<int64_t>(0, (seen_total - k + 2) / 3);
        const int64_t kept = steps[s].kept[l][static_cast<size_t>(k)];
        kept_total += kept;
        if (seen > 0) share[l][static_cast<size_t>(k)][s] = static_cast<double>(kept) / static_cast<double>(heads * seen);
      }
      if (seen_total > 0) share[l][3][s] = static_cast<double>(kept_total) / static_cast<double>(heads * seen_total);
      for (const auto& series : share[l]) {
        if (std::isnan(series[s])) continue;
        y_max = std::max(y_max, series[s]);
        y_min = std::min(y_min, series[s]);
      }
    }
  }
  // y axis: 0 to a round value above the data (at most 100%), so small shares stay readable
  y_max = std::min(1.0, std::max(0.1, std::ceil(y_max * 1.08 * 10.0 - 1e-9) / 10.0));
  // a policy that keeps nearly everything would draw flat lines at the top:
  // zoom in (the subtitle says so) when every value is high
  double y_lo = 0.0;
  if (y_min > 0.6) y_lo = std::min(y_max - 0.1, std::floor((y_min - 0.01) * 20.0) / 20.0);
  const double y_span = y_max - y_lo;

  const cv::Scalar colours[4] = {cv::Scalar(31, 119, 180), cv::Scalar(255, 127, 14), cv::Scalar(44, 160, 44),
                                 cv::Scalar(120, 120, 120)};
  const char* names[4] = {"return tokens", "state tokens", "action tokens", "all tokens"};
  const cv::Scalar grey(110, 110, 110), light(228, 228, 228);

  // header: title, subtitle, then the legend on a line of its own; the
  // lines are drawn widest first so coinciding series stay visible as nested stripes
  const int widths[4] = {5, 3, 2, 1};
  text(img, options.title.empty() ? "Token kinds kept" : options.title, {20, 28}, 0.7, kInk, 2);
  text(img, std::string("share of each kind's tokens so far still in the KV cache after each step (mean over heads)") +
                (y_lo > 0 ? "; y axis from " + std::to_string(static_cast<int>(std::lround(100 * y_lo))) + "%" : ""),
       {20, 50}, 0.45, grey);
  int lx = 20;
  for (int k = 0; k < 4; ++k) {
    const int ly = options.header_height - 10;
    if (k == 3) {
      for (int d = 0; d < 26; d += 8) cv::line(img, {lx + d, ly - 4}, {lx + std::min(d + 5, 26), ly - 4}, colours[k], 2, cv::LINE_AA);
    } else {
      cv::line(img, {lx, ly - 4}, {lx + 26, ly - 4}, colours[k], std::max(2, widths[k] - 1), cv::LINE_AA);
    }
    text(img, names[k], {lx + 36, ly}, 0.45, kInk);
    int base = 0;
    lx += 36 + cv::getTextSize(names[k], cv::FONT_HERSHEY_SIMPLEX, 0.45, 1, &base).width + 30;
  }

  const int left = 78, right = 24, top_pad = 26, bottom_pad = 26;
  const double x_max = static_cast<double>(std::max<size_t>(1, n - 1));
  const double x_step = nice_step(x_max, 8);
  const double y_step = nice_step(y_span, 5);
  for (size_t l = 0; l < layers; ++l) {
    const int y0 = options.header_height + static_cast<int>(l) * options.panel_height;
    const cv::Rect area(left, y0 + top_pad, width - left - right, options.panel_height - top_pad - bottom_pad);
    auto px = [&](double step, double value) {
      return cv::Point(static_cast<int>(std::lround((area.x + step / x_max * area.width) * 16)),
                       static_cast<int>(std::lround((area.y + area.height - (value - y_lo) / y_span * area.height) * 16)));
    };
    text(img, "layer " + std::to_string(l), {area.x + 6, y0 + top_pad - 8}, 0.5, kInk, 1);
    for (double v = y_lo; v <= y_max + 1e-9; v += y_step) {
      const cv::Point p = px(0, v);
      const int y = p.y / 16;
      cv::line(img, {area.x, y}, {area.x + area.width, y}, light, 1);
      char label[16];
      std::snprintf(label, sizeof label, "%.0f%%", 100 * v);
      text(img, label, {area.x - 8, y + 5}, 0.42, grey, 1, 2);
    }
    for (double s = 0; s <= x_max + 1e-9; s += x_step) {
      const int x = px(s, 0).x / 16;
      cv::line(img, {x, area.y + area.height}, {x, area.y + area.height + 5}, grey, 1);
      char label[16];
      std::snprintf(label, sizeof label, "%.0f", s);
      text(img, label, {x, area.y + area.height + 19}, 0.42, grey, 1, 1);
    }
    cv::rectangle(img, area, grey, 1);
    for (int k : {0, 1, 2, 3}) {
      const std::vector<double>& series = share[l][static_cast<size_t>(k)];
      bool have = false;
      cv::Point previous;
      for (size_t s = 0; s < n; ++s) {
        if (std::isnan(series[s])) {
          have = false;
          continue;
        }
        const cv::Point p = px(static_cast<double>(s), series[s]);
        // the all-kinds line dashed: draw every other stretch of ~8 steps' worth
        const bool dash_on = k != 3 || (static_cast<int>(static_cast<double>(s) / std::max(1.0, x_max / 120)) % 2 == 0);
        if (have && dash_on) cv::line(img, previous, p, colours[k], widths[k], cv::LINE_AA, kShift);
        if (n == 1) cv::circle(img, p, 3 * 16, colours[k], cv::FILLED, cv::LINE_AA, kShift);
        previous = p;
        have = true;
      }
    }
  }
  // axis labels
  text(img, "episode step", {left + (width - left - right) / 2, height - 14}, 0.5, kInk, 1, 1);
  {
    const std::string label = "kept / seen";
    int base = 0;
    const cv::Size size = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, 0.5, 1, &base);
    cv::Mat vertical(size.height + base + 4, size.width + 4, CV_8UC3, cv::Scalar(255, 255, 255));
    cv::putText(vertical, label, {2, size.height + 1}, cv::FONT_HERSHEY_SIMPLEX, 0.5, kInk, 1, cv::LINE_AA);
    cv::Mat turned;
    cv::rotate(vertical, turned, cv::ROTATE_90_COUNTERCLOCKWISE);
    const int y = options.header_height + (height - options.header_height - options.footer_height - turned.rows) / 2;
    if (y >= 0 && y + turned.rows <= height && turned.cols + 6 <= left) turned.copyTo(img(cv::Rect(6, y, turned.cols, turned.rows)));
  }

  cv::Mat bgr;
  cv::cvtColor(img, bgr, cv::COLOR_RGB2BGR);
  std::vector<uchar> png;
  if (!cv::imencode(".png", bgr, png)) throw std::runtime_error(path + ": cannot encode the PNG");
  write_file_atomically(path, std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
}

}  // namespace namm
