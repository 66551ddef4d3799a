// FFmpeg-backed probing and uniform frame sampling (see video_decoder.h),
// and PNG writing with OpenCV. FFmpeg's and OpenCV's headers live only in
// this file, so nothing else pays for them.
//
// How a sample is found. Targets T_0 < ... < T_{N-1} are presentation
// timestamps in the stream's time base. Frames leave the decoder in display
// order; when a frame with pts > T_k comes out, the frame before it (the last
// one with pts <= T_k) is the sample for T_k. What makes it fast:
//   - seeking: when the keyframe before T_k (from the container's index) lies
//     beyond what has been read, jump there instead of decoding up to it;
//   - skipping: a packet whose frame cannot be a sample (another frame is
//     known to be displayed after it and no later than the next target) is
//     sent with skip_frame = NONREF, so the decoder drops it unless other
//     frames reference it. "Known" needs a little read-ahead: packets are
//     demuxed into a queue, and a reorder bound (below) says when no packet
//     still unread can have a pts <= T;
//   - frame threads, and RGB conversion of the N chosen frames only.
#include "vision/video_decoder.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/display.h>
#include <libavutil/mem.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <queue>
#include <set>
#include <stdexcept>

namespace namm {
namespace {

struct FormatCloser {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct CodecFreer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameFreer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct SwsFreer {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
struct AvFreer {
  void operator()(uint8_t* p) const { av_free(p); }
};
using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using SwsPtr = std::unique_ptr<SwsContext, SwsFreer>;

constexpr int64_t kNoPts = AV_NOPTS_VALUE;

std::string av_error_text(int error) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(error, text, sizeof text);
  return text;
}

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw std::runtime_error(path + ": " + problem);
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f s", seconds);
  return text;
}

// damaged input makes FFmpeg's demuxers and decoders print warnings on
// stderr; a library should not, and our exceptions carry what matters. Only
// the default level is lowered, so a program that chose a level keeps it.
void quiet_ffmpeg_logs() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (av_log_get_level() == AV_LOG_INFO) av_log_set_level(AV_LOG_FATAL);
  });
}

// demuxers that read one still image per file: a PNG or JPEG opens as a
// one-frame "video", which is not what a caller of this file means.
bool is_still_image_demuxer(const std::string& name) {
  if (name == "image2" || name == "image2pipe") return true;
  const std::string suffix = "_pipe";
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// clockwise turn in degrees (0, 90, 180, 270) that shows the stream upright.
// The display matrix holds the counter-clockwise rotation that maps stored
// pixels to display, as ffmpeg's own autorotation reads it.
int rotation_of(const AVStream* stream) {
  size_t size = 0;
  const uint8_t* matrix = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, &size);
  if (matrix == nullptr || size < 9 * sizeof(int32_t)) return 0;
  const double counter_clockwise = av_display_rotation_get(reinterpret_cast<const int32_t*>(matrix));
  if (!std::isfinite(counter_clockwise)) return 0;
  const long quarter_turns = std::lround(-counter_clockwise / 90.0);
  return static_cast<int>(((quarter_turns % 4) + 4) % 4) * 90;
}

/// An opened container and the video stream we read from it.
struct Clip {
  std::string path;
  FormatPtr format;
  AVStream* stream = nullptr;
  const AVCodec* decoder = nullptr;
  int rotation = 0;                 // clockwise degrees
  int64_t start_pts = 0;            // first presentation timestamp, stream time base
  int64_t duration_ticks = 0;       // first frame to end of last frame; <= 0 if unknown
  bool duration_from_stream = false;  // from the video stream itself (not the whole file)
  double fps = 0;

  double seconds(int64_t ticks) const { return static_cast<double>(ticks) * av_q2d(stream->time_base); }
};

std::string fourcc_text(uint32_t tag) {
  char text[AV_FOURCC_MAX_STRING_SIZE] = {};
  av_fourcc_make_string(text, tag);
  return text;
}

