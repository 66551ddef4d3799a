// `namm frames`: decodes a clip and writes N frames sampled uniformly in time
// (vision/video_decoder.h) as frame_000.png, frame_001.png, ..., printing one
// line per frame. The output folder appears whole or not at all: it is built
// as "<out>.tmp-<pid>" and renamed into place.
#include "apps/options.h"
#include "core/memory_budget.h"
#include "vision/video_decoder.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>

namespace namm::app {
namespace {

namespace fs = std::filesystem;

// "frame_007.png": at least three digits, more when N needs them
std::string frame_name(int k, int num_frames) {
  const size_t digits = std::max<size_t>(3, std::to_string(num_frames - 1).size());
  std::string number = std::to_string(k);
  if (number.size() < digits) number.insert(0, digits - number.size(), '0');
  return "frame_" + number + ".png";
}

// a folder this command wrote before: nothing in it but frame_*.png
bool holds_only_frames(const fs::path& dir) {
  static const std::regex pattern("frame_[0-9]+\\.png");
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file() || !std::regex_match(entry.path().filename().string(), pattern)) return false;
  }
  return true;
}

// Removes a folder this command created, when a failure leaves it behind.
struct TempDirGuard {
  fs::path path;
  bool armed = true;
  ~TempDirGuard() {
    if (!armed) return;
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

}  // namespace

int run_frames(const std::vector<std::string>& args) {
  std::string clip, out_dir, size_text;
  int num_frames = 0;
  po::options_description options("options");
  options.add_options()
      ("clip", po::value(&clip)->required(), "video file (any container/codec FFmpeg reads)")
      ("frames", po::value(&num_frames)->required(), "N: frames sampled uniformly in time; sample i is the frame shown at (i + 0.5) * duration / N")
      ("size", po::value(&size_text), "WxH output size of the upright frame, e.g. 336x336 (one side 0 keeps the aspect ratio); default: the clip's")
      ("out", po::value(&out_dir)->required(), "output folder for frame_000.png ... (must not exist, or hold only frame PNGs with --overwrite)")
      ("overwrite", "replace an existing folder of frame PNGs");
  po::variables_map vm;
  if (!parse_options("frames", "--clip FILE --frames N [--size WxH] --out DIR", options, args, vm)) return 0;

  if (num_frames < 1 || num_frames > 100000) throw UsageError("--frames must be in [1, 100000], got " + std::to_string(num_frames));
  int width = 0, height = 0;
  if (!size_text.empty()) {
    std::smatch match;
    if (!std::regex_match(size_text, match, std::regex("([0-9]{1,5})x([0-9]{1,5})")))
      throw UsageError("--size must be WxH such as 336x336, got '" + size_text + "'");
    width = std::stoi(match[1]);
    height = std::stoi(match[2]);
    if (width == 0 && height == 0) throw UsageError("--size: at least one side must be > 0, got '" + size_text + "'");
  }

  const fs::path out = fs::path(out_dir).lexically_normal();
  if (out.empty() || out == "." || out == "/") throw UsageError("--out must name a new folder, got '" + out_dir + "'");
  const fs::path target = out.filename().empty() ? out.parent_path() : out;
  // one run per folder: a second is refused while this one builds and renames
  const FileLock out_lock(output_lock_path(target.string()), "--out " + target.string());
  const bool exists = fs::exists(target);
  if (exists) {
    if (!fs::is_directory(target)) throw std::runtime_error(target.string() + ": exists and is not a folder");
    if (!fs::is_empty(target)) {
      if (!vm.count("overwrite"))
        throw std::runtime_error(target.string() + ": folder exists and is not empty (use --overwrite to replace a frames folder)");
      if (!holds_only_frames(target))
        throw std::runtime_error(target.string() + ": holds files other than frame_*.png; refusing to replace it");
    }
  }

  // decode first: a bad clip fails before anything is created
  {
    // every sample is held until the folder is written: bound them first
    const VideoInfo info = probe_video(clip);
    double w = width, h = height;
    if (w == 0 && h == 0) w = info.width, h = info.height;
    else if (w == 0) w = h * info.width / std::max(info.height, 1);
    else if (h == 0) h = w * info.height / std::max(info.width, 1);
    require_memory(static_cast<double>(num_frames) * w * h * 3.0,
                   "--frames " + std::to_string(num_frames) + " of " + std::to_string(static_cast<int64_t>(w)) + "x" +
                       std::to_string(static_cast<int64_t>(h)) + " (use --size to make them smaller)");
  }
  const std::vector<DecodedFrame> frames = sample_frames_uniform(clip, num_frames, width, height);

  const fs::path tmp = target.string() + ".tmp-" + std::to_string(::getpid());
  std::error_code error;
  fs::create_directories(tmp, error);
  if (error) throw std::runtime_error(tmp.string() + ": cannot create folder: " + error.message());
  TempDirGuard guard{tmp};
  for (int k = 0; k < num_frames; ++k) write_frame_png(frames[k], (tmp / frame_name(k, num_frames)).string());

  if (exists) {
    // an empty folder is replaced directly; a frames folder is moved aside first
    const fs::path old = target.string() + ".old-" + std::to_string(::getpid());
    fs::rename(target, old, error);
    if (error) throw std::runtime_error(target.string() + ": cannot move the old folder aside: " + error.message());
    fs::rename(tmp, target, error);
    if (error) {
      std::error_code ignored;
      fs::rename(old, target, ignored);
      throw std::runtime_error(target.string() + ": cannot rename " + tmp.string() + " into place: " + error.message());
    }
    fs::remove_all(old, error);
  } else {
    fs::rename(tmp, target, error);
    if (error) throw std::runtime_error(target.string() + ": cannot rename " + tmp.string() + " into place: " + error.message());
  }
  guard.armed = false;

  for (int k = 0; k < num_frames; ++k) {
    const DecodedFrame& frame = frames[k];
    std::printf("%s  frame %lld  at %.3f s  (sample time %.3f s)  %dx%d\n", frame_name(k, num_frames).c_str(),
                static_cast<long long>(frame.index), frame.timestamp_seconds, frame.sample_time_seconds, frame.width,
                frame.height);
  }
  return 0;
}

}  // namespace namm::app
