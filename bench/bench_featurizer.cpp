// Featurizer throughput: SpectrogramFeaturizer::update (FFTW, fused EMA)
// against the same work done with at::stft and tensor ops, in one run.
//
// One update of Q queries over H heads x T cached tokens, the last Q tokens
// new, the others carrying state from a previous update. Reports the median
// of several repetitions in head-tokens per second, the speed-up, and the max
// |difference| between the two results, for 1 and 2 torch threads.
//
// CPU time is printed next to wall time: on a shared machine the CPU seconds
// of a 1-thread run are the steadier figure.
//
//   namm_bench_featurizer [heads=16] [tokens=4096] [queries=512] [reps=7] [both|ours|stft]
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
#include <string>
#include <vector>

#include "core/spectrogram.h"

namespace {

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double wall = 0;  ///< median wall-clock seconds
  double cpu = 0;   ///< median process CPU seconds (all threads): robust on a shared machine
};

Timing median_timing(int reps, const std::function<void()>& fn) {
  fn();  // warm-up: plans, allocator, caches
  std::vector<double> walls, cpus;
  for (int r = 0; r < reps; ++r) {
    const double cpu_start = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    fn();
    walls.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    cpus.push_back(cpu_seconds() - cpu_start);
  }
  std::sort(walls.begin(), walls.end());
  std::sort(cpus.begin(), cpus.end());
  return {walls[walls.size() / 2], cpus[cpus.size() / 2]};
}