Clip open_clip(const std::string& path) {
  quiet_ffmpeg_logs();
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (!fs::exists(status)) fail(path, "no such file");
  if (fs::is_directory(status)) fail(path, "is a directory, not a video file");
  // a FIFO or device would make FFmpeg wait or read for ever
  if (!fs::is_regular_file(status)) fail(path, "is not a regular file (a FIFO, device or socket), not a video file");
  if (fs::is_regular_file(status) && fs::file_size(path, error) == 0 && !error) fail(path, "empty file (0 bytes), not a video");

  Clip clip;
  clip.path = path;
  AVFormatContext* raw = nullptr;
  int err = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (err < 0) fail(path, "not a video file FFmpeg can read (" + av_error_text(err) + ")");
  clip.format.reset(raw);
  AVFormatContext* format = clip.format.get();
  err = avformat_find_stream_info(format, nullptr);
  if (err < 0) fail(path, "cannot read its stream information (" + av_error_text(err) + ")");
  const std::string demuxer = format->iformat->name;
  if (is_still_image_demuxer(demuxer)) fail(path, "is a still image (" + demuxer + "), not a video");

  // the largest video stream that is not cover art (an attached picture)
  int64_t best_area = -1;
  for (unsigned i = 0; i < format->nb_streams; ++i) {
    AVStream* stream = format->streams[i];
    if (stream->codecpar->codec_type != AVMEDIA_TYPE_VIDEO) continue;
    if (stream->disposition & AV_DISPOSITION_ATTACHED_PIC) continue;
    const int64_t area = int64_t{stream->codecpar->width} * stream->codecpar->height;
    if (area > best_area) {
      best_area = area;
      clip.stream = stream;
    }
  }
  if (clip.stream == nullptr) {
    fail(path, "has no video stream (container '" + demuxer + "' with " + std::to_string(format->nb_streams) +
                   " other stream" + (format->nb_streams == 1 ? "" : "s") + ")");
  }
  const AVCodecParameters* codecpar = clip.stream->codecpar;
  clip.decoder = avcodec_find_decoder(codecpar->codec_id);
  if (clip.decoder == nullptr) {
    fail(path, std::string("no decoder in this FFmpeg for its video codec '") + avcodec_get_name(codecpar->codec_id) +
                   "' (codec tag '" + fourcc_text(codecpar->codec_tag) + "')");
  }
  clip.rotation = rotation_of(clip.stream);

  const AVRational time_base = clip.stream->time_base;
  if (clip.stream->start_time != kNoPts) {
    clip.start_pts = clip.stream->start_time;
  } else if (format->start_time != kNoPts) {
    clip.start_pts = av_rescale_q(format->start_time, AV_TIME_BASE_Q, time_base);
  }
  if (clip.stream->duration != kNoPts && clip.stream->duration > 0) {
    clip.duration_ticks = clip.stream->duration;
    clip.duration_from_stream = true;
  } else if (format->duration != kNoPts && format->duration > 0) {
    // the file's span may start before this stream (another stream starting earlier)
    const int64_t file_start = format->start_time != kNoPts ? format->start_time : 0;
    clip.duration_ticks = av_rescale_q(file_start + format->duration, AV_TIME_BASE_Q, time_base) - clip.start_pts;
  }
  const AVRational rate = clip.stream->avg_frame_rate.num > 0 && clip.stream->avg_frame_rate.den > 0
                              ? clip.stream->avg_frame_rate
                              : clip.stream->r_frame_rate;
  if (rate.num > 0 && rate.den > 0) clip.fps = av_q2d(rate);
  return clip;
}

