// FFmpeg's C headers live only in this file (a firewall): the rest of the
// tree sees VideoEncoder and plain byte vectors.
#include "vision/video_encoder.h"

#include "core/atomic_file.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace namm {
namespace {

std::string av_error_text(int err) {
  char buffer[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, buffer, sizeof(buffer));
  return buffer;
}

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw std::runtime_error("video encoder: " + path + ": " + why);
}

// every FFmpeg handle in a unique_ptr with its own deleter
struct CodecContextDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsDeleter {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
// closes the file (if opened) before freeing the muxer context
struct FormatContextDeleter {
  void operator()(AVFormatContext* f) const {
    if (f->pb && !(f->oformat->flags & AVFMT_NOFILE)) avio_closep(&f->pb);
    avformat_free_context(f);
  }
};

// x264 and friends log every clip's statistics at INFO; a tool that writes
// hundreds of clips should stay quiet unless the user asked for FFmpeg's logs.
void quiet_ffmpeg_info_logs() {
  static const bool once = [] {
    if (av_log_get_level() == AV_LOG_INFO) av_log_set_level(AV_LOG_ERROR);
    return true;
  }();
  (void)once;
}

bool supports_yuv420p(const AVCodec* codec) {
  if (!codec->pix_fmts) return true;  // the encoder does not say: let open decide
  for (const AVPixelFormat* p = codec->pix_fmts; *p != AV_PIX_FMT_NONE; ++p)
    if (*p == AV_PIX_FMT_YUV420P) return true;
  return false;
}

}  // namespace

void check_video_encoder_options(const VideoEncoderOptions& options, const std::string& path) {
  const AVCodec* codec = avcodec_find_encoder_by_name(options.codec.c_str());
  if (!codec) throw std::invalid_argument("unknown encoder '" + options.codec + "'");
  if (codec->type != AVMEDIA_TYPE_VIDEO) throw std::invalid_argument("encoder '" + options.codec + "' is not a video encoder");
  if (!supports_yuv420p(codec)) throw std::invalid_argument("encoder '" + options.codec + "' does not take yuv420p frames");
  if (!options.format.empty() && !av_guess_format(options.format.c_str(), nullptr, nullptr))
    throw std::invalid_argument("unknown container format '" + options.format + "'");
  if (options.format.empty() && !path.empty() && !av_guess_format(nullptr, path.c_str(), nullptr))
    throw std::invalid_argument("cannot tell the container from the file name '" + path + "'");
}

struct VideoEncoder::State {
  std::string path, target_path, tmp_path;  // as given, after following symlinks, the temporary
  std::vector<uint8_t> padded;  // the source frame plus zeroed slack for SIMD over-reads
  int width = 0, height = 0;
  int64_t frames = 0;
  bool finished = false;
  std::unique_ptr<AVFormatContext, FormatContextDeleter> format;
  std::unique_ptr<AVCodecContext, CodecContextDeleter> codec;
  std::unique_ptr<AVFrame, FrameDeleter> frame;
  std::unique_ptr<AVPacket, PacketDeleter> packet;
  std::unique_ptr<SwsContext, SwsDeleter> sws;
  AVStream* stream = nullptr;  // owned by format

  // Sends frame (nullptr = flush) and writes every packet the encoder returns.
  void send(AVFrame* f) {
    int err = avcodec_send_frame(codec.get(), f);
    if (err < 0) fail(path, "encoding frame " + std::to_string(frames) + " failed: " + av_error_text(err));
    while (true) {
      err = avcodec_receive_packet(codec.get(), packet.get());
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return;
      if (err < 0) fail(path, "encoder failed: " + av_error_text(err));
      av_packet_rescale_ts(packet.get(), codec->time_base, stream->time_base);
      packet->stream_index = stream->index;
      err = av_interleaved_write_frame(format.get(), packet.get());  // takes the packet's data
      if (err < 0) fail(path, "writing a packet failed: " + av_error_text(err));
    }
  }
};

