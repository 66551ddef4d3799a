// `namm demo`: the main job. It grows with every capability; today it runs
// the memory core through the host seam on a built-in example and says
// plainly what is not available yet.
//
// The built-in example is a "needle" stream for a 2-layer attention stack:
// a long sequence of filler tokens with a few needle tokens whose keys every
// later query looks for. Every policy manages the same stream at the same
// budget; we report memory kept, needles kept and how far the attention
// output drifts from the full cache's.
#include "adapters/cached_host.h"
#include "adapters/kv_cache.h"
#include "adapters/memory_controller.h"
#include "adapters/prunable_attention.h"
#include "apps/demo_language.h"
#include "apps/demo_rl.h"
#include "apps/demo_video.h"
#include "apps/options.h"
#include "core/namm_model.h"
#include "core/policy_registry.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace namm::app {
namespace {

struct DemoSettings {
  int64_t tokens = 4096;
  int64_t needles = 24;
  int64_t delay = 512;
  int64_t chunk = 128;
  std::string budget = "25%";
  uint64_t seed = 1;
  std::string namm_path = "models/namm.safetensors";
  std::string lm_dir = "models/lm";
  std::string video_dir = "models/video";
  std::string clips_index = "scenes/video/demo/index.json";
  std::string dt_dir = "models/dt-hopper";
  std::string out_dir = "out/demo";
};

constexpr int kLayers = 2, kQueryHeads = 4, kKvHeads = 2, kHeadDim = 32;

// q/k/v of one layer for the whole sequence: [H, T, D]; needles [T] bool.
struct LayerStream {
  at::Tensor q, k, v;
};

struct NeedleStream {
  std::vector<LayerStream> layers;
  at::Tensor is_needle;  // [T] bool
};

NeedleStream make_stream(const DemoSettings& settings) {
  at::manual_seed(static_cast<int64_t>(settings.seed));
  const int64_t T = settings.tokens;
  NeedleStream stream;
  // needles spread over the first 80% of the sequence, so later queries find them
  const at::Tensor slots = at::randperm(T * 8 / 10, at::kLong).slice(0, 0, settings.needles);
  stream.is_needle = at::zeros({T}, at::kBool).index_fill_(0, slots, true);
  const at::Tensor needle_rows = stream.is_needle.view({1, T, 1});
  for (int layer = 0; layer < kLayers; ++layer) {
    // one "topic" direction per KV head that needles carry and queries seek
    at::Tensor topic = at::randn({kKvHeads, 1, kHeadDim});
    topic = topic / topic.norm(2, {-1}, true);
    at::Tensor k = 0.3 * at::randn({kKvHeads, T, kHeadDim});
    k = at::where(needle_rows, k + 3.0 * topic, k);
    const at::Tensor v = at::randn({kKvHeads, T, kHeadDim});
    const at::Tensor topic_q = topic.repeat_interleave(kQueryHeads / kKvHeads, 0);
    const at::Tensor q = 2.0 * topic_q + 0.5 * at::randn({kQueryHeads, T, kHeadDim});
    stream.layers.push_back({q * std::sqrt(double(kHeadDim)), k, v});
  }
  return stream;
}

struct DemoRun {
  std::string policy;
  double retained = 1.0;      // mean fraction of the full cache kept at updates
  int64_t final_tokens = 0;   // cached tokens at the end, all layers and heads
  int64_t final_bytes = 0;    // K/V bytes allocated at the end
  double needles_kept = 0.0;  // fraction of (layer, head, needle) still cached at the end
  at::Tensor outputs;         // [layers, Hq, T, D]
  double seconds = 0.0;
};

// The needle stream as a host: its layers' queries, keys and values are fixed
// in advance, so a chunk's embeddings carry nothing and forward_layers
// slices the stream at the chunk's positions. It keeps every layer's
// attention output for the drift measure (one host per run, one thread).
class NeedleStreamHost : public CachedHost {
 public:
  explicit NeedleStreamHost(const NeedleStream& stream) : stream_(stream), outputs_(kLayers) {}

