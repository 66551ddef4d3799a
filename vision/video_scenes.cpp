// Scene plans are drawn from the seed first (answer, then layout, then
// timing), then rendered frame by frame with OpenCV's non-anti-aliased
// primitives (LINE_8) into RGB byte buffers. OpenCV's headers stay in this
// file; the rest of the tree sees byte vectors.
#include "vision/video_scenes.h"

#include "core/atomic_file.h"

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "core/seed_mix.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>

namespace namm {
namespace {

// ---------------------------------------------------------------------------
// randomness: std::mt19937_64's output is fixed by the standard; the bounded
// draw is written out because the standard distributions are not.

class SceneRng {
 public:
  explicit SceneRng(uint64_t seed) : engine_(seed) {}
  /// Uniform in [0, n), n >= 1 (rejection keeps it unbiased).
  int64_t below(int64_t n) {
    const uint64_t un = static_cast<uint64_t>(n);
    const uint64_t threshold = (0 - un) % un;
    uint64_t x = engine_();
    while (x < threshold) x = engine_();
    return static_cast<int64_t>(x % un);
  }
  /// Uniform in [lo, hi]; lo when hi < lo.
  int64_t range(int64_t lo, int64_t hi) { return hi <= lo ? lo : lo + below(hi - lo + 1); }

