// bench_namm_update: what one NAMM update costs next to the host forward it
// manages, measured on a small Llama-style stand-in host and projected to a
// Llama-3-8B-sized one from FLOP counts.
//
// The host here (4 layers, 256 wide, 4 query heads of 64 over 4 KV heads,
// RMSNorm, RoPE before caching, SwiGLU 256->688->256, random weights) is a
// stand-in for the language host of text/, not that host. It prefills 4,096
// tokens in chunks of 512 and then measures:
//   (a) the forward of 512 new tokens over the 4k cache (with and without
//       attention recording),
//   (b) one NAMM update over all 4 layers (NammPolicy, random parameters) on
//       the 512 recorded rows x 4,608 tokens per head, end to end through the
//       MemoryController and broken into row assembly / spectrogram / BAM
//       features / BAM / selection+eviction by running the same steps by hand,
//   (c) plain at::mm at the BAM's and the host's shapes, for LibTorch's GFLOP/s.
// Medians of a few repetitions, 2 threads. Prints a plain-text report.
// Usage: namm_bench_namm_update [repetitions=5] [threads=2] [wall|cpu]
// `cpu` times with the process CPU clock (all threads summed): on a shared,
// overloaded machine with threads=1 it gives the compute time that wall
// clocks lose to other processes.
#include "adapters/kv_cache.h"
#include "adapters/cached_host.h"
#include "adapters/memory_controller.h"
#include "adapters/prunable_attention.h"
#include "core/bam.h"
#include "core/namm_model.h"
#include "core/namm_policy.h"
#include "core/recency.h"
#include "core/selection.h"
#include "core/spectrogram.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <vector>

