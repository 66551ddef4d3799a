// `namm train-video`: trains the video host on the synthetic video QA scenes
// (vision/train_video.h), resuming from the out directory's checkpoint when
// there is one, then evaluates it on the validation split; or, with
// --eval-only, evaluates the model already there.
#include "apps/options.h"
#include "apps/stop_signal.h"
#include "core/atomic_file.h"
#include "vision/llava_checkpoint.h"
#include "vision/train_video.h"
#include "vision/video_qa.h"

#include <ATen/Parallel.h>

#include <filesystem>
#include <iostream>
#include <sstream>

namespace namm::app {
int run_train_video(const std::vector<std::string>& args) {
  TrainVideoOptions o;
  std::string kinds_text = "all";
  int64_t seed = 0;
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("out", po::value(&o.out_dir)->required(), "out directory: model, checkpoint, logs, evaluation (resumes from it); a folder that holds a model but no trainer state is refused")
      ("force", po::bool_switch(&o.force), "start afresh in --out even when it holds a model but no trainer state (replaces it)")
      ("init-from", po::value(&o.init_from), "start from this video checkpoint's weights (e.g. a first stage on fewer kinds); model-shape options not given are taken from its config.json")
      ("lm", po::value(&o.lm_dir), "language host to start from (e.g. models/lm); without it a fresh Llama of the --lm-* sizes")
      ("steps", po::value(&o.steps)->default_value(o.steps), "optimizer steps of the whole run")
      ("batch", po::value(&o.batch)->default_value(o.batch), "clips per step")
      ("frames", po::value(&o.frames)->default_value(o.frames), "frames sampled uniformly per clip")
      ("kinds", po::value(&kinds_text)->default_value(kinds_text), "comma-separated scene kinds, or all")
      ("scene-size", po::value(&o.scene_size)->default_value(o.scene_size), "rendered frame side in pixels")
      ("scene-seconds", po::value(&o.scene_seconds)->default_value(o.scene_seconds), "clip length in seconds")
      ("scene-fps", po::value(&o.scene_fps)->default_value(o.scene_fps), "clip frame rate")
      ("lr", po::value(&o.lr)->default_value(o.lr), "peak AdamW learning rate of the tower and projector")
      ("lm-lr-scale", po::value(&o.lm_lr_scale)->default_value(o.lm_lr_scale), "the language model learns at lr times this (0: frozen)")
      ("min-lr-ratio", po::value(&o.min_lr_ratio)->default_value(o.min_lr_ratio), "cosine floor as a fraction of --lr")
      ("warmup", po::value(&o.warmup_steps)->default_value(o.warmup_steps), "linear warm-up steps")
      ("weight-decay", po::value(&o.weight_decay)->default_value(o.weight_decay), "AdamW weight decay on matrices")
      ("grad-clip", po::value(&o.grad_clip)->default_value(o.grad_clip), "max global gradient norm (0: off)")
      ("seed", po::value(&seed)->default_value(seed), "seed of the weights and the data")
      ("threads", po::value(&o.threads)->default_value(o.threads), "torch threads (and evaluation workers)")
      ("vision-layers", po::value(&o.vision_layers)->default_value(o.vision_layers), "tower layers")
      ("vision-width", po::value(&o.vision_width)->default_value(o.vision_width), "tower width")
      ("vision-heads", po::value(&o.vision_heads)->default_value(o.vision_heads), "tower heads")
      ("vision-mlp", po::value(&o.vision_mlp)->default_value(o.vision_mlp), "tower MLP width")
      ("image-size", po::value(&o.image_size)->default_value(o.image_size), "model input side in pixels")
      ("patch-size", po::value(&o.patch_size)->default_value(o.patch_size), "tower patch side (grid pooled 2x2)")
      ("lm-layers", po::value(&o.lm_layers)->default_value(o.lm_layers), "fresh language model: layers")
      ("lm-hidden", po::value(&o.lm_hidden)->default_value(o.lm_hidden), "fresh language model: width")
      ("lm-heads", po::value(&o.lm_heads)->default_value(o.lm_heads), "fresh language model: heads")
      ("lm-kv-heads", po::value(&o.lm_kv_heads)->default_value(o.lm_kv_heads), "fresh language model: KV heads")
      ("lm-intermediate", po::value(&o.lm_intermediate)->default_value(o.lm_intermediate), "fresh language model: SwiGLU width")
      ("log-every", po::value(&o.log_every)->default_value(o.log_every), "steps per progress line")
      ("checkpoint-every", po::value(&o.checkpoint_every)->default_value(o.checkpoint_every), "steps per checkpoint")
      ("eval-count", po::value(&o.eval_count)->default_value(o.eval_count), "validation clips per kind at the end (0: no evaluation)")
      ("eval-only", "evaluate the model in --out and exit");
  // clang-format on
  po::variables_map vm;
  if (!parse_options("train-video", "--out DIR [--lm models/lm] [--steps N] [--frames 16] [--eval-only] ...", options,
                     args, vm)) {
    return 0;
  }
  // a later stage is the same model: shape options left unset come from
  // the checkpoint it starts from, so only what changes needs repeating
  if (!o.init_from.empty()) {
    const VideoModelConfig start = read_llava_config((std::filesystem::path(o.init_from) / "config.json").string());
    const auto unset = [&vm](const char* name) { return vm[name].defaulted(); };
    if (unset("vision-layers")) o.vision_layers = start.vision.num_hidden_layers;
    if (unset("vision-width")) o.vision_width = start.vision.hidden_size;
    if (unset("vision-heads")) o.vision_heads = start.vision.num_attention_heads;
    if (unset("vision-mlp")) o.vision_mlp = start.vision.intermediate_size;
    if (unset("image-size")) o.image_size = start.vision.image_size;
    if (unset("patch-size")) o.patch_size = start.vision.patch_size;
    if (o.lm_dir.empty()) {  // with --lm the language model's shape is that checkpoint's
      if (unset("lm-layers")) o.lm_layers = start.text.num_hidden_layers;
      if (unset("lm-hidden")) o.lm_hidden = start.text.hidden_size;
      if (unset("lm-heads")) o.lm_heads = start.text.num_attention_heads;
      if (unset("lm-kv-heads")) o.lm_kv_heads = start.text.num_key_value_heads;
      if (unset("lm-intermediate")) o.lm_intermediate = start.text.intermediate_size;
    }
  }
  if (seed < 0) throw UsageError("--seed must be >= 0, got " + std::to_string(seed));
  o.seed = static_cast<uint64_t>(seed);
  if (kinds_text != "all") {
    o.kinds = split_list(kinds_text);
    if (o.kinds.empty()) throw UsageError("--kinds is empty");
    for (const std::string& kind : o.kinds) {
      const auto& known = scene_kinds();
      if (std::find(known.begin(), known.end(), kind) == known.end()) {
        std::string names;
        for (const std::string& k : known) names += (names.empty() ? "" : ", ") + k;
        throw UsageError("--kinds: unknown kind '" + kind + "' (known: " + names + ")");
      }
    }
  }
  o.command_line = command_line("train-video", args);
  try {
    o.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }

  if (vm.count("eval-only")) {
    at::set_num_threads(o.threads);
    const VideoModel model = load_video_model(o.out_dir);
    VideoEvalOptions eval;
    eval.kinds = o.kind_list();
    eval.split = Split::kValidation;
    eval.count = std::max<int64_t>(o.eval_count, 1);
    eval.frames = o.frames;
    eval.scene = o.scene_options();
    eval.policies = {"full"};
    eval.threads = o.threads;
    const VideoEvaluation report = evaluate_video(model, nullptr, eval);
    write_file_atomically((std::filesystem::path(o.out_dir) / "eval.json").string(), report.to_json() + "\n");
    write_file_atomically((std::filesystem::path(o.out_dir) / "eval.md").string(), report.to_markdown());
    std::cout << report.to_markdown();
    return 0;
  }

  VideoTrainer trainer(o, &std::cout);
  int64_t reached = 0;
  {
    const StopSignal stop;
    reached = trainer.train([&stop] { return stop.requested(); });
  }
  if (reached < o.steps) {
    std::cout << "stopped at step " << reached << "/" << o.steps << "; checkpoint in " << o.out_dir
              << "; run the same command to resume\n";
    return 130;
  }
  if (o.eval_count > 0) {
    const VideoEvaluation report = trainer.evaluate_and_record();
    std::cout << report.to_markdown();
  }
  return 0;
}

}  // namespace namm::app