 private:
  std::mt19937_64 engine_;
};

// ---------------------------------------------------------------------------
// vocabulary: every word is in builtin_tokenizer() (checked by the tests)

struct Rgb {
  int r, g, b;
  cv::Scalar scalar() const { return cv::Scalar(r, g, b); }  // frames are RGB, not OpenCV's BGR
};

const std::vector<std::string> kColourWords = {"red", "green", "blue", "yellow", "white"};
const Rgb kColours[] = {{220, 40, 40}, {40, 190, 60}, {50, 100, 235}, {235, 215, 40}, {240, 240, 240}};
const std::vector<std::string> kShapeWords = {"coin", "star", "moon", "house", "tree"};
const std::vector<std::string> kCountWords = {"1", "2", "3", "4", "5"};
// move_direction: the walls' colours stand for the directions the vocabulary lacks
const std::vector<std::string> kWallWords = {"blue", "green", "red", "yellow"};
const std::vector<std::string> kDirectionMeanings = {"up", "down", "left", "right"};
const int kWallColour[] = {2, 1, 0, 3};  // index into kColours for up, down, left, right

const Rgb kGray = {128, 128, 128};
const Rgb kMover = {240, 240, 240};
const Rgb kLampOff = {95, 88, 70};
const Rgb kLampOn = {255, 240, 130};
const Rgb kLampStand = {70, 70, 78};
const Rgb kDot = {165, 165, 165};
const Rgb kBar = {115, 115, 150};

enum Kind { kAppearColour = 0, kFlashCount, kMoveDirection, kAppearShape, kColourChange, kNumKinds };

int kind_id(const std::string& kind) {
  const auto& kinds = scene_kinds();
  const auto it = std::find(kinds.begin(), kinds.end(), kind);
  if (it == kinds.end()) {
    std::string known;
    for (const std::string& k : kinds) known += (known.empty() ? "" : ", ") + k;
    throw std::invalid_argument("unknown scene kind '" + kind + "' (known: " + known + ")");
  }
  return static_cast<int>(it - kinds.begin());
}

// ---------------------------------------------------------------------------
// geometry without libm: unit vectors as literals so every platform rounds the same

// cos, sin of -90 + 36 i degrees (y grows downwards, so i = 0 points up)
const double kStarDirections[10][2] = {
    {0.0, -1.0}, {0.5877852522924731, -0.8090169943749475}, {0.9510565162951535, -0.3090169943749474},
    {0.9510565162951535, 0.3090169943749474}, {0.5877852522924731, 0.8090169943749475}, {0.0, 1.0},
    {-0.5877852522924731, 0.8090169943749475}, {-0.9510565162951535, 0.3090169943749474},
    {-0.9510565162951535, -0.3090169943749474}, {-0.5877852522924731, -0.8090169943749475}};

// cos, sin of 22.5 i degrees for i = 0..3; the rest by quarter turns
const double kQuarterDirections[4][2] = {
    {1.0, 0.0}, {0.9238795325112867, 0.3826834323650898}, {0.7071067811865476, 0.7071067811865476},
    {0.3826834323650898, 0.9238795325112867}};

cv::Point direction16(int64_t i, int length) {
  const int64_t k = ((i % 16) + 16) % 16;
  double x = kQuarterDirections[k % 4][0], y = kQuarterDirections[k % 4][1];
  for (int64_t q = 0; q < k / 4; ++q) {
    const double t = x;  // quarter turn: (x, y) -> (-y, x)
    x = -y;
    y = t;
  }
  return {static_cast<int>(std::lround(x * length)), static_cast<int>(std::lround(y * length))};
}

/// Marks a pictogram of radius r centred at c in mask (CV_8U, 255 = shape).
void draw_shape_mask(cv::Mat& mask, int shape, cv::Point c, int r) {
  const cv::Scalar on(255), off(0);
  switch (shape) {
    case 0:  // coin: a disc
      cv::circle(mask, c, r, on, cv::FILLED, cv::LINE_8);
      break;
    case 1: {  // star: five points, inner radius 0.45 r
      std::vector<cv::Point> points;
      for (int i = 0; i < 10; ++i) {
        const double radius = i % 2 == 0 ? r : 0.45 * r;
        points.emplace_back(c.x + static_cast<int>(std::lround(kStarDirections[i][0] * radius)),
                            c.y + static_cast<int>(std::lround(kStarDirections[i][1] * radius)));
      }
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{points}, on, cv::LINE_8);
      break;
    }
    case 2:  // moon: a disc with an offset disc taken out
      cv::circle(mask, c, r, on, cv::FILLED, cv::LINE_8);
      cv::circle(mask, {c.x + (9 * r) / 20, c.y - r / 4}, (4 * r) / 5, off, cv::FILLED, cv::LINE_8);
      break;
    case 3: {  // house: a roof on a square body
      const int eave = c.y - r / 8;
      std::vector<cv::Point> roof = {{c.x - r, eave}, {c.x, c.y - r}, {c.x + r, eave}};
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{roof}, on, cv::LINE_8);
      cv::rectangle(mask, cv::Point(c.x - (3 * r) / 4, eave), cv::Point(c.x + (3 * r) / 4, c.y + r), on,
                    cv::FILLED, cv::LINE_8);
      break;
    }
    default: {  // tree: a triangle crown on a trunk
      const int base = c.y + r / 2;
      std::vector<cv::Point> crown = {{c.x, c.y - r}, {c.x - (4 * r) / 5, base}, {c.x + (4 * r) / 5, base}};
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{crown}, on, cv::LINE_8);
      cv::rectangle(mask, cv::Point(c.x - std::max(1, r / 5), base), cv::Point(c.x + std::max(1, r / 5), c.y + r),
                    on, cv::FILLED, cv::LINE_8);
      break;
    }
  }
}

void paint_shape(cv::Mat& image, int shape, cv::Point c, int r, const Rgb& colour) {
  cv::Mat mask = cv::Mat::zeros(image.rows, image.cols, CV_8U);
  draw_shape_mask(mask, shape, c, r);
  image.setTo(colour.scalar(), mask);
}

// ---------------------------------------------------------------------------
// a scene plan: everything drawn from the seed, before any pixel is rendered

struct Span {
  int64_t begin = 0, end = 0;  // [begin, end) frames
};