namespace {

using namm::AttentionRecorder;
using namm::LayerKvCache;

bool g_cpu_clock = false;

// Seconds on the chosen clock: steady wall clock, or process CPU time.
struct Clock {
  using time_point = double;
  static double now() {
    if (g_cpu_clock) {
      timespec ts{};
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
      return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
};

double seconds_since(double start) { return Clock::now() - start; }

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// Sizes of a Llama-style decoder, for the stand-in and for projections.
struct HostShape {
  int64_t layers, width, q_heads, kv_heads, head_dim, mlp;
};

// Matmul FLOPs of one forward of n new tokens attending over `tokens`
// cached tokens per head (the full [n, T] score block is computed).
double host_flops(const HostShape& s, int64_t n, int64_t tokens) {
  const double nn = static_cast<double>(n);
  const double q_width = static_cast<double>(s.q_heads * s.head_dim);
  const double kv_width = static_cast<double>(s.kv_heads * s.head_dim);
  const double w = static_cast<double>(s.width);
  const double per_layer = 2.0 * nn * w * q_width            // q projection
                           + 2.0 * 2.0 * nn * w * kv_width    // k, v projections
                           + 2.0 * nn * q_width * w           // output projection
                           + 2.0 * 2.0 * nn * static_cast<double>(tokens) * q_width  // q k^T and p v
                           + 3.0 * 2.0 * nn * w * static_cast<double>(s.mlp);      // gate, up, down
  return per_layer * static_cast<double>(s.layers);
}

// Estimated FLOPs of one spectrogram update of one head: per token and frame
// a Hann window (n_fft), a real FFT (~2.5 n log2 n), magnitudes (3 per bin)
// and the EMA (2 per bin).
double spectrogram_flops(int64_t tokens, int64_t queries, const namm::SpectrogramOptions& o) {
  const double frames = static_cast<double>((queries + o.carry() - o.n_fft) / o.hop + 1);
  const double n = static_cast<double>(o.n_fft);
  const double per_frame = n + 2.5 * n * std::log2(n) + 5.0 * static_cast<double>(o.num_freqs());
  return static_cast<double>(tokens) * frames * per_frame;
}

// The stand-in decoder: random weights, no vocabulary (inputs are embeddings).
class StandInHost : public namm::CachedHost {
 public:
  explicit StandInHost(const HostShape& shape) : shape_(shape) {
    const double w_scale = 1.0 / std::sqrt(static_cast<double>(shape.width));
    const double m_scale = 1.0 / std::sqrt(static_cast<double>(shape.mlp));
    for (int64_t l = 0; l < shape.layers; ++l) {
      Layer layer;
      layer.attn_norm = at::ones({shape.width});
      layer.mlp_norm = at::ones({shape.width});
      layer.wq = at::randn({shape.width, shape.q_heads * shape.head_dim}) * w_scale;  // [W, Hq*D]
      layer.wk = at::randn({shape.width, shape.kv_heads * shape.head_dim}) * w_scale;  // [W, Hkv*D]
      layer.wv = at::randn({shape.width, shape.kv_heads * shape.head_dim}) * w_scale;
      layer.wo = at::randn({shape.q_heads * shape.head_dim, shape.width}) * w_scale;   // [Hq*D, W]
      layer.w_gate = at::randn({shape.width, shape.mlp}) * w_scale;                    // [W, M]
      layer.w_up = at::randn({shape.width, shape.mlp}) * w_scale;
      layer.w_down = at::randn({shape.mlp, shape.width}) * m_scale;                    // [M, W]
      layers_.push_back(layer);
    }
    const int64_t half = shape.head_dim / 2;
    inv_freq_ = at::pow(10000.0, -at::arange(half, at::kDouble) / static_cast<double>(half)).to(at::kFloat);  // [D/2]
  }

  std::vector<LayerKvCache> make_caches() const {
    namm::KvCacheOptions options;
    options.num_heads = shape_.kv_heads;
    options.head_dim = shape_.head_dim;
    return std::vector<LayerKvCache>(static_cast<size_t>(shape_.layers), LayerKvCache(options));
  }

  int64_t num_layers() const override { return shape_.layers; }
  int64_t embedding_width() const override { return shape_.width; }
  namm::SequenceState new_state() const override {
    namm::SequenceState state;
    state.caches = make_caches();
    return state;
  }
  at::Tensor forward_layers(namm::SequenceState& state, const at::Tensor& embeddings, const at::Tensor& positions,
                            const std::vector<AttentionRecorder*>& recorders) const override {
    return forward(embeddings, positions, state.caches, recorders);
  }
  std::string summary() const override { return "stand-in Llama-style decoder, random weights"; }
  std::vector<std::pair<std::string, at::Tensor>> hf_named_parameters() const override { return {}; }

  // x [n, W] at positions [n] -> [n, W]; recorders: one per layer or empty.
  at::Tensor forward(at::Tensor x, const at::Tensor& positions, std::vector<LayerKvCache>& caches,
                     const std::vector<AttentionRecorder*>& recorders) const {
    const int64_t n = x.size(0);
    const at::Tensor angles = positions.to(at::kFloat).unsqueeze(1) * inv_freq_.unsqueeze(0);  // [n, D/2]
    const at::Tensor cos = angles.cos(), sin = angles.sin();
    for (size_t l = 0; l < layers_.size(); ++l) {
      const Layer& w = layers_[l];
      const at::Tensor h = rms_norm(x, w.attn_norm);  // [n, W]
      const at::Tensor q = rope(heads_first(at::mm(h, w.wq), shape_.q_heads), cos, sin);   // [Hq, n, D]
      const at::Tensor k = rope(heads_first(at::mm(h, w.wk), shape_.kv_heads), cos, sin);  // [Hkv, n, D]
      const at::Tensor v = heads_first(at::mm(h, w.wv), shape_.kv_heads);
      const at::Tensor attended = namm::prunable_attention(q, k, v, positions, caches[l],
                                                           recorders.empty() ? nullptr : recorders[l]);
      x = x + at::mm(attended.transpose(0, 1).reshape({n, shape_.q_heads * shape_.head_dim}), w.wo);  // [n, W]
      const at::Tensor m = rms_norm(x, w.mlp_norm);
      x = x + at::mm(at::silu(at::mm(m, w.w_gate)) * at::mm(m, w.w_up), w.w_down);  // [n, W]
    }
    return x;
  }

 private:
  struct Layer {
    at::Tensor attn_norm, mlp_norm, wq, wk, wv, wo, w_gate, w_up, w_down;
  };

  static at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) {
    return x * at::rsqrt(x.pow(2).mean(-1, true) + 1e-5) * weight;
  }
  at::Tensor heads_first(const at::Tensor& x, int64_t heads) const {
    return x.view({x.size(0), heads, shape_.head_dim}).transpose(0, 1);  // [n, H*D] -> [H, n, D]
  }
  // rotate-half RoPE: x [H, n, D], cos/sin [n, D/2]
  at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const {
    const int64_t half = shape_.head_dim / 2;
    const at::Tensor x1 = x.narrow(2, 0, half), x2 = x.narrow(2, half, half);
    return at::cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, 2);  // [H, n, D]
  }