// first and end presentation time of the stream's packets, by demuxing the
// whole file without decoding: only for containers that declare no duration.
// Returns {start, end}; end <= start when the stream has no packet.
std::pair<int64_t, int64_t> scan_packet_span(Clip& clip) {
  int64_t first = std::numeric_limits<int64_t>::max(), end = std::numeric_limits<int64_t>::min();
  PacketPtr packet(av_packet_alloc());
  while (av_read_frame(clip.format.get(), packet.get()) >= 0) {
    if (packet->stream_index == clip.stream->index) {
      const int64_t ts = packet->pts != kNoPts ? packet->pts : packet->dts;
      if (ts != kNoPts) {
        first = std::min(first, ts);
        end = std::max(end, ts + std::max<int64_t>(packet->duration, 1));
      }
    }
    av_packet_unref(packet.get());
  }
  if (end == std::numeric_limits<int64_t>::min()) return {0, 0};
  return {first, end};
}

// opens path and makes sure its duration is known (scanning if it must).
Clip open_clip_with_duration(const std::string& path) {
  Clip clip = open_clip(path);
  if (clip.duration_ticks > 0) return clip;
  const auto [first, end] = scan_packet_span(clip);
  if (end <= first) fail(path, "contains no video frames");
  // the scan read to the end; a fresh open is the one rewind every demuxer supports
  Clip fresh = open_clip(path);
  fresh.start_pts = first;
  fresh.duration_ticks = end - first;
  fresh.duration_from_stream = true;
  return fresh;
}

VideoInfo info_of(const Clip& clip) {
  const AVCodecParameters* codecpar = clip.stream->codecpar;
  VideoInfo info;
  info.path = clip.path;
  const bool swap = clip.rotation == 90 || clip.rotation == 270;
  info.width = swap ? codecpar->height : codecpar->width;
  info.height = swap ? codecpar->width : codecpar->height;
  info.duration_seconds = clip.duration_ticks > 0 ? clip.seconds(clip.duration_ticks) : 0.0;
  info.average_fps = clip.fps;
  info.frame_count_estimate = clip.stream->nb_frames > 0 ? clip.stream->nb_frames
                                                         : std::llround(info.duration_seconds * clip.fps);
  info.codec = avcodec_get_name(codecpar->codec_id);
  info.container = clip.format->iformat->name;
  info.rotation_degrees = clip.rotation;
  return info;
}

/// Decodes the frames shown at given timestamps, in one forward pass with
/// seeks. One instance per call: all state is per clip.
class FrameSampler {
 public:
  FrameSampler(Clip& clip, const FrameSamplingOptions& options, std::vector<int64_t> targets)
      : clip_(clip), options_(options), targets_(std::move(targets)), results_(targets_.size()) {
    AVCodecParameters* codecpar = clip_.stream->codecpar;
    decoder_.reset(avcodec_alloc_context3(clip_.decoder));
    if (!decoder_) fail(clip_.path, "out of memory allocating a decoder");
    int err = avcodec_parameters_to_context(decoder_.get(), codecpar);
    if (err < 0) fail(clip_.path, "cannot configure the decoder (" + av_error_text(err) + ")");
    decoder_->pkt_timebase = clip_.stream->time_base;
    decoder_->thread_count = options_.threads;
    decoder_->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    err = avcodec_open2(decoder_.get(), clip_.decoder, nullptr);
    if (err < 0) {
      fail(clip_.path, std::string("cannot open the ") + clip_.decoder->name + " decoder (" + av_error_text(err) + ")");
    }
    // frames may leave the decoder up to video_delay frames after their
    // packet; two more keep the bound safe when the header understates it.
    reorder_depth_ = static_cast<size_t>(std::max(codecpar->video_delay, 0)) + 2;
    frame_.reset(av_frame_alloc());
    previous_.reset(av_frame_alloc());
    if (!frame_ || !previous_) fail(clip_.path, "out of memory allocating frames");
    index_entries_ = avformat_index_get_entries_count(clip_.stream);
  }