struct Plan {
  int kind = 0;
  int size = 0;
  int64_t frames = 0;
  // answer and question
  int answer = 0;  // index into the kind's choices
  int shape = 0;   // the pictogram on screen
  int colour = 0;  // index into kColours (appear_shape's shape colour)
  // background: 0 plain, 1 vertical gradient, 2 drifting blocky texture
  int background = 0;
  Rgb base{0, 0, 0}, ramp{0, 0, 0};
  int cell = 8, cells_x = 1, cells_y = 1;
  std::vector<int> texture;  // [cells_y, cells_x] gray offsets
  int drift_period = 2, drift_sign = 1;
  // distractors that carry no answer
  bool dot = false, bar = false;
  cv::Point dot_centre, bar_centre;
  int dot_radius = 2, dot_period = 2, dot_phase = 0;
  int bar_length = 6, bar_step = 1, bar_sign = 1, bar_phase = 0;
  // the event
  cv::Point centre;   // object (or lamp) centre; start of a move
  cv::Point target;   // end of a move
  int radius = 8;
  std::vector<Span> spans;  // when the event is visible

  bool active(int64_t f) const {
    for (const Span& s : spans)
      if (f >= s.begin && f < s.end) return true;
    return false;
  }
};

cv::Point corner_centre(int corner, int size) {
  const int near = size / 8, far = size - 1 - size / 8;
  return {corner % 2 == 0 ? near : far, corner < 2 ? near : far};
}

int wall_thickness(int size) { return std::max(2, size / 32); }

// one visible span of length in [lo, hi], starting at least one frame after
// the first and ending at least one frame before the last
Span draw_span(SceneRng& rng, int64_t frames, int64_t lo, int64_t hi) {
  const int64_t length = rng.range(lo, std::max(lo, hi));
  const int64_t begin = rng.range(1, frames - 1 - length);
  return {begin, begin + length};
}

Plan draw_plan(int kind, uint64_t seed, const SceneOptions& options) {
  SceneRng rng(seed);
  Plan p;
  p.kind = kind;
  p.size = options.size;
  p.frames = scene_frame_count(options);
  const int size = options.size;
  const int64_t n = p.frames, m = scene_min_phase_frames(options);

  // 1. the answer and the words of the question: nothing before depends on options
  switch (kind) {
    case kAppearColour:
    case kColourChange:
      p.answer = static_cast<int>(rng.below(5));
      p.shape = static_cast<int>(rng.below(5));
      p.colour = p.answer;
      break;
    case kFlashCount:
      p.answer = static_cast<int>(rng.below(5));  // count - 1
      break;
    case kMoveDirection:
      p.answer = static_cast<int>(rng.below(4));
      p.shape = static_cast<int>(rng.below(5));
      break;
    case kAppearShape:
      p.answer = static_cast<int>(rng.below(5));
      p.shape = p.answer;
      p.colour = static_cast<int>(rng.below(5));
      break;
  }

  // 2. background and distractors
  p.background = static_cast<int>(rng.below(3));
  p.base = {static_cast<int>(rng.range(10, 45)), static_cast<int>(rng.range(10, 45)),
            static_cast<int>(rng.range(10, 45))};
  p.ramp = {static_cast<int>(rng.range(0, 25)), static_cast<int>(rng.range(0, 25)),
            static_cast<int>(rng.range(0, 25))};
  p.cell = std::max(4, size / 12);
  p.cells_x = (size + p.cell - 1) / p.cell;
  p.cells_y = p.cells_x;
  p.texture.resize(static_cast<size_t>(p.cells_x * p.cells_y));
  for (int& t : p.texture) t = static_cast<int>(rng.range(-10, 10));
  p.drift_period = static_cast<int>(rng.range(2, 4));
  p.drift_sign = rng.below(2) == 0 ? 1 : -1;
  p.dot = rng.below(2) == 1;
  p.bar = rng.below(2) == 1;
  const int dot_corner = static_cast<int>(rng.below(4));
  const int bar_corner = (dot_corner + 1 + static_cast<int>(rng.below(3))) % 4;
  p.dot_centre = corner_centre(dot_corner, size);
  p.bar_centre = corner_centre(bar_corner, size);
  p.dot_radius = std::max(1, size / 32);
  p.dot_period = static_cast<int>(rng.range(2, 4));
  p.dot_phase = static_cast<int>(rng.below(8));
  p.bar_length = std::max(3, size / 12);
  p.bar_step = static_cast<int>(rng.range(1, 2));
  p.bar_sign = rng.below(2) == 0 ? 1 : -1;
  p.bar_phase = static_cast<int>(rng.below(16));

  // 3. where and when the event happens
  p.radius = kind == kFlashCount ? std::max(3, size / 10) : std::max(4, size / 8);
  const int lo = size / 4 + 1, hi = size - 1 - size / 4;  // clear of the corner distractors
  p.centre = {static_cast<int>(rng.range(lo, hi)), static_cast<int>(rng.range(lo, hi))};
  if (kind == kFlashCount) {
    p.centre.y -= p.radius / 3;  // leave room for the stand
    const int64_t count = p.answer + 1;
    // flashes of m frames with gaps of >= m frames (>= 1 before the first and
    // after the last); the slack is cut at `count` random points
    const int64_t slack = n - (count * m + (count - 1) * m + 2);
    std::vector<int64_t> cuts;
    for (int64_t i = 0; i < count; ++i) cuts.push_back(rng.range(0, slack));
    std::sort(cuts.begin(), cuts.end());
    int64_t f = 1;
    for (int64_t i = 0; i < count; ++i) {
      f += cuts[i] - (i == 0 ? 0 : cuts[i - 1]) + (i == 0 ? 0 : m);
      p.spans.push_back({f, f + m});
      f += m;
    }
  } else if (kind == kMoveDirection) {
    const int distance = (3 * size) / 8;
    const int margin = wall_thickness(size) + p.radius + 1;
    const int along_lo = margin, along_hi = size - 1 - margin;
    const int direction = p.answer;  // up, down, left, right
    const bool vertical = direction < 2;
    const int sign = direction % 2 == 0 ? -1 : 1;
    const int start = static_cast<int>(sign > 0 ? rng.range(along_lo, along_hi - distance)
                                                : rng.range(along_lo + distance, along_hi));
    const int across = static_cast<int>(rng.range(lo, hi));
    p.centre = vertical ? cv::Point(across, start) : cv::Point(start, across);
    p.target = vertical ? cv::Point(across, start + sign * distance) : cv::Point(start + sign * distance, across);
    // at least two sampled frames must fall inside the move to show its direction
    p.spans.push_back(draw_span(rng, n, std::max(2 * m, (15 * n + 99) / 100), std::max(2 * m, (28 * n) / 100)));
  } else {
    p.spans.push_back(draw_span(rng, n, std::max(m, (12 * n + 99) / 100), std::max(m, n / 4)));
  }
  return p;
}