  int64_t num_layers() const override { return kLayers; }
  int64_t embedding_width() const override { return 1; }
  SequenceState new_state() const override {
    return SequenceState::with_layers(kLayers, KvCacheOptions{kKvHeads, kHeadDim});
  }
  at::Tensor forward_layers(SequenceState& state, const at::Tensor& embeddings, const at::Tensor& positions,
                            const std::vector<AttentionRecorder*>& recorders) const override {
    const int64_t begin = positions.data_ptr<int64_t>()[0];
    const int64_t n = positions.size(0);
    for (int l = 0; l < kLayers; ++l) {
      const LayerStream& layer = stream_.layers[static_cast<size_t>(l)];
      outputs_[static_cast<size_t>(l)].push_back(prunable_attention(
          layer.q.slice(1, begin, begin + n), layer.k.slice(1, begin, begin + n), layer.v.slice(1, begin, begin + n),
          positions, state.caches[static_cast<size_t>(l)], recorders.empty() ? nullptr : recorders[static_cast<size_t>(l)]));
    }
    return embeddings;
  }
  std::string summary() const override { return "needle stream: 2 attention layers, 4 query / 2 KV heads of 32"; }
  std::vector<std::pair<std::string, at::Tensor>> hf_named_parameters() const override { return {}; }

  /// Attention outputs of the whole stream: [layers, Hq, T, D].
  at::Tensor outputs() const {
    std::vector<at::Tensor> per_layer;
    for (const auto& chunks : outputs_) per_layer.push_back(at::cat(chunks, 1));
    return at::stack(per_layer);
  }

 private:
  const NeedleStream& stream_;
  mutable std::vector<std::vector<at::Tensor>> outputs_;  // [layers] -> chunks [Hq, n, D]
};

DemoRun run_policy(const NeedleStream& stream, const DemoSettings& settings, const PolicySpec& spec) {
  DemoRun run;
  run.policy = spec.name;
  ControllerOptions controller_options;
  controller_options.delay = settings.delay;
  MemoryController controller(make_policy(spec), kLayers, controller_options);
  const NeedleStreamHost host(stream);
  SequenceState state = host.new_state();

  const auto start = std::chrono::steady_clock::now();
  feed_sequence(
      host, state, settings.tokens, [](int64_t, int64_t n) { return at::zeros({n, 1}); }, settings.chunk, &controller,
      HiddenRows::kLast);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  run.retained = controller.mean_retained_fraction();
  int64_t needle_hits = 0, needle_slots = 0;
  const auto is_needle = stream.is_needle.accessor<bool, 1>();
  for (const LayerKvCache& cache : state.caches) {
    run.final_bytes += cache.bytes();
    for (int h = 0; h < kKvHeads; ++h) {
      run.final_tokens += cache.length(h);
      for (int64_t position : cache.position_list(h)) needle_hits += is_needle[position];
      needle_slots += settings.needles;
    }
  }
  run.needles_kept = double(needle_hits) / double(needle_slots);
  run.outputs = host.outputs();
  return run;
}

}  // namespace