  /// Runs the pass; each result's rgb, timestamp and index are filled.
  std::vector<DecodedFrame> run() {
    // without presentation times in the container (AVI), frames are
    // labelled with the decode times of later packets, shifted by the
    // reorder delay: measure that shift on the first frame, before any seek
    if (read_packet() && !all_pts_known_) calibrating_ = true;
    seek_if_ahead();
    while (next_ < targets_.size()) {
      if (pending_reseek_) {
        reseek_earlier();
        continue;
      }
      if (check_seek_) {
        check_seek_ = false;
        seek_if_ahead();
      }
      if (queue_.empty() && !read_packet()) {
        if (drained_) break;
        // end of input: the frames still inside the decoder may resolve targets or ask for a seek
        drained_ = true;
        decoder_->skip_frame = AVDISCARD_DEFAULT;
        send(nullptr);
        continue;
      }
      PacketPtr packet = std::move(queue_.front());
      queue_.pop_front();
      decoder_->skip_frame = may_be_sample(*packet) ? AVDISCARD_DEFAULT : AVDISCARD_NONREF;
      send(packet.get());
    }
    if (next_ < targets_.size()) finish_at_end();
    return std::move(results_);
  }

 private:
  // demuxes one packet of our stream onto the queue; false at end of input.
  bool read_packet() {
    if (input_ended_) return false;
    while (true) {
      PacketPtr packet(av_packet_alloc());
      if (!packet) fail(clip_.path, "out of memory allocating a packet");
      const int err = av_read_frame(clip_.format.get(), packet.get());
      if (err < 0) {
        input_ended_ = true;
        if (err != AVERROR_EOF) read_error_ = err;
        return false;
      }
      if (packet->stream_index != clip_.stream->index) continue;
      note_read(*packet);
      queue_.push_back(std::move(packet));
      return true;
    }
  }

  void note_read(const AVPacket& packet) {
    const int64_t ts = packet.dts != kNoPts ? packet.dts : packet.pts;
    if (ts != kNoPts) last_read_ts_ = std::max(last_read_ts_, ts);
    if (packet.pts == kNoPts) {
      all_pts_known_ = false;  // no timestamps to reason with: decode everything from here on
      return;
    }
    seen_pts_.insert(packet.pts);
    // a decoder with reorder depth D outputs the smallest of D + 1 pending
    // frames, and no later frame precedes it: so once more than D packets
    // are pending, the smallest bounds every pts still to be read.
    reorder_.push(packet.pts);
    while (reorder_.size() > reorder_depth_) {
      unread_pts_bound_ = std::max(unread_pts_bound_, reorder_.top());
      reorder_.pop();
    }
  }

  // false only when this packet's frame is provably no sample: a frame
  // displayed after it is displayed no later than the next target >= its pts.
  bool may_be_sample(const AVPacket& packet) {
    if (!options_.skip_unneeded || !all_pts_known_ || packet.pts == kNoPts || (packet.flags & AV_PKT_FLAG_KEY)) return true;
    const int64_t pts = packet.pts;
    const auto target = std::lower_bound(targets_.begin() + static_cast<std::ptrdiff_t>(next_), targets_.end(), pts);
    if (target == targets_.end()) return false;  // displayed after every remaining target
    while (true) {
      const auto later = seen_pts_.upper_bound(pts);
      if (later != seen_pts_.end() && *later <= *target) return false;
      if (!all_pts_known_ || unread_pts_bound_ > *target) return true;
      if (!read_packet()) return true;  // end of input: nothing comes after it
    }
  }

  void send(const AVPacket* packet) {
    int err = avcodec_send_packet(decoder_.get(), packet);
    if (err == AVERROR(EAGAIN)) {  // the decoder holds output first: take it, then retry
      receive();
      if (next_ >= targets_.size() || pending_reseek_) return;
      err = avcodec_send_packet(decoder_.get(), packet);
    }
    if (err < 0 && err != AVERROR_EOF && err != AVERROR(EAGAIN)) ++decode_errors_;  // a damaged packet: go on, as ffmpeg does
    receive();
  }

  void receive() {
    while (next_ < targets_.size() && !pending_reseek_) {
      const int err = avcodec_receive_frame(decoder_.get(), frame_.get());
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return;
      if (err < 0) {
        ++decode_errors_;
        return;
      }
      on_frame();
      av_frame_unref(frame_.get());
    }
  }