// ---------------------------------------------------------------------------
// rendering

void render_background(const Plan& p, int64_t f, cv::Mat& image) {
  const int size = p.size;
  const int shift = p.background == 2 ? static_cast<int>((f / p.drift_period) % (p.cells_x * p.cell)) * p.drift_sign : 0;
  const int period = p.cells_x * p.cell;
  for (int y = 0; y < size; ++y) {
    uint8_t* row = image.ptr<uint8_t>(y);
    for (int x = 0; x < size; ++x) {
      int r = p.base.r, g = p.base.g, b = p.base.b;
      if (p.background == 1) {
        r += p.ramp.r * y / (size - 1);
        g += p.ramp.g * y / (size - 1);
        b += p.ramp.b * y / (size - 1);
      } else if (p.background == 2) {
        const int tx = (((x + shift) % period) + period) % period;
        const int offset = p.texture[static_cast<size_t>((y / p.cell) * p.cells_x + tx / p.cell)];
        r += offset;
        g += offset;
        b += offset;
      }
      row[3 * x] = static_cast<uint8_t>(std::clamp(r, 0, 255));
      row[3 * x + 1] = static_cast<uint8_t>(std::clamp(g, 0, 255));
      row[3 * x + 2] = static_cast<uint8_t>(std::clamp(b, 0, 255));
    }
  }
}

