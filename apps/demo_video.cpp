#include "apps/demo_video.h"

#include "core/namm_model.h"
#include "vision/video_qa.h"
#include "vision/video_scenes.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace namm::app {

bool demo_video(const std::string& model_dir, const std::string& index_path, const std::string& namm_path,
                const std::string& out_dir, int threads) {
  namespace fs = std::filesystem;
  std::printf("\nVideo: the shipped clips answered by the video model (frames decoded with FFmpeg)\n");
  if (!fs::exists(fs::path(model_dir) / "config.json")) {
    std::printf("  not available: no video model in %s (train one with `namm train-video --out %s --lm models/lm`)\n",
                model_dir.c_str(), model_dir.c_str());
    return false;
  }
  if (!fs::exists(index_path)) {
    std::printf("  not available: no clip index %s (write one with `namm make-scenes`)\n", index_path.c_str());
    return false;
  }
  at::set_num_threads(threads);
  const VideoModel model = load_video_model(model_dir);
  std::shared_ptr<const NammModel> namm;
  if (fs::exists(namm_path)) {
    namm = std::make_shared<const NammModel>(NammModel::load(namm_path));
    if (namm_tuned_on_video(namm->provenance_json)) {
      std::printf("  %s was evolved on video: not a zero-shot NAMM, left out\n", namm_path.c_str());
      namm = nullptr;
    }
  }
  std::printf("  model: %s\n", model_dir.c_str());
  std::printf("  NAMM: %s\n", namm ? (namm_path + " (evolved on language only: zero-shot here)").c_str()
                                   : (namm_path + " missing: full cache only").c_str());
  fs::create_directories(out_dir);

  const SceneIndex index = read_scene_index(index_path);
  const fs::path clip_dir = fs::path(index_path).parent_path();
  constexpr int64_t kFrames = 16;
  int64_t right_full = 0, right_namm = 0;
  double kept_namm = 0.0;
  for (const SceneIndexEntry& entry : index.clips) {
    const std::string path = (clip_dir / entry.clip).string();
    const SampledClip clip = read_clip(path, kFrames, &entry.informative_frames);
    const std::vector<int64_t> question = encode_question(entry.question);
    std::printf("\n  %s: \"%s\"  (expected: %s)\n", entry.clip.c_str(), entry.question.c_str(), entry.answer.c_str());
    for (const char* policy : {"full", "namm"}) {
      VideoQaOptions options;
      options.policy.name = policy;
      if (std::string(policy) == "namm") {
        if (!namm) continue;
        options.policy.namm_model = namm;
      }
      const VideoQaOutcome outcome = answer_clip(model, clip, question, options);
      const bool right = outcome.answer == entry.answer;
      std::printf("    %-5s answer %-8s %-5s  KV at answer %5.1f%% (%lld of %lld tokens), visual kept %5.1f%%, %.2fs\n",
                  policy, outcome.answer.c_str(), right ? "right" : "wrong", 100.0 * outcome.final_cache_fraction,
                  static_cast<long long>(outcome.cached_tokens + 0.5), static_cast<long long>(outcome.tokens_seen),
                  100.0 * outcome.visual_kept_fraction, outcome.seconds);
      if (std::string(policy) == "full") {
        right_full += right ? 1 : 0;
        continue;
      }
      right_namm += right ? 1 : 0;
      kept_namm += outcome.final_cache_fraction;
      if (outcome.evicted_visual > 0) {
        std::printf("          evicted visual tokens from frames without the event: %.1f%%\n",
                    100.0 * static_cast<double>(outcome.evicted_uninformative) /
                        static_cast<double>(outcome.evicted_visual));
      }
      const std::string picture = (fs::path(out_dir) / (fs::path(entry.clip).stem().string() + "_namm.png")).string();
      VideoQaPictureCaption caption;
      caption.policy = "namm";
      caption.budget = "-";
      caption.question = entry.question;
      caption.expected = entry.answer;
      caption.delay = options.delay;
      write_video_qa_picture(picture, clip, outcome, caption);
      std::printf("          picture: %s\n", picture.c_str());
    }
  }
  const size_t clips = index.clips.size();
  std::printf("\n  %zu clips: full cache %lld right", clips, static_cast<long long>(right_full));
  if (namm) {
    std::printf(", NAMM %lld right at %.1f%% of the KV cache", static_cast<long long>(right_namm),
                100.0 * kept_namm / static_cast<double>(clips));
  }
  std::printf(". `namm eval-video` compares every policy on the test split.\n");
  return true;
}

}  // namespace namm::app