  void on_frame() {
    int64_t pts = frame_->best_effort_timestamp;
    if (pts == kNoPts) pts = frame_->pts;
    if (pts == kNoPts) pts = have_previous_ ? previous_pts_ + 1 + label_shift_ : clip_.start_pts;
    if (calibrating_) {
      calibrating_ = false;
      label_shift_ = pts - clip_.start_pts;
    }
    pts -= label_shift_;
    ++frames_out_;
    if (just_seeked_) {
      just_seeked_ = false;
      // a keyframe indexed by decode time can be shown after the target:
      // the target's frame is then in an earlier group of pictures
      if (pts > targets_[next_] && !seek_reached_start_) {
        landed_pts_ = pts;
        pending_reseek_ = true;
        return;
      }
    }
    while (next_ < targets_.size() && pts > targets_[next_]) {
      // the frame on screen at T is the previous one; before the first frame, the first
      take(next_, have_previous_ ? previous_.get() : frame_.get(), have_previous_ ? previous_pts_ : pts);
      ++next_;
      check_seek_ = true;
    }
    if (next_ >= targets_.size()) return;
    av_frame_unref(previous_.get());
    if (av_frame_ref(previous_.get(), frame_.get()) < 0) fail(clip_.path, "out of memory keeping a frame");
    previous_pts_ = pts;
    have_previous_ = true;
  }

  void finish_at_end() {
    const double declared_end = clip_.seconds(clip_.duration_ticks);
    if (frames_out_ == 0) {
      std::string why = "no decodable video frames";
      if (read_error_ != 0) why += " (" + av_error_text(read_error_) + ")";
      if (decode_errors_ > 0) why += " (" + std::to_string(decode_errors_) + " packets failed to decode)";
      fail(clip_.path, why);
    }
    if (!have_previous_) {  // a seek into the declared span found nothing to decode
      fail(clip_.path, "truncated or damaged: no decodable frame near " +
                           seconds_text(clip_.seconds(targets_[next_] - clip_.start_pts)) +
                           " although its header declares " + seconds_text(declared_end));
    }
    // targets past the last frame: fine when the clip really ends there,
    // an error when the header promised much more (a cut-off file)
    const double frame_seconds = clip_.fps > 0 ? 1.0 / clip_.fps : 0.0;
    const double data_end = clip_.seconds(previous_pts_ - clip_.start_pts) + frame_seconds;
    const double tolerance = std::max(clip_.duration_from_stream ? 0.5 : 1.0, 3 * frame_seconds);
    if (declared_end - data_end > tolerance && clip_.seconds(targets_.back() - clip_.start_pts) > data_end) {
      fail(clip_.path, "truncated or damaged: its video data ends at " + seconds_text(data_end) +
                           " but its header declares " + seconds_text(declared_end));
    }
    while (next_ < targets_.size()) {
      take(next_, previous_.get(), previous_pts_);
      ++next_;
    }
  }

  // seeks to the keyframe before the next target when it lies beyond what
  // has been read (so the frames before it need not be decoded). The index
  // holds decode times for some containers (MP4) and presentation times for
  // others (Matroska): close enough to decide whether a jump pays.
  void seek_if_ahead() {
    if (!options_.seek || calibrating_ || index_entries_ <= 0 || next_ >= targets_.size()) return;
    const int entry = av_index_search_timestamp(clip_.stream, targets_[next_], AVSEEK_FLAG_BACKWARD);
    if (entry < 0) return;
    if (avformat_index_get_entry(clip_.stream, entry)->timestamp <= last_read_ts_) return;
    seek_to(targets_[next_]);
  }

  // the keyframe reached was shown after the target: go one keyframe back
  // (landing in front of the clip's first keyframe ends the retries)
  void reseek_earlier() {
    pending_reseek_ = false;
    seek_to(std::min(landed_pts_, seek_target_) - 1);
  }

