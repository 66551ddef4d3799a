// Frame sampling speed: sample_frames_uniform(clip, N) against the ffmpeg
// command line producing the same N RGB frames, side by side in one run.
//
// Clips: 720p, 30 fps H.264 (libx264 defaults: keyframe every 250 frames,
// B-frames) of 15, 60 and 240 s, plus 60 s with a keyframe every second (as
// phones and cameras write them); made once with the ffmpeg CLI into a cache
// folder. Per clip, the median of `reps` runs (after one warm-up) of:
//   ours         probe + open + decode + RGB conversion of the N samples
//   ours plain   the same without seeking or skipping (every frame decoded)
//   ffmpeg sel   one `ffmpeg -i clip -vf select='eq(n,a)+eq(n,b)+...'
//                -frames:v N` run writing rgb24 to /dev/null: the N frames
//                ours returned, decoding stopped after the last one
//   ffmpeg -ss   N runs of `ffmpeg -ss t -i clip -frames:v 1` (seek per
//                frame; timed once, it is by far the slowest)
// Wall milliseconds, CPU milliseconds (this process for ours, the children
// for ffmpeg), the speed-up of ours over the faster ffmpeg way in wall (and
// CPU) time, and the max |difference| between our pixels and ffmpeg's select
// output. On a shared machine the CPU figures are the steadier ones.
//
//   namm_bench_decode [reps=3] [frames=32] [cache_dir=${TMPDIR:-/tmp}/namm_bench_decode]
#include "vision/video_decoder.h"

#include <sys/resource.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

double cpu_seconds(int who) {
  rusage usage{};
  getrusage(who, &usage);
  return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + 1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

struct Timing {
  double wall_ms = 0;  ///< median wall-clock milliseconds
  double cpu_ms = 0;   ///< median CPU milliseconds (all threads of this process and its children)
};

Timing median_timing(int reps, const std::function<void()>& fn, bool warm_up = true) {
  if (warm_up) fn();  // page cache, decoder tables
  std::vector<double> walls, cpus;
  for (int r = 0; r < reps; ++r) {
    const double cpu_start = cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN);
    const auto start = std::chrono::steady_clock::now();
    fn();
    walls.push_back(1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    cpus.push_back(1e3 * (cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN) - cpu_start));
  }
  std::sort(walls.begin(), walls.end());
  std::sort(cpus.begin(), cpus.end());
  return {walls[walls.size() / 2], cpus[cpus.size() / 2]};
}

void run_or_die(const std::string& command) {
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr, "command failed: %s\n", command.c_str());
    std::exit(1);
  }
}

std::string make_clip(const fs::path& dir, int seconds, int gop) {
  const std::string name = "testsrc2_720p30_" + std::to_string(seconds) + "s" + (gop > 0 ? "_gop" + std::to_string(gop) : "") + ".mp4";
  const fs::path path = dir / name;
  if (fs::exists(path)) return path.string();
  std::printf("making %s ...\n", path.c_str());
  std::fflush(stdout);
  const fs::path partial = dir / (name + ".tmp.mp4");
  run_or_die("ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -t " + std::to_string(seconds) +
             " -c:v libx264 -pix_fmt yuv420p" + (gop > 0 ? " -g " + std::to_string(gop) : "") + " '" + partial.string() + "'");
  fs::rename(partial, path);
  return path.string();
}

std::string select_command(const std::string& clip, const std::vector<namm::DecodedFrame>& frames, const std::string& out) {
  std::string expression;
  int64_t last = -1;
  int distinct = 0;
  for (const namm::DecodedFrame& frame : frames) {
    if (frame.index == last) continue;  // select passes each frame once
    if (!expression.empty()) expression += "+";
    expression += "eq(n," + std::to_string(frame.index) + ")";
    last = frame.index;
    ++distinct;
  }
  // -frames:v stops decoding after the last selected frame, as ours does
  return "ffmpeg -nostdin -v error -i '" + clip + "' -an -vf \"select='" + expression +
         "'\" -fps_mode passthrough -frames:v " + std::to_string(distinct) + " -f rawvideo -pix_fmt rgb24 -y " + out;
}