  HostShape shape_;
  std::vector<Layer> layers_;
  at::Tensor inv_freq_;
};

// Median seconds of at::mm at [m, k] x [k, n] and its GFLOP/s.
std::pair<double, double> time_matmul(int64_t m, int64_t k, int64_t n, int reps) {
  const at::Tensor a = at::randn({m, k}), b = at::randn({k, n});
  at::Tensor c = at::mm(a, b);  // warm-up
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    at::mm_out(c, a, b);
    times.push_back(seconds_since(start));
  }
  const double t = median(times);
  return {t, 2.0 * static_cast<double>(m * k * n) / t / 1e9};
}

}  // namespace

int main(int argc, char** argv) {
  for (int a = 1; a < argc; ++a) {
    if (argv[a][0] == '-' || (argv[a][0] != 0 && std::atof(argv[a]) <= 0 && std::isdigit(static_cast<unsigned char>(argv[a][0])))) {
      std::fprintf(stderr, "%s\n", "usage: namm_bench_namm_update [reps=5] [threads=2] [wall|cpu]");
      return argv[a][1] == 'h' || std::strcmp(argv[a], "--help") == 0 ? 0 : 2;
    }
  }
  const int kReps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  at::set_num_threads(argc > 2 ? std::max(1, std::atoi(argv[2])) : 2);
  g_cpu_clock = argc > 3 && std::strcmp(argv[3], "cpu") == 0;
  at::manual_seed(0);
  constexpr int64_t kPrefill = 4096;
  constexpr int64_t kChunk = 512;
  const HostShape shape{4, 256, 4, 4, 64, 688};
  const HostShape llama{32, 4096, 32, 8, 128, 14336};
  const StandInHost host(shape);

  // a NAMM with the published defaults, random small parameters and unit feature statistics
  namm::NammConfig config;
  auto model = std::make_shared<namm::NammModel>(namm::NammModel::zeros(config));
  model->params = at::randn({config.bam.param_count()}) * 0.1;
  const int64_t freqs = config.spectrogram.num_freqs();
  model->normalizer.set(at::zeros({freqs}, at::kDouble), at::ones({freqs}, at::kDouble), 1.0);
  const std::shared_ptr<const namm::NammModel> shared_model = model;

  // prefill 4,096 tokens without a policy: the cache must hold them all
  namm::SequenceState prefill_state = host.new_state();
  const auto prefill_start = Clock::now();
  namm::feed_sequence(host, prefill_state, at::randn({kPrefill, shape.width}), kChunk, nullptr,
                      namm::HiddenRows::kLast);
  const double prefill_s = seconds_since(prefill_start);
  const std::vector<LayerKvCache> prefilled = std::move(prefill_state.caches);
  const at::Tensor x_new = at::randn({kChunk, shape.width});
  const at::Tensor new_positions = at::arange(kPrefill, kPrefill + kChunk, at::kLong);
  const int64_t tokens = kPrefill + kChunk;

  // (a) forward of 512 new tokens over the 4k cache, without recording
  std::vector<double> forward_plain;
  for (int r = 0; r < kReps; ++r) {
    std::vector<LayerKvCache> caches = prefilled;
    const auto start = Clock::now();
    host.forward(x_new, new_positions, caches, {});
    forward_plain.push_back(seconds_since(start));
  }

  // (a) with recording and (b) the whole update through the controller
  std::vector<double> forward_recorded, update_total;
  int64_t bytes_before = 0, bytes_after = 0;
  double retained = 0;
  for (int r = 0; r < kReps; ++r) {
    std::vector<LayerKvCache> caches = prefilled;
    namm::ControllerOptions options;
    options.delay = kChunk;
    namm::MemoryController controller(std::make_unique<namm::NammPolicy>(shared_model),
                                      static_cast<int>(shape.layers), options);
    std::vector<AttentionRecorder*> recorders;
    for (int l = 0; l < shape.layers; ++l) recorders.push_back(controller.recorder(l));
    auto start = Clock::now();
    host.forward(x_new, new_positions, caches, recorders);
    forward_recorded.push_back(seconds_since(start));
    // the controller counts tokens from its creation: the 512 new ones
    bytes_before = 0;
    for (const LayerKvCache& cache : caches) bytes_before += cache.bytes();
    start = Clock::now();
    controller.after_tokens(kChunk, caches);
    update_total.push_back(seconds_since(start));
    bytes_after = 0;
    for (const LayerKvCache& cache : caches) bytes_after += cache.bytes();
    int64_t kept = 0;
    for (const LayerKvCache& cache : caches) {
      for (int64_t h = 0; h < cache.num_heads(); ++h) kept += cache.length(h);
    }
    retained = static_cast<double>(kept) / static_cast<double>(tokens * shape.layers * shape.kv_heads);
  }

  // (b) the same steps by hand, timed apart
  std::vector<double> t_rows, t_spec, t_features, t_bam, t_select;
  for (int r = 0; r < kReps; ++r) {
    std::vector<LayerKvCache> caches = prefilled;
    std::vector<AttentionRecorder> recorder_store(static_cast<size_t>(shape.layers));
    std::vector<AttentionRecorder*> recorders;
    for (AttentionRecorder& rec : recorder_store) recorders.push_back(&rec);
    host.forward(x_new, new_positions, caches, recorders);
    namm::SpectrogramFeaturizer featurizer(config.spectrogram);
    double rows_s = 0, spec_s = 0, features_s = 0, bam_s = 0, select_s = 0;
    for (int64_t l = 0; l < shape.layers; ++l) {
      LayerKvCache& cache = caches[static_cast<size_t>(l)];
      std::vector<at::Tensor> scores;
      for (int64_t h = 0; h < shape.kv_heads; ++h) {
        auto start = Clock::now();
        const at::Tensor attention = recorder_store[static_cast<size_t>(l)].rows(h, cache);  // [Q, T]
        const at::Tensor positions = cache.positions(h);                                      // [T]
        rows_s += seconds_since(start);
        start = Clock::now();
        namm::HeadSpectrogramState state;
        const at::Tensor spectrogram = featurizer.update(attention, kChunk, state);  // [T, F]
        spec_s += seconds_since(start);
        start = Clock::now();
        const at::Tensor recency = namm::recency_embedding(positions, cache.newest_position(), config.recency_dim,
                                                           config.recency_max_freq);  // [T, 8]
        const at::Tensor features = at::cat({recency, model->normalizer.apply(spectrogram).to(at::kFloat)}, 1);
        features_s += seconds_since(start);
        start = Clock::now();
        scores.push_back(namm::bam_scores(features, model->params, config.bam));  // [T]
        bam_s += seconds_since(start);
      }
      const auto start = Clock::now();
      cache.keep_all_heads(namm::select_tokens(scores, config.selection));
      select_s += seconds_since(start);
    }
    t_rows.push_back(rows_s);
    t_spec.push_back(spec_s);
    t_features.push_back(features_s);
    t_bam.push_back(bam_s);
    t_select.push_back(select_s);
  }

  // (c) plain matmuls
  const auto [mm_bam_s, mm_bam_gflops] = time_matmul(4096, 32, 4096, 10);
  const auto [mm_host_s, mm_host_gflops] = time_matmul(512, 256, 688, 20);

  // FLOP counts
  const int64_t heads_total = shape.layers * shape.kv_heads;
  const double spec_flops = spectrogram_flops(tokens, kChunk, config.spectrogram) * static_cast<double>(heads_total);
  const double bam_total_flops = namm::bam_flops(tokens, config.bam) * static_cast<double>(heads_total);
  const double namm_total_flops = spec_flops + bam_total_flops;
  const double host_total_flops = host_flops(shape, kChunk, tokens);

  const double fwd_s = median(forward_plain);
  const double fwd_rec_s = median(forward_recorded);
  const double upd_s = median(update_total);
  const double host_gflops = host_total_flops / fwd_s / 1e9;
  const double namm_gflops = namm_total_flops / upd_s / 1e9;
  const double bam_gflops = bam_total_flops / median(t_bam) / 1e9;

  std::printf("namm update benchmark (%d threads, medians of %d runs, %s clock)\n", at::get_num_threads(), kReps,
              g_cpu_clock ? "process CPU" : "wall");
  std::printf("host: %lld layers x %lld wide, %lld q heads / %lld kv heads of %lld, SwiGLU %lld; prefill %lld tokens in %lld-token chunks: %.3f s\n",
              (long long)shape.layers, (long long)shape.width, (long long)shape.q_heads, (long long)shape.kv_heads,
              (long long)shape.head_dim, (long long)shape.mlp, (long long)kPrefill, (long long)kChunk, prefill_s);
  std::printf("\n(a) host forward, %lld new tokens over a %lld-token cache\n", (long long)kChunk, (long long)kPrefill);
  std::printf("    FLOPs %.3f G; %.2f ms without recording (%.1f GFLOP/s), %.2f ms recording attention\n",
              host_total_flops / 1e9, fwd_s * 1e3, host_gflops, fwd_rec_s * 1e3);
  std::printf("\n(b) NAMM update, %lld layers x %lld heads, %lld rows x %lld tokens per head\n",
              (long long)shape.layers, (long long)shape.kv_heads, (long long)kChunk, (long long)tokens);
  std::printf("    total through MemoryController: %.2f ms; FLOPs %.3f G (spectrogram ~%.3f G est., BAM %.3f G)\n",
              upd_s * 1e3, namm_total_flops / 1e9, spec_flops / 1e9, bam_total_flops / 1e9);
  std::printf("    by hand: rows %.2f ms | spectrogram %.2f ms | features %.2f ms | BAM %.2f ms | selection+eviction %.2f ms\n",
              median(t_rows) * 1e3, median(t_spec) * 1e3, median(t_features) * 1e3, median(t_bam) * 1e3,
              median(t_select) * 1e3);
  std::printf("    kept %.1f%% of the cache (random parameters); K/V bytes %.1f MB -> %.1f MB\n", retained * 100.0,
              bytes_before / 1e6, bytes_after / 1e6);
  std::printf("    update / forward time: %.1f%%\n", 100.0 * upd_s / fwd_s);
  std::printf("\n(c) plain at::mm: [4096,32]x[32,4096] %.2f ms = %.1f GFLOP/s; [512,256]x[256,688] %.3f ms = %.1f GFLOP/s\n",
              mm_bam_s * 1e3, mm_bam_gflops, mm_host_s * 1e3, mm_host_gflops);
  std::printf("\nthroughput: NAMM update %.1f GFLOP/s (BAM alone %.1f) vs plain matmul %.1f GFLOP/s: %.2fx (target >= 0.5x)\n",
              namm_gflops, bam_gflops, mm_bam_gflops, namm_gflops / mm_bam_gflops);

  const int64_t llama_heads = llama.layers * llama.kv_heads;
  const double llama_host = host_flops(llama, kChunk, tokens);
  const double llama_namm = (spectrogram_flops(tokens, kChunk, config.spectrogram) + namm::bam_flops(tokens, config.bam)) *
                            static_cast<double>(llama_heads);
  std::printf("\nLlama-3-8B-sized host (32 layers, 4096 wide, 32/8 heads of 128, MLP 14336), %lld new tokens over a %lld-token cache:\n",
              (long long)kChunk, (long long)kPrefill);
  std::printf("    host %.1f GFLOP, NAMM %.1f GFLOP (%lld heads): FLOP overhead %.2f%%\n", llama_host / 1e9,
              llama_namm / 1e9, (long long)llama_heads, 100.0 * llama_namm / llama_host);
  std::printf("    projected at the measured rates (host %.1f, NAMM %.1f GFLOP/s): host %.2f s, NAMM %.2f s, time overhead %.2f%%\n",
              host_gflops, namm_gflops, llama_host / host_gflops / 1e9, llama_namm / namm_gflops / 1e9,
              100.0 * (llama_namm / namm_gflops) / (llama_host / host_gflops));
  return 0;
}