  // demuxers read the timestamp of av_seek_frame as a presentation time and
  // land on the keyframe at or before it
  void seek_to(int64_t pts) {
    const int64_t target = std::max(pts, clip_.start_pts);
    if (av_seek_frame(clip_.format.get(), clip_.stream->index, target, AVSEEK_FLAG_BACKWARD) < 0) {
      restart_without_seeking();
      return;
    }
    seek_target_ = target;
    seek_reached_start_ = target <= clip_.start_pts;
    just_seeked_ = true;
    forget_read_state();
  }

  // a seek the demuxer refused may have left it anywhere: start over from
  // the first packet with a fresh open, decoding forward only
  void restart_without_seeking() {
    options_.seek = false;
    Clip fresh = open_clip(clip_.path);
    clip_.format = std::move(fresh.format);
    clip_.stream = fresh.stream;  // lives in the format context just taken over
    just_seeked_ = false;
    forget_read_state();
  }

  void forget_read_state() {
    avcodec_flush_buffers(decoder_.get());
    queue_.clear();
    seen_pts_.clear();
    reorder_ = {};
    unread_pts_bound_ = std::numeric_limits<int64_t>::min();
    last_read_ts_ = std::numeric_limits<int64_t>::min();
    input_ended_ = false;
    drained_ = false;
    av_frame_unref(previous_.get());
    have_previous_ = false;
  }

  // converts frame (shown at pts) into results_[k]; a frame already taken for
  // the sample before is copied instead of converted again.
  void take(size_t k, const AVFrame* frame, int64_t pts) {
    DecodedFrame& out = results_[k];
    out.timestamp_seconds = clip_.seconds(pts - clip_.start_pts);
    out.index = clip_.fps > 0 ? std::llround(out.timestamp_seconds * clip_.fps) : static_cast<int64_t>(k);
    if (k > 0 && have_taken_ && taken_pts_ == pts) {
      out.width = results_[k - 1].width;
      out.height = results_[k - 1].height;
      out.rgb = results_[k - 1].rgb;
      return;
    }
    convert(frame, out);
    have_taken_ = true;
    taken_pts_ = pts;
  }

  void convert(const AVFrame* frame, DecodedFrame& out) {
    const int rotation = clip_.rotation;
    const bool swap = rotation == 90 || rotation == 270;
    // output size is fixed by the first frame, so every sample has one size
    if (out_width_ == 0) {
      const int display_width = swap ? frame->height : frame->width;
      const int display_height = swap ? frame->width : frame->height;
      out_width_ = options_.width, out_height_ = options_.height;
      if (out_width_ == 0 && out_height_ == 0) {
        out_width_ = display_width, out_height_ = display_height;
      } else if (out_height_ == 0) {
        out_height_ = std::max(1, static_cast<int>(std::lround(double(out_width_) * display_height / display_width)));
      } else if (out_width_ == 0) {
        out_width_ = std::max(1, static_cast<int>(std::lround(double(out_height_) * display_width / display_height)));
      }
    }
    // scale in the stored orientation, then turn
    const int scaled_width = swap ? out_height_ : out_width_;
    const int scaled_height = swap ? out_width_ : out_height_;
    sws_.reset(sws_getCachedContext(sws_.release(), frame->width, frame->height, static_cast<AVPixelFormat>(frame->format),
                                    scaled_width, scaled_height, AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr, nullptr, nullptr));
    if (!sws_) {
      fail(clip_.path, std::string("cannot convert its pixel format ") +
                           (av_get_pix_fmt_name(static_cast<AVPixelFormat>(frame->format)) ? av_get_pix_fmt_name(static_cast<AVPixelFormat>(frame->format)) : "?") +
                           " to RGB");
    }
    set_colorspace(frame);
    const int stride = FFALIGN(scaled_width * 3, 64);
    const size_t scratch_bytes = static_cast<size_t>(stride) * scaled_height;
    if (scratch_bytes > scratch_bytes_) {
      scratch_.reset(static_cast<uint8_t*>(av_malloc(scratch_bytes)));
      if (!scratch_) fail(clip_.path, "out of memory converting a frame");
      scratch_bytes_ = scratch_bytes;
    }
    uint8_t* planes[4] = {scratch_.get(), nullptr, nullptr, nullptr};
    int strides[4] = {stride, 0, 0, 0};
    sws_scale(sws_.get(), frame->data, frame->linesize, 0, frame->height, planes, strides);

    out.width = out_width_;
    out.height = out_height_;
    out.rgb.resize(static_cast<size_t>(out_width_) * out_height_ * 3);
    const uint8_t* src = scratch_.get();
    uint8_t* dst = out.rgb.data();
    const int w = scaled_width, h = scaled_height;  // stored orientation
    if (rotation == 0) {
      for (int y = 0; y < h; ++y) std::memcpy(dst + size_t(y) * w * 3, src + size_t(y) * stride, size_t(w) * 3);
      return;
    }
    // dst pixel (y, x) of the turned image [out_height_, out_width_] reads src (sy, sx)
    for (int y = 0; y < out_height_; ++y) {
      for (int x = 0; x < out_width_; ++x) {
        int sy, sx;
        if (rotation == 90) sy = h - 1 - x, sx = y;
        else if (rotation == 180) sy = h - 1 - y, sx = w - 1 - x;
        else sy = x, sx = w - 1 - y;  // 270
        const uint8_t* s = src + size_t(sy) * stride + size_t(sx) * 3;
        uint8_t* d = dst + (size_t(y) * out_width_ + x) * 3;
        d[0] = s[0], d[1] = s[1], d[2] = s[2];
      }
    }
  }

