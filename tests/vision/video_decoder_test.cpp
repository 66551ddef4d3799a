// Pins probing and uniform sampling on the clips made by
// tests/fixtures/video/make_video_fixtures.sh: frame n of every 3 s, 10 fps
// clip is a flat gray of level 8 + 8n with a red 16x16 marker top-left, so
// a pixel tells which frame was sampled and the marker tells orientation.
#include "vision/video_decoder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace namm {
namespace {

std::string fixture(const std::string& name) { return std::string(NAMM_FIXTURES_DIR) + "/video/" + name; }

const uint8_t* pixel(const DecodedFrame& frame, int y, int x) {
  return frame.rgb.data() + (static_cast<size_t>(y) * frame.width + x) * 3;
}

// the frame number a gray clip shows, read at the centre (away from the marker); -1 if not gray
int gray_frame_number(const DecodedFrame& frame) {
  const uint8_t* p = pixel(frame, frame.height / 2, frame.width / 2);
  if (std::abs(p[0] - p[1]) > 4 || std::abs(p[1] - p[2]) > 4) return -1;
  return static_cast<int>(std::lround((p[1] - 8) / 8.0));
}

bool is_red(const uint8_t* p) { return p[0] > 230 && p[1] < 25 && p[2] < 25; }

// frame on screen at t_k = (k + 0.5) * 3 s / n in a 30-frame, 10 fps clip
int expected_cfr_frame(int k, int n) { return (2 * k + 1) * 30 / (2 * n); }

FrameSamplingOptions plain_path() {
  FrameSamplingOptions options;
  options.seek = false;
  options.skip_unneeded = false;
  options.threads = 1;
  return options;
}

TEST(ProbeVideo, ReportsSizeDurationRateAndCodec) {
  const VideoInfo info = probe_video(fixture("clip_h264.mp4"));
  EXPECT_EQ(info.width, 64);
  EXPECT_EQ(info.height, 48);
  EXPECT_NEAR(info.duration_seconds, 3.0, 1e-6);
  EXPECT_EQ(info.frame_count_estimate, 30);
  EXPECT_NEAR(info.average_fps, 10.0, 1e-9);
  EXPECT_EQ(info.codec, "h264");
  EXPECT_NE(info.container.find("mp4"), std::string::npos);
  EXPECT_EQ(info.rotation_degrees, 0);
}

TEST(ProbeVideo, EstimatesFrameCountWhereTheContainerHasNone) {
  const VideoInfo info = probe_video(fixture("clip_vp9.webm"));  // Matroska stores no frame count
  EXPECT_EQ(info.codec, "vp9");
  EXPECT_NEAR(info.duration_seconds, 3.0, 1e-6);
  EXPECT_EQ(info.frame_count_estimate, 30);
}

class EveryContainer : public testing::TestWithParam<const char*> {};

TEST_P(EveryContainer, SampleIsTheFrameOnScreenAtEachSampleTime) {
  const std::string path = fixture(GetParam());
  for (int n : {1, 4, 7, 30}) {
    const std::vector<DecodedFrame> frames = sample_frames_uniform(path, n);
    ASSERT_EQ(frames.size(), static_cast<size_t>(n));
    for (int k = 0; k < n; ++k) {
      const DecodedFrame& frame = frames[k];
      SCOPED_TRACE(std::string(GetParam()) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
      ASSERT_EQ(frame.width, 64);
      ASSERT_EQ(frame.height, 48);
      ASSERT_EQ(frame.rgb.size(), 64u * 48u * 3u);
      const int expected = expected_cfr_frame(k, n);
      EXPECT_EQ(gray_frame_number(frame), expected);
      EXPECT_EQ(frame.index, expected);
      EXPECT_NEAR(frame.timestamp_seconds, expected * 0.1, 1e-3);
      EXPECT_NEAR(frame.sample_time_seconds, (k + 0.5) * 3.0 / n, 1e-3);
      EXPECT_LE(frame.timestamp_seconds, frame.sample_time_seconds + 1e-9);
      EXPECT_TRUE(is_red(pixel(frame, 4, 4))) << "marker top-left, channels in R G B order";
      EXPECT_FALSE(is_red(pixel(frame, 43, 59)));
    }
  }
}

TEST_P(EveryContainer, FastPathDecodesTheSameFramesAsThePlainPath) {
  const std::string path = fixture(GetParam());
  const std::vector<DecodedFrame> fast = sample_frames_uniform(path, 9);
  const std::vector<DecodedFrame> plain = sample_frames_uniform(path, 9, plain_path());
  ASSERT_EQ(fast.size(), plain.size());
  for (size_t k = 0; k < fast.size(); ++k) {
    EXPECT_EQ(fast[k].timestamp_seconds, plain[k].timestamp_seconds) << "k=" << k;
    EXPECT_EQ(fast[k].rgb, plain[k].rgb) << "k=" << k;
  }
}

INSTANTIATE_TEST_SUITE_P(VideoDecoder, EveryContainer,
                         testing::Values("clip_h264.mp4", "clip_vp9.webm", "clip_mpeg4.avi", "clip_h264.mkv",
                                         "clip_h264.mov"),
                         [](const testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

TEST(SampleFramesUniform, OneSampleIsTheMiddleFrame) {
  const std::vector<DecodedFrame> frames = sample_frames_uniform(fixture("clip_h264.mp4"), 1);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(gray_frame_number(frames[0]), 15);
  EXPECT_NEAR(frames[0].sample_time_seconds, 1.5, 1e-6);
}

TEST(SampleFramesUniform, MoreSamplesThanFramesRepeatTheFrameOnScreen) {
  const int n = 100;  // the clip has 30 frames
  const std::vector<DecodedFrame> frames = sample_frames_uniform(fixture("clip_h264.mp4"), n);
  ASSERT_EQ(frames.size(), static_cast<size_t>(n));
  int distinct = 0;
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(gray_frame_number(frames[k]), expected_cfr_frame(k, n)) << "k=" << k;
    if (k == 0 || frames[k].index != frames[k - 1].index) {
      ++distinct;
    } else {
      EXPECT_EQ(frames[k].rgb, frames[k - 1].rgb) << "a repeated frame is a copy, k=" << k;
      EXPECT_EQ(frames[k].timestamp_seconds, frames[k - 1].timestamp_seconds);
    }
  }
  EXPECT_EQ(distinct, 30);
}

TEST(SampleFramesUniform, VariableFrameRateSamplesByTimestamp) {
  // frames 0-9 every 0.1 s, 10-19 every 0.05 s from 1.0 s, 20-29 every 0.15 s from 1.5 s
  std::vector<double> shown;
  for (int f = 0; f < 30; ++f) shown.push_back(f < 10 ? f * 0.1 : f < 20 ? 1.0 + (f - 10) * 0.05 : 1.5 + (f - 20) * 0.15);
  const std::string path = fixture("vfr.mp4");
  const VideoInfo info = probe_video(path);
  ASSERT_GT(info.duration_seconds, 2.7);
  ASSERT_LT(info.duration_seconds, 3.01);
  const int n = 16;
  const std::vector<DecodedFrame> frames = sample_frames_uniform(path, n);
  ASSERT_EQ(frames.size(), static_cast<size_t>(n));
  int dense_part = 0;
  for (int k = 0; k < n; ++k) {
    const double t = (k + 0.5) * info.duration_seconds / n;
    int expected = 0;
    while (expected + 1 < 30 && shown[expected + 1] <= t + 1e-4) ++expected;
    EXPECT_EQ(gray_frame_number(frames[k]), expected) << "k=" << k << " t=" << t;
    EXPECT_NEAR(frames[k].timestamp_seconds, shown[expected], 2e-3) << "k=" << k;
    dense_part += expected >= 10 && expected < 20;
  }
  // a frame-count split (frame i * 30 / 16) would put 5 samples in frames 10-19
  EXPECT_EQ(dense_part, 3);
}

TEST(SampleFramesUniform, OddSizeKeepsEveryPixel) {
  const std::vector<DecodedFrame> frames = sample_frames_uniform(fixture("odd_321x241.webm"), 5);
  ASSERT_EQ(frames.size(), 5u);
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(frames[k].width, 321);
    EXPECT_EQ(frames[k].height, 241);
    EXPECT_EQ(frames[k].rgb.size(), 321u * 241u * 3u);
    EXPECT_EQ(gray_frame_number(frames[k]), expected_cfr_frame(k, 5));
    // the last row and column are picture, not padding (the very corner
    // pixel is off in the encoded clip itself, as `ffmpeg -i` shows too)
    EXPECT_NEAR(pixel(frames[k], 240, 300)[1], 8 + 8 * expected_cfr_frame(k, 5), 4);
    EXPECT_NEAR(pixel(frames[k], 200, 320)[1], 8 + 8 * expected_cfr_frame(k, 5), 4);
  }
}

TEST(SampleFramesUniform, RotationMetadataTurnsFramesUpright) {
  // rotate90.mp4 is displayed turned 90 degrees counter-clockwise (marker
  // bottom-left), rotate270.mp4 clockwise (marker top-right), as ffmpeg -i shows them
  struct Case {
    const char* name;
    int rotation, marker_y, marker_x;
  };
  for (const Case& c : {Case{"rotate90.mp4", 270, 59, 4}, Case{"rotate270.mp4", 90, 4, 43}}) {
    SCOPED_TRACE(c.name);
    const VideoInfo info = probe_video(fixture(c.name));
    EXPECT_EQ(info.rotation_degrees, c.rotation);
    EXPECT_EQ(info.width, 48);
    EXPECT_EQ(info.height, 64);
    const std::vector<DecodedFrame> frames = sample_frames_uniform(fixture(c.name), 3);
    for (int k = 0; k < 3; ++k) {
      ASSERT_EQ(frames[k].width, 48);
      ASSERT_EQ(frames[k].height, 64);
      EXPECT_EQ(gray_frame_number(frames[k]), expected_cfr_frame(k, 3));
      EXPECT_TRUE(is_red(pixel(frames[k], c.marker_y, c.marker_x)));
      EXPECT_FALSE(is_red(pixel(frames[k], 4, 4)) && c.marker_y != 4);
      int red = 0;
      for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 48; ++x) red += is_red(pixel(frames[k], y, x));
      EXPECT_NEAR(red, 16 * 16, 40);
    }
  }
}

TEST(SampleFramesUniform, ResizesToTheRequestedDisplayedSize) {
  const std::vector<DecodedFrame> frames = sample_frames_uniform(fixture("clip_h264.mp4"), 2, 32, 24);
  ASSERT_EQ(frames[0].width, 32);
  ASSERT_EQ(frames[0].height, 24);
  EXPECT_EQ(frames[0].rgb.size(), 32u * 24u * 3u);
  EXPECT_TRUE(is_red(pixel(frames[0], 2, 2)));
  EXPECT_EQ(gray_frame_number(frames[1]), expected_cfr_frame(1, 2));

  // the size is the displayed (upright) one; one side 0 keeps the aspect ratio
  const std::vector<DecodedFrame> turned = sample_frames_uniform(fixture("rotate90.mp4"), 1, 24, 0);
  ASSERT_EQ(turned[0].width, 24);
  ASSERT_EQ(turned[0].height, 32);
  EXPECT_TRUE(is_red(pixel(turned[0], 29, 2)));
}

TEST(SampleFramesUniform, SeeksAcrossALongClipToTheRightFrames) {
  // 200 frames, keyframe every 10; frame n: R = 8 + 8 (n mod 30), G = 8 + 8 floor(n / 30)
  const std::string path = fixture("seek_20s.mp4");
  for (int n : {1, 7, 32, 150}) {
    const std::vector<DecodedFrame> fast = sample_frames_uniform(path, n);
    const std::vector<DecodedFrame> plain = sample_frames_uniform(path, n, plain_path());
    for (int k = 0; k < n; ++k) {
      const int expected = (2 * k + 1) * 200 / (2 * n);
      const uint8_t* p = pixel(fast[k], 24, 32);
      const int number = static_cast<int>(std::lround((p[0] - 8) / 8.0)) + 30 * static_cast<int>(std::lround((p[1] - 8) / 8.0));
      EXPECT_EQ(number, expected) << "n=" << n << " k=" << k;
      EXPECT_EQ(fast[k].index, expected);
      EXPECT_EQ(fast[k].rgb, plain[k].rgb) << "n=" << n << " k=" << k;
    }
  }
}

// the error says which file and what is wrong with it, in one line
void expect_error(const std::string& name, const std::string& problem) {
  const std::string path = fixture(name);
  try {
    sample_frames_uniform(path, 4);
    ADD_FAILURE() << name << ": no exception";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(name), std::string::npos) << message;
    EXPECT_NE(message.find(problem), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(SampleFramesUniform, MissingFileNamesTheFile) { expect_error("no_such_clip.mp4", "no such file"); }
TEST(SampleFramesUniform, TextFileIsNotAVideo) { expect_error("not_a_video.txt", "not a video"); }
TEST(SampleFramesUniform, StillImageIsNotAVideo) { expect_error("image.png", "still image"); }
TEST(SampleFramesUniform, EmptyFileIsNotAVideo) { expect_error("empty.mp4", "empty file"); }
TEST(SampleFramesUniform, ClipWithoutFramesIsAnError) { expect_error("no_frames.mp4", "no video frames"); }
TEST(SampleFramesUniform, TruncatedClipIsAnError) {
  expect_error("truncated.mp4", "truncated");
  // with many samples the decoder seeks into the missing part: still an error
  EXPECT_THROW(sample_frames_uniform(fixture("truncated.mp4"), 30), std::runtime_error);
  EXPECT_THROW(sample_frames_uniform(fixture("truncated.mp4"), 30, plain_path()), std::runtime_error);
}
TEST(SampleFramesUniform, CodecWithoutDecoderIsAnError) { expect_error("unknown_codec.avi", "no decoder"); }

TEST(SampleFramesUniform, NumFramesBelowOneIsInvalid) {
  EXPECT_THROW(sample_frames_uniform(fixture("clip_h264.mp4"), 0), std::invalid_argument);
  EXPECT_THROW(sample_frames_uniform(fixture("clip_h264.mp4"), -3), std::invalid_argument);
  EXPECT_THROW(sample_frames_uniform(fixture("clip_h264.mp4"), 2, -1, 10), std::invalid_argument);
}

TEST(ProbeVideo, ErrorsNameTheFile) {
  for (const char* name : {"no_such_clip.mp4", "not_a_video.txt", "image.png", "unknown_codec.avi"}) {
    try {
      probe_video(fixture(name));
      ADD_FAILURE() << name << ": no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  const VideoInfo empty = probe_video(fixture("no_frames.mp4"));
  EXPECT_EQ(empty.frame_count_estimate, 0);
  EXPECT_EQ(empty.duration_seconds, 0.0);
}

}  // namespace
}  // namespace namm
