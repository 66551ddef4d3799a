// `namm spectrogram`: the NAMM's attention features of an attention stack,
// for checking our numbers against an independent implementation.
#include "apps/attention_input.h"
#include "apps/options.h"
#include "core/npy.h"
#include "core/spectrogram.h"

#include <ATen/ATen.h>

namespace namm::app {

int run_spectrogram(const std::vector<std::string>& args) {
  std::string attention_path, out_path;
  SpectrogramOptions spectrogram;
  po::options_description options("options");
  options.add_options()
      ("attention", po::value(&attention_path)->required(), "float32 .npy [heads, queries, keys]; queries a multiple of --hop; the last `queries` keys are the new tokens")
      ("out", po::value(&out_path)->required(), "output .npy: [heads, keys, freqs] EMA features, or with --raw [heads, keys, freqs, frames]")
      ("raw", "write raw STFT magnitudes of each key's zero-padded attention series instead of EMA features")
      ("n-fft", po::value(&spectrogram.n_fft)->default_value(32), "STFT window and FFT size (even)")
      ("hop", po::value(&spectrogram.hop)->default_value(16), "STFT hop")
      ("gamma", po::value(&spectrogram.ema_gamma)->default_value(0.99), "EMA coefficient per token");
  po::variables_map vm;
  if (!parse_options("spectrogram", "--attention A.npy --out F.npy [--raw]", options, args, vm)) return 0;
  const auto output_locks = claim_outputs({{"--out", out_path}});
  if (spectrogram.n_fft < 2 || spectrogram.n_fft % 2 != 0) throw UsageError("--n-fft must be even and >= 2, got " + std::to_string(spectrogram.n_fft));
  if (spectrogram.hop < 1 || spectrogram.hop > spectrogram.n_fft) throw UsageError("--hop must be in [1, n_fft], got " + std::to_string(spectrogram.hop));
  if (!(spectrogram.ema_gamma > 0 && spectrogram.ema_gamma < 1)) throw UsageError("--gamma must be in (0, 1)");

  const at::Tensor attention = read_attention_stack(attention_path, spectrogram.hop);  // [H, Q, K]
  const int64_t heads = attention.size(0), queries = attention.size(1);

  const SpectrogramFeaturizer featurizer(spectrogram);
  std::vector<at::Tensor> per_head;
  for (int64_t h = 0; h < heads; ++h) {
    if (vm.count("raw")) {
      // series per key: carry-over zeros, then the attention it received. [K, carry + Q]
      const at::Tensor series = at::constant_pad_nd(attention[h].t(), {spectrogram.carry(), 0}, 0.0).contiguous();
      per_head.push_back(featurizer.magnitudes(series));  // [K, F, frames]
    } else {
      HeadSpectrogramState state;
      per_head.push_back(featurizer.update(attention[h].contiguous(), queries, state));  // [K, F]
    }
  }
  write_npy(out_path, at::stack(per_head).contiguous());
  return 0;
}

}  // namespace namm::app
