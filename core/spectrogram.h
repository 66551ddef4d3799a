// Attention spectrogram features of cached tokens (the NAMM's input).
//
// For every cached token, the attention it received from the queries of one
// update is a time series. Left-padded with the last n_fft-hop values kept from the
// previous update, it is cut into frames (n_fft 32, hop 16, periodic Hann,
// no centering), transformed with FFTW3 real-to-complex plans and reduced to
// one-sided magnitudes [F = n_fft/2+1]. An exponential moving average over
// frames, masked for frames from before the token existed, folds them into
// one F-vector per token that persists across updates.
//
// FFTW's headers stay inside spectrogram.cpp; plans are created once per
// frame count and reused.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

namespace namm {

/// STFT and EMA settings; the defaults are the published method's.
struct SpectrogramOptions {
  int64_t n_fft = 32;     ///< window length and FFT size (even).
  int64_t hop = 16;       ///< stride between frames; n_fft - hop values carry over between updates.
  double ema_gamma = 0.99;  ///< EMA coefficient per token; per frame it is gamma^hop.

  int64_t num_freqs() const { return n_fft / 2 + 1; }
  int64_t carry() const { return n_fft - hop; }
};

/// Per-sequence feature state of one KV head of one layer.
struct HeadSpectrogramState {
  at::Tensor carry;  ///< [T, n_fft-hop] float32 last attention values each cached token received; undefined before the first update.
  at::Tensor ema;    ///< [T, F] float32 EMA of spectrogram magnitudes; undefined before the first update.

  /// Keeps the rows of the kept tokens (keep: [K] int64 ascending).
  void keep_rows(const at::Tensor& keep);
  void clear();
};

/// Computes attention spectrograms with FFTW3. Thread-safe: plans are created
/// once per frame count under a lock and executed on per-call buffers. Cheap
/// to create (FFTW's wisdom makes re-planning a known size fast).
class SpectrogramFeaturizer {
 public:
  explicit SpectrogramFeaturizer(SpectrogramOptions options = {});
  ~SpectrogramFeaturizer();
  SpectrogramFeaturizer(const SpectrogramFeaturizer&) = delete;
  SpectrogramFeaturizer& operator=(const SpectrogramFeaturizer&) = delete;

  const SpectrogramOptions& options() const { return options_; }

  /// Raw STFT magnitudes of series: [N, L] float32 -> [N, F, (L - n_fft)/hop + 1].
  at::Tensor magnitudes(const at::Tensor& series) const;

  /// One update for one head: attention [Q, T] (Q a multiple of hop; the last
  /// num_new_tokens of T are new since the previous update), state from the
  /// previous update (rows for the first T - num_new_tokens tokens, or empty:
  /// then every token starts from zero carry and zero EMA).
  /// Old tokens: ema * gamma^num_new_tokens + sum_j (1-g) g^(J-1-j) |X_j|, g = gamma^hop.
  /// New token at new-index i: only frames j >= i / hop (it did not exist before).
  /// Returns the new EMA features [T, F] (shared with state.ema) and sets
  /// state.carry [T, n_fft-hop] to the last values of each padded series.
  at::Tensor update(const at::Tensor& attention, int64_t num_new_tokens,
                    HeadSpectrogramState& state) const;

 private:
  SpectrogramOptions options_;
  struct Plans;
  std::unique_ptr<Plans> plans_;
};

}  // namespace namm
