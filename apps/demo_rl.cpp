#include "apps/demo_rl.h"

#include "core/namm_model.h"
#include "rl/dt_checkpoint.h"
#include "rl/render.h"
#include "rl/rollout.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace namm::app {

bool demo_rl(const std::string& model_dir, const std::string& env_name, const std::string& namm_path,
             const std::string& out_dir, int threads) {
  namespace fs = std::filesystem;
  std::printf("\nRL: the shipped Decision Transformer in MuJoCo %s, one episode per memory setting\n", env_name.c_str());
  if (!fs::exists(fs::path(model_dir) / "config.json")) {
    std::printf("  not available: no Decision Transformer in %s (train one with `namm train-dt`)\n", model_dir.c_str());
    return false;
  }
  at::set_num_threads(threads);
  const DtCheckpoint checkpoint = load_dt_checkpoint(model_dir);
  std::shared_ptr<const NammModel> namm;
  if (fs::exists(namm_path)) namm = std::make_shared<const NammModel>(NammModel::load(namm_path));
  std::printf("  model: %s (%s)\n", model_dir.c_str(), checkpoint.config.summary().c_str());
  std::printf("  NAMM: %s\n", namm ? (namm_path + " (evolved on language only: zero-shot here)").c_str()
                                   : (namm_path + " missing: full cache and window only").c_str());

  struct Setting {
    std::string label;
    const char* policy;
    int64_t window;
  };
  // the standard evaluation re-encodes the last K steps, K as trained
  const int64_t k = checkpoint.sidecar.context;
  const Setting settings[] = {{"window " + std::to_string(k) + " (standard DT)", "full", k},
                              {"full cache, whole episode", "full", 0},
                              {"NAMM, whole episode", "namm", 0}};
  // the episode filmed: the NAMM's, or the full cache's when there is no NAMM
  const std::string filmed = namm ? "namm" : "full";
  EpisodeRecorder recorder(RenderOptions{}, namm ? "NAMM zero-shot" : "full cache");
  RolloutReport filmed_report;
  for (const Setting& setting : settings) {
    const bool film = setting.policy == filmed && setting.window == 0;
    RolloutOptions options;
    options.policy.name = setting.policy;
    options.window = setting.window;
    options.episodes = 1;
    options.seed = 0;
    options.record_token_kinds = film;  // the video's KV line reads them
    if (film) options.on_step = recorder.hook(0);
    if (std::string(setting.policy) == "namm") {
      if (!namm) continue;
      options.policy.namm_model = namm;
      options.delay = namm->config.delay;
    }
    const RolloutReport report = run_rollouts(checkpoint.model, checkpoint.sidecar, env_name, options);
    const EpisodeResult& episode = report.episodes.front();
    std::printf("    %-27s return %7.1f  D4RL score %5.1f  %4lld steps  KV per head %6.1f of %6.1f tokens (%5.1f%%)  "
                "model %.2f ms/step\n",
                setting.label.c_str(), episode.episode_return, episode.normalized_score, static_cast<long long>(episode.steps),
                report.mean_cached_tokens(), report.mean_full_tokens(), 100.0 * report.retained_fraction(),
                report.model_ms_per_step());
    if (film) filmed_report = report;
  }
  const std::string video = (fs::path(out_dir) / (env_name + ".mp4")).string();
  try {
    fs::create_directories(out_dir);
    recorder.write_video(video, filmed_report, 0);
    std::printf("  video of the %s episode: %s (2D side view, half speed)\n",
                namm ? "NAMM" : "full-cache", video.c_str());
  } catch (const std::exception& e) {
    std::printf("  video not written: %s\n", e.what());
  }
  std::printf("  `namm rollout` runs more episodes and any policy; D4RL score 100 = expert, 0 = random.\n");
  return true;
}

}  // namespace namm::app