void render_walls(int size, cv::Mat& image) {
  const int t = wall_thickness(size);
  cv::rectangle(image, cv::Point(0, 0), cv::Point(size - 1, t - 1), kColours[kWallColour[0]].scalar(), cv::FILLED, cv::LINE_8);
  cv::rectangle(image, cv::Point(0, size - t), cv::Point(size - 1, size - 1), kColours[kWallColour[1]].scalar(), cv::FILLED, cv::LINE_8);
  cv::rectangle(image, cv::Point(0, 0), cv::Point(t - 1, size - 1), kColours[kWallColour[2]].scalar(), cv::FILLED, cv::LINE_8);
  cv::rectangle(image, cv::Point(size - t, 0), cv::Point(size - 1, size - 1), kColours[kWallColour[3]].scalar(), cv::FILLED, cv::LINE_8);
}

void render_lamp(const Plan& p, bool lit, cv::Mat& image) {
  const int r = p.radius;
  cv::rectangle(image, cv::Point(p.centre.x - std::max(1, r / 3), p.centre.y + r - 1),
                cv::Point(p.centre.x + std::max(1, r / 3), p.centre.y + r + std::max(2, r / 2)), kLampStand.scalar(),
                cv::FILLED, cv::LINE_8);
  cv::circle(image, p.centre, r, (lit ? kLampOn : kLampOff).scalar(), cv::FILLED, cv::LINE_8);
}

void render_distractors(const Plan& p, int64_t f, cv::Mat& image) {
  if (p.dot && ((f + p.dot_phase) / p.dot_period) % 2 == 0)
    cv::circle(image, p.dot_centre, p.dot_radius, kDot.scalar(), cv::FILLED, cv::LINE_8);
  if (p.bar) {
    const cv::Point d = direction16(p.bar_phase + p.bar_sign * (f / p.bar_step), p.bar_length);
    cv::line(image, p.bar_centre - d, p.bar_centre + d, kBar.scalar(), std::max(1, p.size / 48), cv::LINE_8);
  }
}

// position of the mover at frame f of its span: integer interpolation
cv::Point mover_position(const Plan& p, int64_t f) {
  const Span& s = p.spans.front();
  const int64_t steps = std::max<int64_t>(1, s.end - s.begin - 1), j = f - s.begin;
  const auto lerp = [&](int a, int b) {
    const int64_t num = static_cast<int64_t>(b - a) * j;
    return a + static_cast<int>((num >= 0 ? num + steps / 2 : num - steps / 2) / steps);
  };
  return {lerp(p.centre.x, p.target.x), lerp(p.centre.y, p.target.y)};
}

void render_frame(const Plan& p, int64_t f, bool draw_events, cv::Mat& image) {
  render_background(p, f, image);
  if (p.kind == kMoveDirection) render_walls(p.size, image);
  const bool event = draw_events && p.active(f);
  // the always-visible objects, in their neutral state
  if (p.kind == kFlashCount) render_lamp(p, event, image);
  if (p.kind == kColourChange) paint_shape(image, p.shape, p.centre, p.radius, event ? kColours[p.colour] : kGray);
  render_distractors(p, f, image);
  if (!event) return;
  switch (p.kind) {
    case kAppearColour:
    case kAppearShape:
      paint_shape(image, p.shape, p.centre, p.radius, kColours[p.colour]);
      break;
    case kMoveDirection:
      paint_shape(image, p.shape, mover_position(p, f), p.radius, kMover);
      break;
    default:
      break;  // lamp and colour change were drawn above, under the distractors
  }
}

std::string question_of(const Plan& p) {
  switch (p.kind) {
    case kAppearColour: return "which " + kShapeWords[p.shape] + " arrived ?";
    case kFlashCount: return "how many times was the lamp bright ?";
    case kMoveDirection: return "the " + kShapeWords[p.shape] + " moved toward which wall ?";
    case kAppearShape: return "what arrived ?";
    default: return "the gray " + kShapeWords[p.shape] + " turned to what ?";
  }
}

// ---------------------------------------------------------------------------
// index JSON

using json = nlohmann::json;

constexpr const char* kIndexFormat = "namm-video-scenes";
constexpr int kIndexVersion = 1;