VideoEncoder::VideoEncoder(const std::string& path, int width, int height, double fps,
                           const VideoEncoderOptions& options)
    : state_(std::make_unique<State>()) {
  if (width <= 0 || height <= 0 || width % 2 != 0 || height % 2 != 0)
    throw std::invalid_argument("video encoder: " + path + ": width and height must be even and positive (yuv420p), got " +
                                std::to_string(width) + "x" + std::to_string(height));
  if (!(fps > 0 && fps <= 1000))
    throw std::invalid_argument("video encoder: " + path + ": fps must be in (0, 1000], got " + std::to_string(fps));
  quiet_ffmpeg_info_logs();
  State& s = *state_;
  s.path = path;
  // a symlink is written through; a device or FIFO there is refused, never replaced
  check_output_file(path);
  s.target_path = resolve_output_path(path);
  s.tmp_path = unique_temp_path(s.target_path);
  s.width = width;
  s.height = height;

  // the container is guessed from the final name: the temporary's ".tmp" says nothing
  const AVOutputFormat* oformat =
      av_guess_format(options.format.empty() ? nullptr : options.format.c_str(), path.c_str(), nullptr);
  if (!oformat)
    fail(path, options.format.empty() ? "cannot tell the container from the file name (set a format such as mp4)"
                                      : "unknown container format '" + options.format + "'");
  AVFormatContext* raw_format = nullptr;
  int err = avformat_alloc_output_context2(&raw_format, oformat, nullptr, s.tmp_path.c_str());
  if (err < 0 || !raw_format) fail(path, "cannot create the muxer: " + av_error_text(err));
  s.format.reset(raw_format);
  s.format->flags |= AVFMT_FLAG_BITEXACT;  // no library version or clock in the container

  const AVCodec* codec = avcodec_find_encoder_by_name(options.codec.c_str());
  if (!codec) fail(path, "unknown encoder '" + options.codec + "'");
  if (codec->type != AVMEDIA_TYPE_VIDEO) fail(path, "encoder '" + options.codec + "' is not a video encoder");
  if (!supports_yuv420p(codec)) fail(path, "encoder '" + options.codec + "' does not take yuv420p frames");

  s.stream = avformat_new_stream(s.format.get(), nullptr);
  if (!s.stream) fail(path, "cannot add a video stream");
  s.codec.reset(avcodec_alloc_context3(codec));
  if (!s.codec) fail(path, "cannot allocate the encoder");
  AVCodecContext* c = s.codec.get();
  const AVRational frame_rate = av_d2q(fps, 1 << 20);
  c->width = width;
  c->height = height;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  c->time_base = av_inv_q(frame_rate);
  c->framerate = frame_rate;
  c->sample_aspect_ratio = AVRational{1, 1};
  c->gop_size = options.gop_size > 0 ? options.gop_size : std::max(1, static_cast<int>(fps + 0.5));
  // BT.601 limited range is what swscale produces from RGB24 and what decoders
  // assume for untagged streams; saying so keeps players from guessing.
  c->colorspace = AVCOL_SPC_SMPTE170M;
  c->color_primaries = AVCOL_PRI_SMPTE170M;
  c->color_trc = AVCOL_TRC_SMPTE170M;
  c->color_range = AVCOL_RANGE_MPEG;
  // one thread and bit-exact mode: frame-threaded encoders depend on timing
  c->thread_count = 1;
  c->flags |= AV_CODEC_FLAG_BITEXACT;
  if (s.format->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;

  AVDictionary* codec_options = nullptr;
  const std::string name = codec->name;
  const bool crf_codec = name == "libx264" || name == "libx265" || name.rfind("libvpx", 0) == 0;
  if (crf_codec) {
    av_dict_set(&codec_options, "crf", std::to_string(options.crf).c_str(), 0);
    if (name.rfind("libvpx", 0) == 0) c->bit_rate = 0;  // vpx: constant quality mode
  } else {
    c->bit_rate = options.bit_rate > 0 ? options.bit_rate
                                       : static_cast<int64_t>(2.0 * width * height * fps);
  }
  if (name == "libx264" || name == "libx265") av_dict_set(&codec_options, "preset", options.preset.c_str(), 0);
  if (name == "libx265") av_dict_set(&codec_options, "x265-params", "log-level=error:pools=none:frame-threads=1", 0);
  err = avcodec_open2(c, codec, &codec_options);
  av_dict_free(&codec_options);
  if (err < 0) fail(path, "cannot open encoder '" + options.codec + "': " + av_error_text(err));
  err = avcodec_parameters_from_context(s.stream->codecpar, c);
  if (err < 0) fail(path, "cannot set stream parameters: " + av_error_text(err));
  s.stream->time_base = c->time_base;
  s.stream->avg_frame_rate = frame_rate;

  err = avio_open(&s.format->pb, s.tmp_path.c_str(), AVIO_FLAG_WRITE);
  if (err < 0) fail(path, "cannot open " + s.tmp_path + " for writing: " + av_error_text(err));
  try {
    open_stream();
  } catch (...) {
    // the constructor failed after creating the temporary: no destructor runs
    s.format.reset();
    std::remove(s.tmp_path.c_str());
    throw;
  }
}

void VideoEncoder::open_stream() {
  State& s = *state_;
  const std::string& path = s.path;
  int err = avformat_write_header(s.format.get(), nullptr);
  if (err < 0) fail(path, "cannot write the container header: " + av_error_text(err));

  s.frame.reset(av_frame_alloc());
  s.packet.reset(av_packet_alloc());
  if (!s.frame || !s.packet) fail(path, "out of memory");
  s.frame->format = AV_PIX_FMT_YUV420P;
  s.frame->width = s.width;
  s.frame->height = s.height;
  err = av_frame_get_buffer(s.frame.get(), 0);
  if (err < 0) fail(path, "cannot allocate a frame: " + av_error_text(err));
  // bit-exact, accurately rounded conversion: the same YUV on every CPU
  s.sws.reset(sws_getContext(s.width, s.height, AV_PIX_FMT_RGB24, s.width, s.height, AV_PIX_FMT_YUV420P,
                             SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP | SWS_BITEXACT,
                             nullptr, nullptr, nullptr));
  if (!s.sws) fail(path, "cannot create the RGB to yuv420p converter");
}

VideoEncoder::~VideoEncoder() {
  if (!state_ || state_->finished) return;
  // an abandoned clip: close the temporary and remove it, leave path untouched
  state_->format.reset();
  std::remove(state_->tmp_path.c_str());
}

void VideoEncoder::write_frame(const uint8_t* rgb) {
  State& s = *state_;
  if (s.finished) fail(s.path, "write_frame after finish");
  int err = av_frame_make_writable(s.frame.get());
  if (err < 0) fail(s.path, "frame buffer not writable: " + av_error_text(err));
  // swscale's SIMD may read past the last source row and the encoder may read
  // the planes' alignment padding: both get defined bytes, so the output can
  // only depend on the frame (the file bytes are a function of the frames)
  const size_t row = static_cast<size_t>(3 * s.width);
  s.padded.assign(row * static_cast<size_t>(s.height) + 256, 0);
  std::memcpy(s.padded.data(), rgb, row * static_cast<size_t>(s.height));
  for (int plane = 0; plane < 3; ++plane) {
    const int rows = plane == 0 ? s.height : (s.height + 1) / 2;
    std::memset(s.frame->data[plane], 0, static_cast<size_t>(s.frame->linesize[plane]) * static_cast<size_t>(rows));
  }
  const uint8_t* src[1] = {s.padded.data()};
  const int src_stride[1] = {3 * s.width};
  sws_scale(s.sws.get(), src, src_stride, 0, s.height, s.frame->data, s.frame->linesize);
  s.frame->pts = s.frames;
  s.send(s.frame.get());
  ++s.frames;
}

void VideoEncoder::write_frame(const std::vector<uint8_t>& rgb) {
  const size_t expected = static_cast<size_t>(state_->width) * state_->height * 3;
  if (rgb.size() != expected)
    throw std::invalid_argument("video encoder: " + state_->path + ": frame " + std::to_string(state_->frames) +
                                " has " + std::to_string(rgb.size()) + " bytes, expected " +
                                std::to_string(expected) + " (" + std::to_string(state_->height) + "x" +
                                std::to_string(state_->width) + "x3)");
  write_frame(rgb.data());
}

void VideoEncoder::finish() {
  State& s = *state_;
  if (s.finished) fail(s.path, "finish called twice");
  if (s.frames == 0) fail(s.path, "no frames written");
  s.send(nullptr);  // drain delayed frames (B-frames, lookahead)
  int err = av_write_trailer(s.format.get());
  if (err < 0) fail(s.path, "cannot write the container trailer: " + av_error_text(err));
  err = avio_closep(&s.format->pb);
  if (err < 0) fail(s.path, "closing " + s.tmp_path + " failed: " + av_error_text(err));
  if (std::rename(s.tmp_path.c_str(), s.target_path.c_str()) != 0)
    fail(s.path, "cannot rename " + s.tmp_path + " into place: " + std::string(std::strerror(errno)));
  s.finished = true;
}

int64_t VideoEncoder::frames_written() const { return state_->frames; }

const std::string& VideoEncoder::path() const { return state_->path; }

void encode_video(const std::string& path, const std::vector<std::vector<uint8_t>>& frames_rgb, int width,
                  int height, double fps, const VideoEncoderOptions& options) {
  if (frames_rgb.empty()) throw std::invalid_argument("video encoder: " + path + ": no frames to encode");
  VideoEncoder encoder(path, width, height, fps, options);
  for (const std::vector<uint8_t>& frame : frames_rgb) encoder.write_frame(frame);
  encoder.finish();
}

}  // namespace namm
