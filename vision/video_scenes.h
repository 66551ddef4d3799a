// Synthetic video question-answering scenes the video host is trained and
// evaluated on: mostly static or repetitive footage (a plain, graded or
// slowly drifting textured background, a blinking corner dot, a rotating
// bar) with one short informative event, and a question whose one-word
// answer comes from a small closed vocabulary.
//
// Every scene is a pure function of (kind, split, index, options): the seed
// is an injective packing of (split, kind, index) pushed through a bijective
// 64-bit mixer, so the train, validation and test scenes never share a seed,
// and every draw is written here on std::mt19937_64 (no implementation-
// defined distribution, no libm trigonometry), so the frames are the same
// bytes on every platform. The answer is drawn before anything that depends
// on the options, so a scene keeps its question and answer at any size or
// frame rate.
//
// Events are timed for a model that samples `sample_frames` frames
// uniformly: every event phase (an object on screen, a flash, a gap between
// flashes) lasts at least ceil((N - 1) / (K - 1)) frames, so it shows in any
// uniform sample of K of the N frames. Per frame, `informative` says whether
// the event is visible; events cover a minority of the frames (about 10-30%
// on average; a 5-flash count reaches ~40%), so a memory that drops the
// uninformative frames loses nothing.
//
// Kinds (names as in scene_kinds()), questions and answers (all words of
// builtin_tokenizer(), text/tokenizer.h):
//   appear_colour   a shape appears for a moment    "which star arrived ?"      -> red|green|blue|yellow|white
//   flash_count     a lamp lights up 1-5 times       "how many times was the lamp bright ?" -> 1..5
//   move_direction  a white shape slides across; the four walls are painted
//                   blue (top), green (bottom), red (left), yellow (right)
//                                                    "the coin moved toward which wall ?" -> blue|green|red|yellow
//   appear_shape    a coloured shape appears        "what arrived ?"            -> coin|star|moon|house|tree
//   colour_change   a gray shape briefly takes a colour
//                                                    "the gray moon turned to what ?" -> red|green|blue|yellow|white
// The vocabulary has no words for up/down/left/right, square/circle or
// "colour", hence the painted walls and the pictogram nouns.
//
// Not here: decoding clips (vision/video_decoder.h), the video model.
#pragma once

#include "text/tasks.h"  // Split
#include "vision/video_encoder.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace namm {

/// Geometry and timing of rendered scenes.
struct SceneOptions {
  int size = 96;            ///< width = height in pixels; even, 32..1024.
  double seconds = 3.0;     ///< clip length; frames N = round(seconds * fps).
  double fps = 12.0;        ///< frames per second.
  int sample_frames = 16;   ///< K: frames a model samples uniformly; events are timed to survive it.
  bool draw_events = true;  ///< false renders the event-free twin (same timing and flags), for tests.
};

/// One rendered scene.
struct VideoScene {
  std::string kind;                             ///< a name from scene_kinds().
  Split split = Split::kTrain;
  int64_t index = 0;                            ///< scene index within (kind, split).
  uint64_t seed = 0;                            ///< scene_seed(kind, split, index).
  int width = 0, height = 0;                    ///< W, H.
  double fps = 0;
  std::vector<std::vector<uint8_t>> frames_rgb; ///< [N] frames, each [H, W, 3] RGB bytes.
  std::vector<bool> informative;                ///< [N]: the event is visible in this frame.
  std::string question;                         ///< words of builtin_tokenizer(), ends with " ?".
  std::string answer;                           ///< one word, an element of choices.
  std::string answer_meaning;                   ///< what a stand-in answer word means ("up" for "blue"
                                                ///< in move_direction); empty where the word says it.
  std::vector<std::string> choices;             ///< the kind's closed answer vocabulary, fixed order.

  /// N.
  int64_t num_frames() const { return static_cast<int64_t>(frames_rgb.size()); }
  /// Indices of the informative frames, ascending.
  std::vector<int64_t> informative_frames() const;
  /// Informative frames / N.
  double informative_fraction() const;
};

/// The scene kinds, in a fixed order (new kinds are only ever appended).
const std::vector<std::string>& scene_kinds();

/// A kind's answer vocabulary in a fixed order; throws std::invalid_argument
/// for an unknown kind.
const std::vector<std::string>& scene_choices(const std::string& kind);

/// The seed of one scene: mix64 of split (2 bits) | kind (6 bits) | index
/// (56 bits); throws std::invalid_argument for an unknown kind or an index
/// outside [0, 2^56).
uint64_t scene_seed(const std::string& kind, Split split, int64_t index);

/// N = round(seconds * fps) for these options.
int64_t scene_frame_count(const SceneOptions& options);

/// The shortest event phase in frames: ceil((N - 1) / (K - 1)), at least 1.
int64_t scene_min_phase_frames(const SceneOptions& options);

/// Throws std::invalid_argument (naming the value) unless size is even and
/// in [32, 1024], fps in (0, 240], sample_frames >= 2, and N leaves room for
/// every kind's longest event (5 flashes and their gaps) at that sampling.
void check_scene_options(const SceneOptions& options);

/// Renders one scene. Throws std::invalid_argument for an unknown kind, a
/// negative index or bad options (check_scene_options).
VideoScene make_scene(const std::string& kind, Split split, int64_t index, const SceneOptions& options = {});

/// Encodes a scene's frames to path (atomic; see VideoEncoder).
void write_scene_clip(const VideoScene& scene, const std::string& path, const VideoEncoderOptions& options = {});

/// One clip's record in a scene index.
struct SceneIndexEntry {
  std::string clip;                         ///< file name, relative to the index's folder.
  std::string kind;
  Split split = Split::kTrain;
  int64_t index = 0;
  uint64_t seed = 0;
  int width = 0, height = 0;
  double fps = 0;
  int64_t num_frames = 0;                   ///< N.
  std::string question, answer, answer_meaning;
  std::vector<std::string> choices;
  std::vector<int64_t> informative_frames;  ///< ascending frame indices; frame i is shown at i / fps s.
};

/// A folder of clips: how they were rendered and one entry per clip.
struct SceneIndex {
  SceneOptions options;
  VideoEncoderOptions encoder;
  std::vector<SceneIndexEntry> clips;
};

/// The record of a rendered scene stored as `clip`.
SceneIndexEntry scene_index_entry(const VideoScene& scene, const std::string& clip);

/// {"format": "namm-video-scenes", "version": 1, "options": {...}, "encoder": {...},
///  "clips": [{"clip", "kind", "split", "index", "seed" (16 hex digits), "width", "height",
///  "fps", "num_frames", "question", "answer", "answer_meaning", "choices",
///  "informative_frames", "informative_seconds": [[begin, end], ...]}]}.
/// informative_seconds (runs of informative frames as [i / fps, (j + 1) / fps)) is
/// written for readers; parsing uses informative_frames.
std::string scene_index_to_json(const SceneIndex& index);
/// Parses scene_index_to_json's output; throws std::invalid_argument naming
/// `source` and the offending field (wrong format or version, missing field,
/// answer not among choices, frame index out of range).
SceneIndex scene_index_from_json(std::string_view json, const std::string& source = "scene index");

/// Writes scene_index_to_json(index) atomically to path.
void write_scene_index(const std::string& path, const SceneIndex& index);
/// Reads a file written by write_scene_index; errors name the path.
SceneIndex read_scene_index(const std::string& path);

}  // namespace namm