// 3 rather than 3.000000 in messages
std::string number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", v);
  return buffer;
}

std::string hex16(uint64_t v) {
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(v));
  return buffer;
}

template <class T>
T field(const json& object, const char* name, const std::string& where) {
  if (!object.is_object() || !object.contains(name))
    throw std::invalid_argument(where + ": missing field '" + name + "'");
  try {
    return object.at(name).get<T>();
  } catch (const json::exception&) {
    throw std::invalid_argument(where + ": field '" + name + "' has the wrong type (" +
                                object.at(name).dump().substr(0, 40) + ")");
  }
}

}  // namespace

// ---------------------------------------------------------------------------

std::vector<int64_t> VideoScene::informative_frames() const {
  std::vector<int64_t> frames;
  for (size_t i = 0; i < informative.size(); ++i)
    if (informative[i]) frames.push_back(static_cast<int64_t>(i));
  return frames;
}

double VideoScene::informative_fraction() const {
  if (informative.empty()) return 0.0;
  return static_cast<double>(informative_frames().size()) / static_cast<double>(informative.size());
}

const std::vector<std::string>& scene_kinds() {
  static const std::vector<std::string> kinds = {"appear_colour", "flash_count", "move_direction", "appear_shape",
                                                 "colour_change"};
  return kinds;
}

const std::vector<std::string>& scene_choices(const std::string& kind) {
  switch (kind_id(kind)) {
    case kFlashCount: return kCountWords;
    case kMoveDirection: return kWallWords;
    case kAppearShape: return kShapeWords;
    default: return kColourWords;
  }
}

uint64_t scene_seed(const std::string& kind, Split split, int64_t index) {
  const int id = kind_id(kind);
  if (index < 0 || index >= (int64_t{1} << 56))
    throw std::invalid_argument("scene index must be in [0, 2^56), got " + std::to_string(index));
  const uint64_t packed = (static_cast<uint64_t>(split) << 62) | (static_cast<uint64_t>(id) << 56) |
                          static_cast<uint64_t>(index);
  return splitmix64_finalize(packed);
}

int64_t scene_frame_count(const SceneOptions& options) {
  return static_cast<int64_t>(std::llround(options.seconds * options.fps));
}

int64_t scene_min_phase_frames(const SceneOptions& options) {
  const int64_t n = scene_frame_count(options), k = options.sample_frames;
  if (n <= 1 || k <= 1) return 1;
  return std::max<int64_t>(1, (n - 1 + k - 2) / (k - 1));
}

void check_scene_options(const SceneOptions& options) {
  if (options.size < 32 || options.size > 1024 || options.size % 2 != 0)
    throw std::invalid_argument("scene size must be even and in [32, 1024], got " + std::to_string(options.size));
  if (!(options.fps > 0 && options.fps <= 240))
    throw std::invalid_argument("scene fps must be in (0, 240], got " + number(options.fps));
  if (!(options.seconds > 0 && options.seconds <= 600))
    throw std::invalid_argument("scene seconds must be in (0, 600], got " + number(options.seconds));
  if (options.sample_frames < 2)
    throw std::invalid_argument("scene sample_frames must be >= 2, got " + std::to_string(options.sample_frames));
  const int64_t n = scene_frame_count(options), m = scene_min_phase_frames(options);
  // the longest event: 5 flashes and 4 gaps of m frames, one quiet frame at each end
  if (n < 9 * m + 2)
    throw std::invalid_argument("scenes of " + std::to_string(n) + " frames (" + number(options.seconds) +
                                " s at " + number(options.fps) + " fps) are too short for 5 flashes visible in " +
                                std::to_string(options.sample_frames) + " sampled frames: need at least " +
                                std::to_string(9 * m + 2) + " frames");
}