int run_demo(const std::vector<std::string>& args) {
  DemoSettings settings;
  int threads = 2;
  po::options_description options("options");
  options.add_options()
      ("tokens", po::value(&settings.tokens)->default_value(settings.tokens), "length of the built-in needle stream")
      ("budget", po::value(&settings.budget)->default_value(settings.budget), "baselines' memory budget: tokens (512) or a fraction (25%, 0.25)")
      ("delay", po::value(&settings.delay)->default_value(settings.delay), "tokens between memory updates")
      ("namm", po::value(&settings.namm_path)->default_value(settings.namm_path), "NAMM checkpoint; when missing, an untrained NAMM (zero parameters: keeps every token)")
      ("lm", po::value(&settings.lm_dir)->default_value(settings.lm_dir), "the language host for the language part")
      ("video-model", po::value(&settings.video_dir)->default_value(settings.video_dir), "the video model for the video part")
      ("clips", po::value(&settings.clips_index)->default_value(settings.clips_index), "index.json of the clips the video part answers")
      ("dt", po::value(&settings.dt_dir)->default_value(settings.dt_dir), "the Decision Transformer for the RL part")
      ("out", po::value(&settings.out_dir)->default_value(settings.out_dir), "folder for the video part's pictures")
      ("seed", po::value(&settings.seed)->default_value(settings.seed), "seed of the built-in example")
      ("threads", po::value(&threads)->default_value(threads), "LibTorch threads");
  po::variables_map vm;
  if (!parse_options("demo", "[options]", options, args, vm)) return 0;
  if (settings.tokens < settings.delay || settings.tokens > 1 << 20) throw UsageError("--tokens must be in [delay, 1048576]");
  if (settings.delay < 16 || settings.delay % 16 != 0) throw UsageError("--delay must be a positive multiple of 16");
  if (threads < 1) throw UsageError("--threads must be at least 1");
  at::set_num_threads(threads);

  PolicySpec base;
  base.budget = Budget::parse(settings.budget);
  base.seed = settings.seed;
  std::shared_ptr<const NammModel> namm_model;
  std::string namm_note;
  if (std::filesystem::exists(settings.namm_path)) {
    namm_model = std::make_shared<const NammModel>(NammModel::load(settings.namm_path));
    namm_note = "NAMM: " + settings.namm_path;
  } else {
    NammConfig config;
    config.delay = settings.delay;
    namm_model = std::make_shared<const NammModel>(NammModel::zeros(config));
    namm_note = "NAMM: " + settings.namm_path +
                " missing (the shipped one is models/namm.safetensors) - using an untrained NAMM, which keeps every token";
  }
  base.namm_model = namm_model;

  std::printf("namm demo: the memory core on a built-in needle stream\n");
  std::printf("  %lld tokens, %lld needles, %d layers x %d KV heads (%d query heads), update every %lld tokens, budget %s\n",
              (long long)settings.tokens, (long long)settings.needles, kLayers, kKvHeads, kQueryHeads,
              (long long)settings.delay, base.budget.to_string().c_str());
  std::printf("  %s\n\n", namm_note.c_str());

  const NeedleStream stream = make_stream(settings);
  std::vector<DemoRun> runs;
  for (const std::string& name : policy_names()) {
    PolicySpec spec = base;
    spec.name = name;
    runs.push_back(run_policy(stream, settings, spec));
  }
  const DemoRun& full = runs.front();
  std::printf("  %-10s %10s %12s %12s %12s %14s %8s\n", "policy", "retained", "cached end", "KV bytes", "needles kept",
              "output error", "time");
  for (const DemoRun& run : runs) {
    // relative L2 drift of every attention output from the full cache's
    const double error = (run.outputs - full.outputs).norm().item<double>() / full.outputs.norm().item<double>();
    std::printf("  %-10s %9.1f%% %12lld %12lld %11.1f%% %14.4f %7.2fs\n", run.policy.c_str(), 100.0 * run.retained,
                (long long)run.final_tokens, (long long)run.final_bytes, 100.0 * run.needles_kept, error, run.seconds);
  }
  std::printf("\n  retained: mean fraction of the full cache kept at updates; output error: relative L2 distance\n"
              "  of all attention outputs from the full cache's.\n\n");
  demo_language(settings.lm_dir, settings.namm_path, threads);
  demo_video(settings.video_dir, settings.clips_index, settings.namm_path, settings.out_dir, threads);
  demo_rl(settings.dt_dir, "hopper", settings.namm_path, settings.out_dir, threads);
  return 0;
}

}  // namespace namm::app
