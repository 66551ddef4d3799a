// `namm make-scenes`: renders synthetic video QA scenes (vision/video_scenes.h)
// to clips plus an index.json with each clip's question, answer, choices and
// informative frames. The output folder appears whole or not at all: it is
// built as "<out>.tmp-<pid>" and renamed into place.
#include "apps/options.h"
#include "vision/video_scenes.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

namespace namm::app {
namespace {

namespace fs = std::filesystem;

// "flash_count_test_000003.mp4"
std::string clip_name(const std::string& kind, Split split, int64_t index, const std::string& extension) {
  char number[32];
  std::snprintf(number, sizeof(number), "%06lld", static_cast<long long>(index));
  return kind + "_" + to_string(split) + "_" + number + "." + extension;
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

// The files of dir that are neither its index.json nor a clip the index names:
// --overwrite replaces a scenes folder, never anything else kept in it.
std::vector<std::string> files_not_in_index(const fs::path& dir) {
  std::set<std::string> known = {"index.json"};
  for (const SceneIndexEntry& entry : read_scene_index((dir / "index.json").string()).clips) known.insert(entry.clip);
  std::vector<std::string> others;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || !known.count(name)) others.push_back(name);
  }
  std::sort(others.begin(), others.end());
  return others;
}

}  // namespace

int run_make_scenes(const std::vector<std::string>& args) {
  std::string out_dir, split_text, kinds_text, extension;
  int64_t count = 0, first_index = 0;
  SceneOptions scene;
  VideoEncoderOptions encoder;
  po::options_description options("options");
  options.add_options()
      ("out", po::value(&out_dir)->required(), "output folder (must not exist, or hold an index.json with --overwrite)")
      ("split", po::value(&split_text)->default_value("test"), "train, validation or test: disjoint seed ranges")
      ("count", po::value(&count)->required(), "clips per kind")
      ("first-index", po::value(&first_index)->default_value(0), "index of the first clip of each kind")
      ("kinds", po::value(&kinds_text)->default_value(""), "comma-separated kinds (default: all)")
      ("size", po::value(&scene.size)->default_value(96), "frame width and height in pixels (even, 32..1024)")
      ("seconds", po::value(&scene.seconds)->default_value(3.0), "clip length")
      ("fps", po::value(&scene.fps)->default_value(12.0), "frames per second")
      ("sample-frames", po::value(&scene.sample_frames)->default_value(16), "frames a model samples uniformly; every event lasts long enough to be seen in them")
      ("codec", po::value(&encoder.codec)->default_value("libx264"), "FFmpeg encoder name")
      ("crf", po::value(&encoder.crf)->default_value(18), "constant rate factor (x264/x265/vpx)")
      ("extension", po::value(&extension)->default_value("mp4"), "clip file extension: picks the container")
      ("overwrite", "replace an existing scenes folder (one holding an index.json)");
  po::variables_map vm;
  std::string kinds_help = "--out DIR --count N [--split test] [--kinds K1,K2] [--size 96] [--seconds 3] [--fps 12]\n\nkinds:";
  for (const std::string& kind : scene_kinds()) kinds_help += " " + kind;
  if (!parse_options("make-scenes", kinds_help, options, args, vm)) return 0;

  Split split;
  try {
    split = parse_split(split_text);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--split: ") + e.what());
  }
  if (count < 1 || count > 100000) throw UsageError("--count must be in [1, 100000], got " + std::to_string(count));
  if (first_index < 0) throw UsageError("--first-index must be >= 0, got " + std::to_string(first_index));
  std::vector<std::string> kinds = kinds_text.empty() ? scene_kinds() : split_list(kinds_text);
  for (const std::string& kind : kinds) {
    try {
      scene_choices(kind);
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--kinds: ") + e.what());
    }
  }
  try {
    check_scene_options(scene);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (extension.empty() || extension.find('/') != std::string::npos)
    throw UsageError("--extension must be a file extension such as mp4, got '" + extension + "'");
  try {
    check_video_encoder_options(encoder, "clip." + extension);
  } catch (const std::invalid_argument& e) {
    throw UsageError("--codec/--extension: " + std::string(e.what()));
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
        throw std::runtime_error(target.string() + ": folder exists and is not empty (use --overwrite to replace a scenes folder)");
      if (!fs::exists(target / "index.json"))
        throw std::runtime_error(target.string() + ": has no index.json, so it is not a scenes folder; refusing to replace it");
      std::vector<std::string> others;
      try {
        others = files_not_in_index(target);
      } catch (const std::exception& e) {
        throw std::runtime_error(target.string() + ": its index.json cannot be read, so it is not replaced (" +
                                 std::string(e.what()) + ")");
      }
      if (!others.empty()) {
        throw std::runtime_error(target.string() + ": holds " + others.front() +
                                 (others.size() > 1 ? " and " + std::to_string(others.size() - 1) + " more" : "") +
                                 " besides the clips its index.json names; refusing to replace it");
      }
    }
  }

  // build everything in a sibling temporary folder, then rename it into place
  const fs::path tmp = target.string() + ".tmp-" + std::to_string(::getpid());
  std::error_code error;
  fs::create_directories(tmp, error);
  if (error) throw std::runtime_error(tmp.string() + ": cannot create folder: " + error.message());
  TempDirGuard guard{tmp};

  SceneIndex index;
  index.options = scene;
  index.encoder = encoder;
  uintmax_t bytes = 0;
  for (const std::string& kind : kinds) {
    for (int64_t i = first_index; i < first_index + count; ++i) {
      const VideoScene rendered = make_scene(kind, split, i, scene);
      const std::string name = clip_name(kind, split, i, extension);
      write_scene_clip(rendered, (tmp / name).string(), encoder);
      bytes += fs::file_size(tmp / name);
      index.clips.push_back(scene_index_entry(rendered, name));
    }
  }
  write_scene_index((tmp / "index.json").string(), index);

  if (exists) {
    // an empty folder is replaced directly; a scenes folder is moved aside first
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
  std::printf("wrote %zu clips (%ju KB) and index.json to %s\n", index.clips.size(),
              static_cast<uintmax_t>((bytes + 1023) / 1024), target.string().c_str());
  return 0;
}

}  // namespace namm::app
