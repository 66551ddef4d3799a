// Writing RGB frames to a video file with FFmpeg's libraries (libavformat,
// libavcodec, libswscale): H.264 (libx264) in MP4 by default, any FFmpeg
// encoder by name, yuv420p. Used to store the synthetic video scenes
// (vision/video_scenes.h) as ordinary clips a user's player or our decoder
// can open.
//
// Deterministic: identical frames and options give identical file bytes
// (one encoder thread, fixed parameters, FFmpeg's bit-exact flags so no
// version strings or clocks enter the container).
// Atomic: frames go to a unique temporary beside path; finish() renames it over path, so a
// reader never sees a half-written clip and a failure leaves no file.
//
// Not here: decoding (vision/video_decoder.h), audio, hardware encoders.
// FFmpeg's headers are confined to video_encoder.cpp (a firewall).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace namm {

/// How frames are compressed. The defaults give small, near-lossless clips.
struct VideoEncoderOptions {
  std::string codec = "libx264";  ///< FFmpeg encoder name (libx264, libx265, libvpx-vp9, mpeg4, ...).
  std::string format;             ///< container (FFmpeg muxer name); empty = guessed from the path.
  int crf = 18;                   ///< constant rate factor for x264/x265/vpx (lower = better); ignored by others.
  std::string preset = "medium";  ///< x264/x265 preset; ignored by others.
  int64_t bit_rate = 0;           ///< bits/s for encoders without CRF (mpeg4); 0 = 2 bits per pixel per frame.
  int gop_size = 0;               ///< frames between keyframes; 0 = one keyframe per second.
};

/// Throws std::invalid_argument ("unknown encoder 'x'", "encoder 'x' is not a
/// video encoder" or "... does not take yuv420p frames") unless options name a
/// usable encoder, and "unknown container format" for a bad format (or, with
/// no format, a path whose name tells no container); lets a program reject
/// options before it renders anything.
void check_video_encoder_options(const VideoEncoderOptions& options, const std::string& path = "");

/// Streams RGB frames [H, W, 3] uint8 into a video file.
///
///   VideoEncoder encoder(path, width, height, fps);
///   for (...) encoder.write_frame(rgb);   // H*W*3 bytes, row-major RGB
///   encoder.finish();                     // flush, close, rename into place
///
/// Errors throw std::runtime_error("video encoder: <path>: <why>") (one line);
/// destroying an unfinished encoder deletes its temporary file.
class VideoEncoder {
 public:
  /// Opens a unique temporary beside path for writing. width and height must be even and
  /// positive (yuv420p); fps > 0. Throws std::invalid_argument for bad sizes
  /// or fps, std::runtime_error for an unknown codec or an unwritable path.
  VideoEncoder(const std::string& path, int width, int height, double fps,
               const VideoEncoderOptions& options = {});
  ~VideoEncoder();
  VideoEncoder(const VideoEncoder&) = delete;
  VideoEncoder& operator=(const VideoEncoder&) = delete;

  /// Appends one frame: rgb points at height*width*3 bytes (row-major, RGB).
  void write_frame(const uint8_t* rgb);
  /// Same, checking the size (height*width*3).
  void write_frame(const std::vector<uint8_t>& rgb);
  /// Flushes the encoder, writes the trailer and renames the temporary over
  /// path. Must be called once; throws if no frame was written.
  void finish();

  /// Frames written so far.
  int64_t frames_written() const;
  /// The final path (not the temporary).
  const std::string& path() const;

 private:
  struct State;
  /// The constructor's steps after the temporary file exists.
  void open_stream();
  std::unique_ptr<State> state_;
};

/// Encodes frames (each [H, W, 3] RGB, height*width*3 bytes) to path in one call.
void encode_video(const std::string& path, const std::vector<std::vector<uint8_t>>& frames_rgb,
                  int width, int height, double fps, const VideoEncoderOptions& options = {});

}  // namespace namm
