// `namm eval-video`: compares memory policies on the video host over the
// synthetic video QA scenes (vision/video_qa.h): accuracy, KV retained and
// the share of evicted visual tokens that came from frames without the
// event; the NAMM runs zero-shot first and its measured mean retained
// fraction is the baselines' budget. Writes JSON and a markdown table.
#include "apps/options.h"
#include "core/atomic_file.h"
#include "core/namm_model.h"
#include "vision/video_qa.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

namespace namm::app {
namespace {

void check_output_folder(const std::string& option, const std::string& path) {
  if (path.empty()) return;
  const std::filesystem::path p(path);
  const std::filesystem::path dir = p.parent_path().empty() ? "." : p.parent_path();
  if (!std::filesystem::is_directory(dir)) throw UsageError(option + ": folder '" + dir.string() + "' does not exist");
}

}  // namespace

int run_eval_video(const std::vector<std::string>& args) {
  std::string model_dir, namm_path, split_text = "test", kinds_text = "all", policies_text = "all",
                                    budget_text = "50%", json_path, md_path;
  VideoEvalOptions o;
  int64_t seed = 0;
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("model", po::value(&model_dir)->required(), "video model directory (config.json, model.safetensors)")
      ("namm", po::value(&namm_path), "NAMM checkpoint, run zero-shot; its measured memory sets the baselines' budget")
      ("allow-same-domain", "accept a NAMM whose record says it was evolved on video (results are then not zero-shot)")
      ("split", po::value(&split_text)->default_value(split_text), "scene split: train, validation or test")
      ("count", po::value(&o.count)->default_value(o.count), "clips per kind")
      ("frames", po::value(&o.frames)->default_value(o.frames), "frames sampled uniformly per clip")
      ("kinds", po::value(&kinds_text)->default_value(kinds_text), "comma-separated scene kinds, or all")
      ("index", po::value(&o.index_path), "decode the clips of a make-scenes index.json instead of rendering scenes")
      ("policies", po::value(&policies_text)->default_value(policies_text), "comma-separated policies, or all")
      ("budget", po::value(&budget_text)->default_value(budget_text), "the baselines' budget when no NAMM runs")
      ("delay", po::value(&o.qa.delay)->default_value(o.qa.delay), "tokens between memory updates (a multiple of 16 for a NAMM)")
      ("scene-size", po::value(&o.scene.size)->default_value(o.scene.size), "rendered frame side in pixels")
      ("scene-seconds", po::value(&o.scene.seconds)->default_value(o.scene.seconds), "clip length in seconds")
      ("scene-fps", po::value(&o.scene.fps)->default_value(o.scene.fps), "clip frame rate")
      ("seed", po::value(&seed)->default_value(seed), "seed of the random policy")
      ("threads", po::value(&o.threads)->default_value(o.threads), "worker threads (clips in parallel)")
      ("out-json", po::value(&json_path), "write the comparison as JSON")
      ("out-md", po::value(&md_path), "write the markdown table");
  // clang-format on
  po::variables_map vm;
  if (!parse_options("eval-video", "--model DIR --namm FILE [--split test] [--count N] [--frames 16] [--out-json F] [--out-md F]",
                     options, args, vm)) {
    return 0;
  }
  const auto output_locks = claim_outputs({{"--out-json", json_path}, {"--out-md", md_path}});
  try {
    o.split = parse_split(split_text);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--split: ") + e.what());
  }
  if (kinds_text != "all") {
    o.kinds = split_list(kinds_text);
    if (o.kinds.empty()) throw UsageError("--kinds is empty");
  }
  for (const std::string& kind : o.kinds) {
    const auto& known = scene_kinds();
    if (std::find(known.begin(), known.end(), kind) == known.end()) {
      std::string names;
      for (const std::string& k : known) names += (names.empty() ? "" : ", ") + k;
      throw UsageError("--kinds: unknown kind '" + kind + "' (known: " + names + ")");
    }
  }
  if (policies_text != "all") {
    o.policies = split_list(policies_text);
    if (o.policies.empty()) throw UsageError("--policies is empty");
  }
  if (namm_path.empty()) {
    o.policies.erase(std::remove(o.policies.begin(), o.policies.end(), "namm"), o.policies.end());
    if (policies_text != "all" && policies_text.find("namm") != std::string::npos) {
      throw UsageError("--policies names namm but no --namm FILE was given");
    }
    if (o.policies.empty()) throw UsageError("--policies: nothing left to run");
  }
  try {
    o.fallback_budget = Budget::parse(budget_text);
  } catch (const std::exception& e) {
    throw UsageError(std::string("--budget: ") + e.what());
  }
  if (seed < 0) throw UsageError("--seed must be >= 0, got " + std::to_string(seed));
  o.seed = static_cast<uint64_t>(seed);
  check_output_folder("--out-json", json_path);
  check_output_folder("--out-md", md_path);
  try {
    o.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  std::shared_ptr<const NammModel> namm;
  if (!namm_path.empty()) {
    namm = std::make_shared<const NammModel>(NammModel::load(namm_path));
    if (namm_tuned_on_video(namm->provenance_json) && !vm.count("allow-same-domain")) {
      throw UsageError("--namm " + namm_path +
                       ": its record says it was evolved on video; pass --allow-same-domain to use it anyway "
                       "(results are then not zero-shot)");
    }
    if (o.qa.delay % namm->config.spectrogram.hop != 0) {
      throw UsageError("--delay " + std::to_string(o.qa.delay) + " is not a multiple of the NAMM's STFT hop " +
                       std::to_string(namm->config.spectrogram.hop));
    }
  }

  const VideoModel model = load_video_model(model_dir);
  std::cout << "evaluating " << o.policies.size() << " policies on "
            << (o.index_path.empty() ? std::string("rendered ") + to_string(o.split) + " scenes" : o.index_path) << ", "
            << o.count << " clips per kind, " << o.frames << " frames, update every " << o.qa.delay << " tokens, "
            << o.threads << " threads\n"
            << std::flush;
  const VideoEvaluation result = evaluate_video(model, namm, o, &std::cout);
  if (!json_path.empty()) write_file_atomically(json_path, result.to_json() + "\n");
  if (!md_path.empty()) write_file_atomically(md_path, result.to_markdown());
  std::cout << "\n" << result.to_markdown();
  return 0;
}

}  // namespace namm::app