VideoScene make_scene(const std::string& kind, Split split, int64_t index, const SceneOptions& options) {
  const uint64_t seed = scene_seed(kind, split, index);
  check_scene_options(options);
  const Plan plan = draw_plan(kind_id(kind), seed, options);

  VideoScene scene;
  scene.kind = kind;
  scene.split = split;
  scene.index = index;
  scene.seed = seed;
  scene.width = scene.height = options.size;
  scene.fps = options.fps;
  scene.question = question_of(plan);
  scene.choices = scene_choices(kind);
  scene.answer = scene.choices[static_cast<size_t>(plan.answer)];
  if (plan.kind == kMoveDirection) scene.answer_meaning = kDirectionMeanings[static_cast<size_t>(plan.answer)];

  const size_t frame_bytes = static_cast<size_t>(options.size) * options.size * 3;
  scene.frames_rgb.assign(static_cast<size_t>(plan.frames), std::vector<uint8_t>(frame_bytes));
  scene.informative.resize(static_cast<size_t>(plan.frames));
  for (int64_t f = 0; f < plan.frames; ++f) {
    cv::Mat image(options.size, options.size, CV_8UC3, scene.frames_rgb[static_cast<size_t>(f)].data());  // [H, W, 3] view
    render_frame(plan, f, options.draw_events, image);
    scene.informative[static_cast<size_t>(f)] = plan.active(f);
  }
  return scene;
}

void write_scene_clip(const VideoScene& scene, const std::string& path, const VideoEncoderOptions& options) {
  encode_video(path, scene.frames_rgb, scene.width, scene.height, scene.fps, options);
}

SceneIndexEntry scene_index_entry(const VideoScene& scene, const std::string& clip) {
  SceneIndexEntry e;
  e.clip = clip;
  e.kind = scene.kind;
  e.split = scene.split;
  e.index = scene.index;
  e.seed = scene.seed;
  e.width = scene.width;
  e.height = scene.height;
  e.fps = scene.fps;
  e.num_frames = scene.num_frames();
  e.question = scene.question;
  e.answer = scene.answer;
  e.answer_meaning = scene.answer_meaning;
  e.choices = scene.choices;
  e.informative_frames = scene.informative_frames();
  return e;
}

std::string scene_index_to_json(const SceneIndex& index) {
  // one clip per line, fields in a reading order: easy to grep and to diff
  using ordered = nlohmann::ordered_json;
  std::string out = "{\n \"format\": " + ordered(kIndexFormat).dump() + ",\n \"version\": " +
                    std::to_string(kIndexVersion) + ",\n";
  const ordered options = {{"size", index.options.size},
                           {"seconds", index.options.seconds},
                           {"fps", index.options.fps},
                           {"sample_frames", index.options.sample_frames}};
  const ordered encoder = {{"codec", index.encoder.codec}, {"crf", index.encoder.crf}, {"preset", index.encoder.preset}};
  out += " \"options\": " + options.dump() + ",\n \"encoder\": " + encoder.dump() + ",\n \"clips\": [";
  for (size_t c = 0; c < index.clips.size(); ++c) {
    const SceneIndexEntry& e = index.clips[c];
    // runs of consecutive informative frames as [first shown, first hidden) seconds
    ordered seconds = ordered::array();
    for (size_t i = 0; i < e.informative_frames.size();) {
      size_t j = i;
      while (j + 1 < e.informative_frames.size() && e.informative_frames[j + 1] == e.informative_frames[j] + 1) ++j;
      seconds.push_back({static_cast<double>(e.informative_frames[i]) / e.fps,
                         static_cast<double>(e.informative_frames[j] + 1) / e.fps});
      i = j + 1;
    }
    const ordered clip = {{"clip", e.clip},
                          {"kind", e.kind},
                          {"split", to_string(e.split)},
                          {"index", e.index},
                          {"question", e.question},
                          {"answer", e.answer},
                          {"answer_meaning", e.answer_meaning},
                          {"choices", e.choices},
                          {"informative_frames", e.informative_frames},
                          {"informative_seconds", seconds},
                          {"num_frames", e.num_frames},
                          {"fps", e.fps},
                          {"width", e.width},
                          {"height", e.height},
                          {"seed", hex16(e.seed)}};
    out += (c == 0 ? "\n  " : ",\n  ") + clip.dump();
  }
  out += index.clips.empty() ? "]\n}\n" : "\n ]\n}\n";
  return out;
}