  // YCbCr matrix and range from the frame, as `ffmpeg -vf scale` does:
  // BT.601 unless the stream says otherwise, output full-range RGB.
  void set_colorspace(const AVFrame* frame) {
    int* inverse_table = nullptr;
    int* table = nullptr;
    int source_range = 0, dest_range = 0, brightness = 0, contrast = 0, saturation = 0;
    if (sws_getColorspaceDetails(sws_.get(), &inverse_table, &source_range, &table, &dest_range, &brightness, &contrast,
                                 &saturation) < 0) {
      return;  // an RGB source: nothing to set
    }
    const int colorspace = frame->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : frame->colorspace;
    if (frame->color_range != AVCOL_RANGE_UNSPECIFIED) source_range = frame->color_range == AVCOL_RANGE_JPEG ? 1 : 0;
    sws_setColorspaceDetails(sws_.get(), sws_getCoefficients(colorspace), source_range, table, dest_range, brightness,
                             contrast, saturation);
  }

  Clip& clip_;
  FrameSamplingOptions options_;
  const std::vector<int64_t> targets_;  // [N] ascending pts
  std::vector<DecodedFrame> results_;   // [N]
  size_t next_ = 0;                     // first target not yet resolved

  CodecPtr decoder_;
  FramePtr frame_, previous_;           // the frame just decoded; the one before it (pts <= next target)
  int64_t previous_pts_ = 0;
  bool have_previous_ = false;
  int64_t frames_out_ = 0;
  int decode_errors_ = 0;

  std::deque<PacketPtr> queue_;         // demuxed, not yet sent
  std::set<int64_t> seen_pts_;          // pts of every packet read since the last seek
  std::priority_queue<int64_t, std::vector<int64_t>, std::greater<int64_t>> reorder_;
  size_t reorder_depth_ = 2;
  int64_t unread_pts_bound_ = std::numeric_limits<int64_t>::min();  // every unread packet has pts >= this
  int64_t last_read_ts_ = std::numeric_limits<int64_t>::min();      // furthest decode time read
  bool all_pts_known_ = true;
  bool input_ended_ = false;
  bool drained_ = false;                // the decoder was told the input ended
  bool calibrating_ = false;            // the first frame will tell label_shift_
  int64_t label_shift_ = 0;             // decoder labels minus presentation times (no-pts containers)
  int read_error_ = 0;

