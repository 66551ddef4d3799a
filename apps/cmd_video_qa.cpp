// `namm video-qa`: answers a question about a video file with the video host
// and a memory policy pruning its KV cache (vision/video_qa.h); prints the
// answer, the tokens and bytes kept and the time, and with --viz draws which
// frames the policy kept.
#include "apps/options.h"
#include "core/namm_model.h"
#include "text/tokenizer.h"
#include "vision/video_qa.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace namm::app {
namespace {

std::string fmt(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

}  // namespace

int run_video_qa(const std::vector<std::string>& args) {
  std::string clip_path, question, model_dir = "models/video", memory = "namm", budget_text = "25%",
                                              namm_path = "models/namm.safetensors", viz_path;
  int64_t frames = 16, delay = kVideoDefaultDelay, seed = 0, max_answer_tokens = 4;
  int threads = 2;
  double drop_threshold = 0.10;
  PolicySpec tuning;  // the baselines' knobs, copied into the run's policy
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("clip", po::value(&clip_path)->required(), "video file (any container/codec FFmpeg decodes)")
      ("question", po::value(&question)->required(), "the question, in words of the model's vocabulary (e.g. \"which star arrived ?\")")
      ("model", po::value(&model_dir)->default_value(model_dir), "video model directory (config.json, model.safetensors): the shipped one, or one from train-video")
      ("memory", po::value(&memory)->default_value(memory), ("memory policy: " + policy_choices()).c_str())
      ("budget", po::value(&budget_text)->default_value(budget_text), "KV budget per head for the baselines: tokens (\"64\") or a share of the tokens so far (\"25%\")")
      ("namm", po::value(&namm_path)->default_value(namm_path), "NAMM checkpoint for --memory namm")
      ("allow-same-domain", "accept a NAMM whose record says it was evolved on video (results are then not zero-shot)")
      ("frames", po::value(&frames)->default_value(frames), "frames sampled uniformly from the clip")
      ("delay", po::value(&delay)->default_value(delay), "tokens between memory updates (a multiple of 16 for a NAMM)")
      ("max-answer-tokens", po::value(&max_answer_tokens)->default_value(max_answer_tokens), "greedy answer length limit")
      ("seed", po::value(&seed)->default_value(seed), "seed of the random policy")
      ("viz", po::value(&viz_path), "write a PNG of the frames and what each layer kept of them")
      ("drop-threshold", po::value(&drop_threshold)->default_value(drop_threshold), "--viz marks a frame dropped below this kept share")
      ("threads", po::value(&threads)->default_value(threads), "torch threads");
  // clang-format on
  add_policy_tuning_options(options, tuning);
  po::variables_map vm;
  if (!parse_options("video-qa", "--clip FILE --question TEXT --model DIR [--memory POLICY] [--budget B] [--viz out.png] ...",
                     options, args, vm)) {
    return 0;
  }
  const auto output_locks = claim_outputs({{"--viz", viz_path}});

  // everything a user can get wrong is checked before any work
  check_policy_name(memory);
  check_policy_tuning(tuning);
  if (frames < 1 || frames > 256) throw UsageError("--frames must be in [1, 256], got " + std::to_string(frames));
  if (delay < 1) throw UsageError("--delay must be >= 1, got " + std::to_string(delay));
  if (max_answer_tokens < 1) throw UsageError("--max-answer-tokens must be >= 1, got " + std::to_string(max_answer_tokens));
  if (seed < 0) throw UsageError("--seed must be >= 0, got " + std::to_string(seed));
  if (threads < 1) throw UsageError("--threads must be >= 1, got " + std::to_string(threads));
  if (!(drop_threshold >= 0 && drop_threshold <= 1)) {
    throw UsageError("--drop-threshold must be in [0, 1], got " + std::to_string(drop_threshold));
  }
  VideoQaOptions qa;
  qa.policy = tuning;
  qa.policy.name = memory;
  qa.policy.seed = static_cast<uint64_t>(seed);
  qa.delay = delay;
  qa.max_answer_tokens = max_answer_tokens;
  try {
    qa.policy.budget = Budget::parse(budget_text);
  } catch (const std::exception& e) {
    throw UsageError(std::string("--budget: ") + e.what());
  }
  std::vector<int64_t> question_ids;
  try {
    question_ids = encode_question(question);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--") + e.what());
  }
  if (!viz_path.empty()) {
    const std::filesystem::path viz(viz_path);
    if (viz.extension() != ".png") throw UsageError("--viz: the picture is a PNG; name it *.png, got '" + viz_path + "'");
    const std::filesystem::path dir = viz.parent_path().empty() ? "." : viz.parent_path();
    if (!std::filesystem::is_directory(dir)) {
      throw UsageError("--viz: folder '" + dir.string() + "' does not exist");
    }
  }
  if (memory == "namm") {
    if (!std::filesystem::exists(namm_path)) {
      throw UsageError("--namm " + namm_path + ": no such file (evolve one with `namm evolve`, or choose another --memory)");
    }
    auto model = std::make_shared<const NammModel>(NammModel::load(namm_path));
    if (namm_tuned_on_video(model->provenance_json) && !vm.count("allow-same-domain")) {
      throw UsageError("--namm " + namm_path +
                       ": its record says it was evolved on video; pass --allow-same-domain to use it anyway "
                       "(results are then not zero-shot)");
    }
    qa.policy.namm_model = model;
  }
  try {
    qa.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }

  at::set_num_threads(threads);
  const VideoModel model = load_video_model(model_dir);
  const auto start = std::chrono::steady_clock::now();
  // a clip from a make-scenes folder: its index says which frames hold the event and the right answer
  const SceneIndexEntry* entry = nullptr;
  SceneIndex scene_index;
  const std::filesystem::path index_path = std::filesystem::path(clip_path).parent_path() / "index.json";
  if (std::filesystem::exists(index_path)) {
    try {
      scene_index = read_scene_index(index_path.string());
    } catch (const std::exception&) {
      // not ours, or unreadable: the clip is answered without marks
    }
    const std::string name = std::filesystem::path(clip_path).filename().string();
    for (const SceneIndexEntry& e : scene_index.clips) {
      if (e.clip == name) entry = &e;
    }
  }
  const SampledClip clip = read_clip(clip_path, frames, entry != nullptr ? &entry->informative_frames : nullptr);
  const double decode_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const VideoQaOutcome out = answer_clip(model, clip, question_ids, qa);

  const double kept_percent = 100.0 * out.final_cache_fraction;
  double text_kept = 0.0;
  for (double t : out.kept_text) text_kept += t;
  if (!out.kept_text.empty()) text_kept /= static_cast<double>(out.kept_text.size());
  const bool baseline = memory != "full" && memory != "namm";
  std::cout << "answer: " << (out.answer.empty() ? "(no answer: <eos> first)" : out.answer) << "\n";
  if (entry != nullptr && entry->question == question) {
    std::cout << "expected: " << entry->answer << " (" << index_path.string() << ")\n";
  }
  std::cout << "memory: " << memory << (baseline ? " at budget " + qa.policy.budget.to_string() : "")
            << ", update every " << delay << " tokens, " << out.policy_updates << " updates\n"
            << "tokens kept: " << fmt("%.1f", out.cached_tokens) << " of " << out.tokens_seen << " ("
            << fmt("%.1f", kept_percent) << "% of the full cache; mean over layers and KV heads); visual "
            << fmt("%.1f", 100.0 * out.visual_kept_fraction) << "%, text " << fmt("%.1f", 100.0 * text_kept) << "%\n";
  {
    // one number per sampled frame: a dropped frame reads as a zero
    const at::Tensor per_frame = out.kept_per_frame.mean(0);  // [K]
    std::cout << "visual tokens kept per frame (%, mean over layers):";
    for (int64_t f = 0; f < per_frame.size(0); ++f) std::cout << " " << fmt("%.0f", 100.0 * per_frame[f].item<double>());
    std::cout << "\n";
  }
  if (entry != nullptr && out.evicted_visual > 0) {
    std::cout << "evicted visual tokens from frames without the event: "
              << fmt("%.1f", 100.0 * out.evicted_uninformative / out.evicted_visual) << "% (such frames hold "
              << fmt("%.1f", 100.0 * std::count(clip.informative.begin(), clip.informative.end(), false) /
                                 std::max<int64_t>(clip.num_frames(), 1))
              << "% of the visual tokens)\n";
  }
  std::cout << "KV bytes: " << out.kv_bytes_used << " of " << out.kv_bytes_full << " with the full cache ("
            << fmt("%.1f", out.kv_bytes_used / 1024.0) << " of " << fmt("%.1f", out.kv_bytes_full / 1024.0) << " KiB, "
            << fmt("%.1f", out.kv_bytes_full > 0 ? 100.0 * out.kv_bytes_used / out.kv_bytes_full : 100.0) << "%)\n"
            << "time: " << fmt("%.3f", decode_seconds + out.seconds) << " s (decode " << clip.num_frames()
            << " frames " << fmt("%.3f", decode_seconds) << " s, encode " << fmt("%.3f", out.encode_seconds)
            << " s, prefill " << fmt("%.3f", out.prefill_seconds) << " s, answer " << fmt("%.3f", out.decode_seconds)
            << " s)\n";
  if (!viz_path.empty()) {
    VideoQaPictureCaption caption;
    caption.policy = memory;
    caption.budget = baseline ? qa.policy.budget.to_string() : "-";
    caption.question = question;
    caption.delay = delay;
    if (entry != nullptr && entry->question == question) caption.expected = entry->answer;
    VideoQaPictureOptions picture;
    picture.drop_threshold = drop_threshold;
    write_video_qa_picture(viz_path, clip, out, caption, picture);
    std::cout << "picture: " << viz_path << "\n";
  }
  return 0;
}

}  // namespace namm::app
