// Reading video files with FFmpeg's libraries (libavformat, libavcodec,
// libswscale): what a clip is (probe_video) and N frames sampled uniformly
// in time as RGB (sample_frames_uniform), the input of a LLaVA-NeXT-Video
// style model (32 frames per clip).
//
// Any container and codec this FFmpeg decodes (mp4/mov/mkv/webm/avi; H.264,
// HEVC, VP9, AV1, MPEG-4, ...), variable frame rate, odd sizes, and rotation
// metadata (frames come out upright, as `ffmpeg -i` shows them).
//
// Sampling is by timestamp: sample i is the frame on screen at
//   t_i = (i + 0.5) * duration / N        (seconds from the first frame),
// i.e. the last frame whose presentation time is <= t_i. It is fast because
// only what those N frames need is decoded: the decoder jumps (seeks) to the
// keyframe before a target when that skips frames, decodes with frame
// threads, skips non-reference frames that are not a target, and converts
// only the N chosen frames to RGB.
//
// Not here: audio, hardware decoding, writing video (vision/video_encoder.h).
// FFmpeg's and OpenCV's headers are confined to video_decoder.cpp (a firewall).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace namm {

/// What a video file holds, from its container and stream headers (no
/// decoding). Sizes are as displayed, i.e. after the rotation.
struct VideoInfo {
  std::string path;
  int width = 0;                       ///< displayed width in pixels (after rotation)
  int height = 0;                      ///< displayed height in pixels (after rotation)
  double duration_seconds = 0;         ///< from the first frame to the end of the last one; 0 if none
  int64_t frame_count_estimate = 0;    ///< from the container's frame count, else duration * average_fps
  double average_fps = 0;              ///< frames per second on average (0 if unknown)
  std::string codec;                   ///< FFmpeg codec name: "h264", "vp9", "mpeg4", ...
  std::string container;               ///< FFmpeg demuxer name: "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"
  int rotation_degrees = 0;            ///< clockwise turn (0, 90, 180, 270) applied to decoded frames to show them upright
};

/// One sampled frame as packed RGB.
struct DecodedFrame {
  double sample_time_seconds = 0;  ///< t_i, the time this sample was asked for (from the first frame)
  double timestamp_seconds = 0;    ///< presentation time of the frame shown at t_i (from the first frame); <= t_i
  int64_t index = 0;               ///< display-order frame number: exact for a constant frame rate, round(timestamp * average_fps) otherwise
  int width = 0;                   ///< W
  int height = 0;                  ///< H
  std::vector<uint8_t> rgb;        ///< [H, W, 3] row-major, R G B per pixel
};

/// How sample_frames_uniform decodes. The defaults are the fast path; the
/// switches exist so tests and the benchmark can compare it with the plain one.
struct FrameSamplingOptions {
  int width = 0;               ///< output width; 0 = native (or from height, keeping the aspect ratio)
  int height = 0;              ///< output height; 0 = native (or from width, keeping the aspect ratio)
  bool seek = true;            ///< jump to the keyframe before a target when that skips frames
  bool skip_unneeded = true;   ///< do not decode non-reference frames that are no target
  int threads = 0;             ///< decoder threads; 0 = FFmpeg's choice (one per core)
};

/// Reads the headers of a video file.
/// Throws std::runtime_error("<path>: <problem>") when the file is missing,
/// not a video (text, a still image, audio only), or has no decoder here.
VideoInfo probe_video(const std::string& path);

/// Decodes num_frames frames sampled uniformly in time (see the top of this
/// file), as RGB of the displayed size, or resized to width x height
/// (bicubic; the size after rotation). Always returns exactly num_frames
/// frames in time order: when the clip has fewer frames than samples, a
/// frame that stays on screen across several t_i is returned once per t_i
/// (same index and timestamp).
/// Throws std::invalid_argument when num_frames < 1 or a size or the thread
/// count is negative,
/// std::runtime_error("<path>: <problem>") when the file is missing, not a
/// video, has no decoder, holds no decodable frame, or ends well before the
/// duration its header declares (truncated). Never returns partial output.
std::vector<DecodedFrame> sample_frames_uniform(const std::string& path, int num_frames,
                                                const FrameSamplingOptions& options);

/// Same, with the default options and an optional output size.
std::vector<DecodedFrame> sample_frames_uniform(const std::string& path, int num_frames,
                                                int resize_width = 0, int resize_height = 0);

/// Writes frame as an 8-bit RGB PNG file (OpenCV, kept behind this library).
/// Throws std::runtime_error("<path>: cannot write PNG ...") on failure.
void write_frame_png(const DecodedFrame& frame, const std::string& path);

}  // namespace namm