std::vector<std::string> seek_commands(const std::string& clip, const std::vector<namm::DecodedFrame>& frames) {
  std::vector<std::string> commands;
  for (const namm::DecodedFrame& frame : frames) {
    char start[32];
    std::snprintf(start, sizeof start, "%.6f", frame.timestamp_seconds);  // the frame's own time: -ss keeps frames at or after it
    commands.push_back("ffmpeg -nostdin -v error -ss " + std::string(start) + " -i '" + clip +
                       "' -an -frames:v 1 -f rawvideo -pix_fmt rgb24 -y /dev/null");
  }
  return commands;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 3;
  const int num_frames = argc > 2 ? std::atoi(argv[2]) : 32;
  const char* tmp = std::getenv("TMPDIR");
  const fs::path dir = argc > 3 ? fs::path(argv[3]) : fs::path(tmp ? tmp : "/tmp") / "namm_bench_decode";
  if (reps < 1 || num_frames < 1) {
    std::fprintf(stderr, "usage: namm_bench_decode [reps=3] [frames=32] [cache_dir]\n");
    return 2;
  }
  if (std::system("ffmpeg -version > /dev/null 2>&1") != 0) {
    std::fprintf(stderr, "namm_bench_decode: needs the ffmpeg command line on PATH\n");
    return 1;
  }
  fs::create_directories(dir);

  struct ClipSpec {
    int seconds, gop;
  };
  const std::vector<ClipSpec> specs = {{15, 0}, {60, 0}, {240, 0}, {60, 30}};
  std::vector<std::string> clips;
  for (const ClipSpec& spec : specs) clips.push_back(make_clip(dir, spec.seconds, spec.gop));

  std::printf("\n%d frames sampled uniformly, RGB at 1280x720; median of %d runs; ms wall (ms CPU)\n", num_frames, reps);
  std::printf("%-32s %15s %15s %17s %17s %15s %9s\n", "clip", "ours", "ours plain", "ffmpeg select", "ffmpeg 32x -ss",
              "speed-up", "max|diff|");
  for (size_t c = 0; c < clips.size(); ++c) {
    const std::string& clip = clips[c];
    std::vector<namm::DecodedFrame> frames;
    const Timing ours = median_timing(reps, [&] { frames = namm::sample_frames_uniform(clip, num_frames); });
    namm::FrameSamplingOptions plain_options;
    plain_options.seek = false;
    plain_options.skip_unneeded = false;
    const Timing plain = median_timing(reps, [&] { namm::sample_frames_uniform(clip, num_frames, plain_options); });

    const std::string select_to_null = select_command(clip, frames, "/dev/null");
    const Timing select = median_timing(reps, [&] { run_or_die(select_to_null); });
    const std::vector<std::string> seeks = seek_commands(clip, frames);
    // the slowest way: one run, the page cache already warm
    const Timing seek = median_timing(1, [&] {
      for (const std::string& command : seeks) run_or_die(command);
    }, false);

    // the same pixels? ffmpeg's select output against our distinct frames
    const fs::path raw = dir / "select_output.rgb";
    run_or_die(select_command(clip, frames, "'" + raw.string() + "'"));
    std::ifstream in(raw, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    fs::remove(raw);
    int max_diff = 0;
    size_t offset = 0;
    int64_t last = -1;
    bool sizes_match = true;
    for (const namm::DecodedFrame& frame : frames) {
      if (frame.index == last) continue;
      last = frame.index;
      if (offset + frame.rgb.size() > bytes.size()) {
        sizes_match = false;
        break;
      }
      for (size_t i = 0; i < frame.rgb.size(); ++i) {
        max_diff = std::max(max_diff, std::abs(int(frame.rgb[i]) - int(static_cast<unsigned char>(bytes[offset + i]))));
      }
      offset += frame.rgb.size();
    }
    sizes_match = sizes_match && offset == bytes.size();

    const std::string name = fs::path(clip).filename().string();
    char cells[5][40];
    std::snprintf(cells[0], 40, "%.0f (%.0f)", ours.wall_ms, ours.cpu_ms);
    std::snprintf(cells[1], 40, "%.0f (%.0f)", plain.wall_ms, plain.cpu_ms);
    std::snprintf(cells[2], 40, "%.0f (%.0f)", select.wall_ms, select.cpu_ms);
    std::snprintf(cells[3], 40, "%.0f (%.0f)", seek.wall_ms, seek.cpu_ms);
    std::snprintf(cells[4], 40, "%.2fx (%.2fx)", std::min(select.wall_ms, seek.wall_ms) / ours.wall_ms,
                  std::min(select.cpu_ms, seek.cpu_ms) / ours.cpu_ms);
    std::printf("%-32s %15s %15s %17s %17s %15s %9s\n", name.c_str(), cells[0], cells[1], cells[2], cells[3], cells[4],
                sizes_match ? std::to_string(max_diff).c_str() : "size!");
    std::fflush(stdout);
  }
  return 0;
}