  int index_entries_ = 0;
  int64_t seek_target_ = 0;             // pts asked of the last seek
  int64_t landed_pts_ = 0;              // first frame after it, when that was past the target
  bool seek_reached_start_ = false;     // the last seek went to the clip's start
  bool just_seeked_ = false, pending_reseek_ = false, check_seek_ = false;

  SwsPtr sws_;
  std::unique_ptr<uint8_t, AvFreer> scratch_;
  size_t scratch_bytes_ = 0;
  int out_width_ = 0, out_height_ = 0;
  bool have_taken_ = false;
  int64_t taken_pts_ = 0;
};

}  // namespace

VideoInfo probe_video(const std::string& path) {
  Clip clip = open_clip(path);
  if (clip.duration_ticks <= 0) {
    // no declared duration: measure it from the packets (a zero-frame clip reports 0)
    const auto [first, end] = scan_packet_span(clip);
    clip.start_pts = first;
    clip.duration_ticks = std::max<int64_t>(end - first, 0);
  }
  return info_of(clip);
}

std::vector<DecodedFrame> sample_frames_uniform(const std::string& path, int num_frames,
                                                const FrameSamplingOptions& options) {
  if (num_frames < 1) {
    throw std::invalid_argument("sample_frames_uniform: num_frames must be >= 1, got " + std::to_string(num_frames) +
                                " (" + path + ")");
  }
  if (options.width < 0 || options.height < 0) {
    throw std::invalid_argument("sample_frames_uniform: output size must be >= 0, got " + std::to_string(options.width) +
                                "x" + std::to_string(options.height) + " (" + path + ")");
  }
  if (options.threads < 0) {
    throw std::invalid_argument("sample_frames_uniform: threads must be >= 0, got " + std::to_string(options.threads) +
                                " (" + path + ")");
  }
  Clip clip = open_clip_with_duration(path);
  // T_i = start + floor((2i + 1) * duration / 2N), exact in integer ticks
  std::vector<int64_t> targets(static_cast<size_t>(num_frames));
  for (int i = 0; i < num_frames; ++i) {
    targets[size_t(i)] = clip.start_pts + av_rescale_rnd(2 * int64_t{i} + 1, clip.duration_ticks, 2 * int64_t{num_frames},
                                                          AV_ROUND_DOWN);
  }
  FrameSampler sampler(clip, options, targets);
  std::vector<DecodedFrame> frames = sampler.run();
  for (int i = 0; i < num_frames; ++i) {
    frames[size_t(i)].sample_time_seconds = (i + 0.5) * clip.seconds(clip.duration_ticks) / num_frames;
  }
  return frames;
}

std::vector<DecodedFrame> sample_frames_uniform(const std::string& path, int num_frames, int resize_width,
                                                int resize_height) {
  FrameSamplingOptions options;
  options.width = resize_width;
  options.height = resize_height;
  return sample_frames_uniform(path, num_frames, options);
}

void write_frame_png(const DecodedFrame& frame, const std::string& path) {
  if (frame.width < 1 || frame.height < 1 || frame.rgb.size() != static_cast<size_t>(frame.width) * frame.height * 3) {
    throw std::runtime_error(path + ": cannot write PNG: frame of " + std::to_string(frame.width) + "x" +
                             std::to_string(frame.height) + " holds " + std::to_string(frame.rgb.size()) + " bytes");
  }
  // OpenCV writes BGR; the RGB buffer is wrapped, not copied
  const cv::Mat rgb(frame.height, frame.width, CV_8UC3, const_cast<uint8_t*>(frame.rgb.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  bool written = false;
  try {
    written = cv::imwrite(path, bgr);
  } catch (const cv::Exception& e) {
    throw std::runtime_error(path + ": cannot write PNG: " + e.err);
  }
  if (!written) throw std::runtime_error(path + ": cannot write PNG (OpenCV imwrite failed)");
}

}  // namespace namm