// The same update with at::stft: pad with carry, STFT (center=false), |.|,
// masked EMA weights, sum over frames, decayed old state added.
// attention: [H, Q, T]; carry: [H, T_old, C]; ema: [H, T_old, F] -> [H, T, F].
at::Tensor stft_update(const at::Tensor& attention, const at::Tensor& carry, const at::Tensor& ema,
                       const at::Tensor& window, const namm::SpectrogramOptions& opt) {
  const int64_t H = attention.size(0), Q = attention.size(1), T = attention.size(2);
  const int64_t num_old = carry.size(1), num_new = T - num_old;
  const int64_t C = opt.carry(), F = opt.num_freqs();
  const at::Tensor pad = at::cat({carry, at::zeros({H, num_new, C})}, 1);      // [H, T, C]
  const at::Tensor series = at::cat({pad, attention.transpose(1, 2)}, 2);      // [H, T, C + Q]
  const at::Tensor mags = at::stft(series.reshape({H * T, C + Q}), opt.n_fft, opt.hop, opt.n_fft,
                                   window, /*center=*/false, "constant", /*normalized=*/false,
                                   /*onesided=*/true, /*return_complex=*/true)
                              .abs();                                          // [H*T, F, J]
  const int64_t J = mags.size(2);
  const double g = std::pow(opt.ema_gamma, static_cast<double>(opt.hop));
  const at::Tensor j = at::arange(J, at::kLong);
  const at::Tensor weights = ((1 - g) * at::pow(g, (J - 1 - j).to(at::kDouble))).to(at::kFloat);
  // new token i keeps frames j >= i / hop; old tokens keep all.
  const at::Tensor first = at::cat({at::zeros({num_old}, at::kLong),
                                    at::arange(num_new, at::kLong).div(opt.hop, "floor")});
  const at::Tensor wm = weights * (j.unsqueeze(0) >= first.unsqueeze(1)).to(at::kFloat);  // [T, J]
  at::Tensor out = (mags.view({H, T, F, J}) * wm.view({1, T, 1, J})).sum(-1);            // [H, T, F]
  out.slice(1, 0, num_old).add_(ema, std::pow(opt.ema_gamma, static_cast<double>(num_new)));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  for (int a = 1; a < argc; ++a) {
    if (argv[a][0] == '-' || (argv[a][0] != 0 && std::atof(argv[a]) <= 0 && std::isdigit(static_cast<unsigned char>(argv[a][0])))) {
      std::fprintf(stderr, "%s\n", "usage: namm_bench_featurizer [heads=16] [tokens=4096] [queries=512] [reps=7] [both|ours|stft]");
      return argv[a][1] == 'h' || std::strcmp(argv[a], "--help") == 0 ? 0 : 2;
    }
  }
  const int64_t H = argc > 1 ? std::atoll(argv[1]) : 16;
  const int64_t T = argc > 2 ? std::atoll(argv[2]) : 4096;
  const int64_t Q = argc > 3 ? std::atoll(argv[3]) : 512;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 7;
  const std::string mode = argc > 5 ? argv[5] : "both";
  const namm::SpectrogramOptions opt;
  const int64_t num_old = T - Q;

  at::manual_seed(0);
  // softmax-like attention rows, and state left by a previous update.
  const at::Tensor attention = at::softmax(at::randn({H, Q, T}) * 2, -1);  // [H, Q, T]
  const at::Tensor carry = at::softmax(at::randn({H, num_old, opt.carry()}), -1);
  const at::Tensor ema = at::rand({H, num_old, opt.num_freqs()}) * 0.1;
  const at::Tensor window = at::hann_window(opt.n_fft, /*periodic=*/true, at::kFloat);

  namm::SpectrogramFeaturizer featurizer(opt);
  std::vector<namm::HeadSpectrogramState> states(H);
  std::vector<at::Tensor> ours(H);
  at::Tensor reference;
  auto run_ours = [&] {
    for (int64_t h = 0; h < H; ++h) {
      states[h].carry = carry[h];
      states[h].ema = ema[h];
      ours[h] = featurizer.update(attention[h], Q, states[h]);
    }
  };
  auto run_stft = [&] { reference = stft_update(attention, carry, ema, window, opt); };
  // the at::stft call alone on prebuilt padded series (no |.|, no EMA): a floor
  // for any at::stft-based featurizer.
  const at::Tensor padded =
      at::cat({at::cat({carry, at::zeros({H, Q, opt.carry()})}, 1), attention.transpose(1, 2)}, 2)
          .reshape({H * T, opt.carry() + Q});
  auto run_stft_only = [&] {
    at::stft(padded, opt.n_fft, opt.hop, opt.n_fft, window, /*center=*/false, "constant",
             /*normalized=*/false, /*onesided=*/true, /*return_complex=*/true);
  };

  std::printf("featurizer update: %lld heads x %lld tokens, %lld queries (%lld new), median of %d\n",
              static_cast<long long>(H), static_cast<long long>(T), static_cast<long long>(Q),
              static_cast<long long>(Q), reps);
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    const double work = static_cast<double>(H * T);
    Timing t_ours, t_stft;
    if (mode != "stft") t_ours = median_timing(reps, run_ours);
    if (mode != "ours") t_stft = median_timing(reps, run_stft);
    if (mode != "both") {
      const Timing t = mode == "ours" ? t_ours : t_stft;
      std::printf("threads=%d  %s %8.2f ms wall (%7.2f M head-tokens/s)  %8.2f ms cpu\n", threads,
                  mode.c_str(), t.wall * 1e3, work / t.wall / 1e6, t.cpu * 1e3);
      continue;
    }
    const Timing t_only = median_timing(reps, run_stft_only);
    std::printf("threads=%d  at::stft call alone: %8.2f ms wall, %8.2f ms cpu\n", threads,
                t_only.wall * 1e3, t_only.cpu * 1e3);
    const double max_diff = (at::stack(ours) - reference).abs().max().item<double>();
    const double max_ref = reference.abs().max().item<double>();
    std::printf(
        "threads=%d  ours %8.2f ms wall (%6.3f M head-tokens/s, %8.2f ms cpu) | at::stft %8.2f ms "
        "wall (%6.3f M head-tokens/s, %8.2f ms cpu) | speed-up %.2fx wall, %.2fx cpu | "
        "max|diff| %.2e (max|ref| %.3f)\n",
        threads, t_ours.wall * 1e3, work / t_ours.wall / 1e6, t_ours.cpu * 1e3, t_stft.wall * 1e3,
        work / t_stft.wall / 1e6, t_stft.cpu * 1e3, t_stft.wall / t_ours.wall,
        t_stft.cpu / t_ours.cpu, max_diff, max_ref);
  }
  return 0;
}