SceneIndex scene_index_from_json(std::string_view text, const std::string& source) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    throw std::invalid_argument(source + ": not JSON: " + std::string(e.what()).substr(0, 120));
  }
  if (!root.is_object()) throw std::invalid_argument(source + ": not a JSON object");
  const std::string format = field<std::string>(root, "format", source);
  if (format != kIndexFormat)
    throw std::invalid_argument(source + ": format is '" + format + "', expected '" + kIndexFormat + "'");
  const int version = field<int>(root, "version", source);
  if (version != kIndexVersion)
    throw std::invalid_argument(source + ": version " + std::to_string(version) + ", expected " +
                                std::to_string(kIndexVersion));
  SceneIndex index;
  const json options = field<json>(root, "options", source);
  index.options.size = field<int>(options, "size", source + ": options");
  index.options.seconds = field<double>(options, "seconds", source + ": options");
  index.options.fps = field<double>(options, "fps", source + ": options");
  index.options.sample_frames = field<int>(options, "sample_frames", source + ": options");
  const json encoder = field<json>(root, "encoder", source);
  index.encoder.codec = field<std::string>(encoder, "codec", source + ": encoder");
  index.encoder.crf = field<int>(encoder, "crf", source + ": encoder");
  index.encoder.preset = field<std::string>(encoder, "preset", source + ": encoder");
  const json clips = field<json>(root, "clips", source);
  if (!clips.is_array()) throw std::invalid_argument(source + ": 'clips' is not an array");
  for (size_t i = 0; i < clips.size(); ++i) {
    const json& c = clips[i];
    const std::string where = source + ": clips[" + std::to_string(i) + "]";
    SceneIndexEntry e;
    e.clip = field<std::string>(c, "clip", where);
    e.kind = field<std::string>(c, "kind", where);
    try {
      e.split = parse_split(field<std::string>(c, "split", where));
    } catch (const std::invalid_argument& err) {
      throw std::invalid_argument(where + ": " + err.what());
    }
    e.index = field<int64_t>(c, "index", where);
    const std::string seed = field<std::string>(c, "seed", where);
    try {
      size_t used = 0;
      e.seed = std::stoull(seed, &used, 16);
      if (used != seed.size()) throw std::invalid_argument("trailing characters");
    } catch (const std::exception&) {
      throw std::invalid_argument(where + ": seed '" + seed + "' is not hexadecimal");
    }
    e.width = field<int>(c, "width", where);
    e.height = field<int>(c, "height", where);
    e.fps = field<double>(c, "fps", where);
    e.num_frames = field<int64_t>(c, "num_frames", where);
    e.question = field<std::string>(c, "question", where);
    e.answer = field<std::string>(c, "answer", where);
    e.answer_meaning = field<std::string>(c, "answer_meaning", where);
    e.choices = field<std::vector<std::string>>(c, "choices", where);
    e.informative_frames = field<std::vector<int64_t>>(c, "informative_frames", where);
    if (std::find(e.choices.begin(), e.choices.end(), e.answer) == e.choices.end())
      throw std::invalid_argument(where + ": answer '" + e.answer + "' is not among its choices");
    for (size_t j = 0; j < e.informative_frames.size(); ++j) {
      const int64_t f = e.informative_frames[j];
      if (f < 0 || f >= e.num_frames || (j > 0 && f <= e.informative_frames[j - 1]))
        throw std::invalid_argument(where + ": informative frame " + std::to_string(f) +
                                    " is out of range [0, " + std::to_string(e.num_frames) +
                                    ") or not ascending");
    }
    index.clips.push_back(std::move(e));
  }
  return index;
}

void write_scene_index(const std::string& path, const SceneIndex& index) {
  write_file_atomically(path, scene_index_to_json(index));
}

SceneIndex read_scene_index(const std::string& path) {
  return scene_index_from_json(read_file(path), path);
}

}  // namespace namm
