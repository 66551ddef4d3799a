// Attention spectrograms with FFTW3 (the featurizer's hot path).
//
// This file is the only one that includes <fftw3.h> (a firewall: FFTW's C API
// and its global planner stay out of every other translation unit).
//
// update() never materialises the [T, F, J] spectrogram: tokens are processed
// in small blocks; for each block the padded attention series are gathered
// from A, cut into windowed frames in an aligned buffer, transformed by one
// "many" r2c plan, and the magnitudes are folded straight into the EMA output.
// Plans are made once per frame count and executed with the new-array
// execute function, which FFTW documents as thread-safe, on per-thread
// buffers; only planning (FFTW's planner is global and not thread-safe) takes
// a process-wide lock.
#include "core/spectrogram.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fftw3.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>
#include <vector>

namespace namm {
namespace {

// tokens per FFTW execute call: big enough to amortise the call, small enough
// that the block's frames and spectra stay in L2.
constexpr int64_t kBlockTokens = 16;
// tokens below which a parallel_for task is not worth splitting further.
constexpr int64_t kMinTokensPerTask = 256;

// FFTW's planner and plan destruction share global state; serialise them.
std::mutex& planner_mutex() {
  static std::mutex mutex;
  return mutex;
}

struct PlanDeleter {
  void operator()(fftwf_plan plan) const {
    std::lock_guard<std::mutex> lock(planner_mutex());
    fftwf_destroy_plan(plan);
  }
};
using PlanPtr = std::unique_ptr<std::remove_pointer_t<fftwf_plan>, PlanDeleter>;

struct FftwFree {
  void operator()(void* p) const { fftwf_free(p); }
};
template <typename T>
using AlignedPtr = std::unique_ptr<T[], FftwFree>;

template <typename T>
AlignedPtr<T> aligned_alloc_n(int64_t n) {
  void* p = fftwf_malloc(sizeof(T) * static_cast<size_t>(std::max<int64_t>(n, 1)));
  TORCH_CHECK(p != nullptr, "fftwf_malloc failed for ", n, " elements");
  return AlignedPtr<T>(static_cast<T*>(p));
}

// |X| of count interleaved complex values: spectra [count, 2] -> mags [count].
// Written with SSE2 (always present on x86-64) because std::sqrt keeps a
// scalar errno path that stops GCC from vectorising the loop.
inline void complex_magnitudes(const float* __restrict spectra, int64_t count,
                               float* __restrict mags) {
  int64_t k = 0;
#if defined(__SSE2__)
  for (; k + 4 <= count; k += 4) {
    const __m128 a = _mm_loadu_ps(spectra + 2 * k);      // re0 im0 re1 im1
    const __m128 b = _mm_loadu_ps(spectra + 2 * k + 4);  // re2 im2 re3 im3
    const __m128 aa = _mm_mul_ps(a, a);
    const __m128 bb = _mm_mul_ps(b, b);
    const __m128 re2 = _mm_shuffle_ps(aa, bb, _MM_SHUFFLE(2, 0, 2, 0));
    const __m128 im2 = _mm_shuffle_ps(aa, bb, _MM_SHUFFLE(3, 1, 3, 1));
    _mm_storeu_ps(mags + k, _mm_sqrt_ps(_mm_add_ps(re2, im2)));
  }
#endif
  for (; k < count; ++k) {
    const float re = spectra[2 * k];
    const float im = spectra[2 * k + 1];
    mags[k] = std::sqrt(re * re + im * im);
  }
}

// acc[f] = sum_{j >= j_begin} w[j] * mags[j, f]; mags: [J, F].
inline void weighted_frame_sum(const float* __restrict mags, const float* __restrict weights,
                               int64_t j_begin, int64_t num_frames, int64_t num_freqs,
                               float* __restrict acc) {
  for (int64_t f = 0; f < num_freqs; ++f) acc[f] = 0.0f;
  for (int64_t j = j_begin; j < num_frames; ++j) {
    const float w = weights[j];
    const float* m = mags + j * num_freqs;
    for (int64_t f = 0; f < num_freqs; ++f) acc[f] += w * m[f];
  }
}

// Copies the block A[0:Q, t0:t0+nb] (row stride T) transposed into
// series[b * L + q] (one row per token), 4x4 tiles at a time.
inline void gather_columns(const float* __restrict a, int64_t T, int64_t Q, int64_t nb,
                           int64_t L, float* __restrict series) {
  int64_t q = 0;
#if defined(__SSE2__)
  const int64_t nb4 = nb - nb % 4;
  for (; q + 4 <= Q; q += 4) {
    const float* r = a + q * T;
    for (int64_t b = 0; b < nb4; b += 4) {
      __m128 r0 = _mm_loadu_ps(r + b);
      __m128 r1 = _mm_loadu_ps(r + T + b);
      __m128 r2 = _mm_loadu_ps(r + 2 * T + b);
      __m128 r3 = _mm_loadu_ps(r + 3 * T + b);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(series + b * L + q, r0);
      _mm_storeu_ps(series + (b + 1) * L + q, r1);
      _mm_storeu_ps(series + (b + 2) * L + q, r2);
      _mm_storeu_ps(series + (b + 3) * L + q, r3);
    }
    for (int64_t b = nb4; b < nb; ++b) {
      for (int64_t k = 0; k < 4; ++k) series[b * L + q + k] = r[k * T + b];
    }
  }
#endif
  for (; q < Q; ++q) {
    for (int64_t b = 0; b < nb; ++b) series[b * L + q] = a[q * T + b];
  }
}

}  // namespace

struct SpectrogramFeaturizer::Plans {
  int64_t n_fft = 0;
  int64_t num_freqs = 0;
  std::vector<float> window;  // [n_fft] periodic Hann

  std::mutex mutex;                      // guards plans
  std::map<int64_t, PlanPtr> plans;      // howmany frames -> plan

  // A plan for howmany contiguous frames [howmany, n_fft] -> [howmany, F] complex.
  fftwf_plan get(int64_t howmany) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = plans.find(howmany);
    if (it != plans.end()) return it->second.get();
    // FFTW_ESTIMATE, not MEASURE: for these size-32 batches both ran at the
    // same speed (bench_featurizer, 16x4096 tokens: 103 vs 105 ms CPU), and an
    // estimated plan is the same in every run (bit-reproducible features) and
    // costs microseconds instead of tens of milliseconds to make. Planned on
    // scratch arrays with the same (fftwf_malloc) alignment as the executes.
    AlignedPtr<float> in = aligned_alloc_n<float>(howmany * n_fft);
    AlignedPtr<fftwf_complex> out = aligned_alloc_n<fftwf_complex>(howmany * num_freqs);
    const int n = static_cast<int>(n_fft);
    fftwf_plan plan;
    {
      std::lock_guard<std::mutex> planner_lock(planner_mutex());
      plan = fftwf_plan_many_dft_r2c(1, &n, static_cast<int>(howmany), in.get(), nullptr, 1,
                                     n, out.get(), nullptr, 1, static_cast<int>(num_freqs),
                                     FFTW_ESTIMATE);
    }
    TORCH_CHECK(plan != nullptr, "FFTW could not plan ", howmany, " r2c transforms of size ",
                n_fft);
    plans.emplace(howmany, PlanPtr(plan));
    return plan;
  }
};

void HeadSpectrogramState::keep_rows(const at::Tensor& keep) {
  if (!carry.defined() && !ema.defined()) return;
  TORCH_CHECK(keep.dim() == 1, "HeadSpectrogramState::keep_rows: keep must be [K], got ",
              keep.sizes());
  const at::Tensor index = keep.to(at::kLong);
  if (carry.defined()) carry = carry.index_select(0, index);
  if (ema.defined()) ema = ema.index_select(0, index);
}

void HeadSpectrogramState::clear() {
  carry = at::Tensor();
  ema = at::Tensor();
}

SpectrogramFeaturizer::SpectrogramFeaturizer(SpectrogramOptions options)
    : options_(options), plans_(std::make_unique<Plans>()) {
  TORCH_CHECK(options_.n_fft >= 2 && options_.n_fft % 2 == 0,
              "SpectrogramOptions: n_fft must be even and >= 2, got ", options_.n_fft);
  TORCH_CHECK(options_.hop >= 1 && options_.hop <= options_.n_fft,
              "SpectrogramOptions: hop must be in [1, n_fft=", options_.n_fft, "], got ",
              options_.hop);
  TORCH_CHECK(options_.ema_gamma > 0 && options_.ema_gamma <= 1,
              "SpectrogramOptions: ema_gamma must be in (0, 1], got ", options_.ema_gamma);
  plans_->n_fft = options_.n_fft;
  plans_->num_freqs = options_.num_freqs();
  plans_->window.resize(options_.n_fft);
  // periodic Hann (torch.hann_window(n, periodic=True)).
  const double pi = 3.14159265358979323846;
  for (int64_t n = 0; n < options_.n_fft; ++n) {
    plans_->window[n] = static_cast<float>(
        0.5 - 0.5 * std::cos(2.0 * pi * static_cast<double>(n) / options_.n_fft));
  }
}

SpectrogramFeaturizer::~SpectrogramFeaturizer() = default;

at::Tensor SpectrogramFeaturizer::magnitudes(const at::Tensor& series) const {
  TORCH_CHECK(series.dim() == 2, "magnitudes: series must be [N, L], got ", series.sizes());
  const int64_t n_fft = options_.n_fft;
  const int64_t hop = options_.hop;
  const int64_t F = options_.num_freqs();
  const int64_t N = series.size(0);
  const int64_t L = series.size(1);
  TORCH_CHECK(L >= n_fft, "magnitudes: series length ", L, " is shorter than n_fft ", n_fft);
  const int64_t J = (L - n_fft) / hop + 1;
  const at::Tensor x = series.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({N, F, J}, at::kFloat);
  if (N == 0) return out;

  fftwf_plan plan = plans_->get(J);
  const float* window = plans_->window.data();
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();

  at::parallel_for(0, N, 64, [&](int64_t begin, int64_t end) {
    AlignedPtr<float> frames = aligned_alloc_n<float>(J * n_fft);
    AlignedPtr<fftwf_complex> spectra = aligned_alloc_n<fftwf_complex>(J * F);
    AlignedPtr<float> mags = aligned_alloc_n<float>(J * F);
    for (int64_t i = begin; i < end; ++i) {
      const float* s = src + i * L;
      for (int64_t j = 0; j < J; ++j) {
        for (int64_t n = 0; n < n_fft; ++n) frames[j * n_fft + n] = s[j * hop + n] * window[n];
      }
      fftwf_execute_dft_r2c(plan, frames.get(), spectra.get());
      complex_magnitudes(reinterpret_cast<const float*>(spectra.get()), J * F, mags.get());
      float* o = dst + i * F * J;  // [F, J] for token i, from [J, F]
      for (int64_t j = 0; j < J; ++j) {
        for (int64_t f = 0; f < F; ++f) o[f * J + j] = mags[j * F + f];
      }
    }
  });
  return out;
}

at::Tensor SpectrogramFeaturizer::update(const at::Tensor& attention, int64_t num_new_tokens,
                                         HeadSpectrogramState& state) const {
  TORCH_CHECK(attention.dim() == 2, "SpectrogramFeaturizer::update: attention must be [Q, T], got ",
              attention.sizes());
  const int64_t n_fft = options_.n_fft;
  const int64_t hop = options_.hop;
  const int64_t C = options_.carry();
  const int64_t F = options_.num_freqs();
  const int64_t Q = attention.size(0);
  const int64_t T = attention.size(1);
  TORCH_CHECK(Q > 0 && Q % hop == 0, "SpectrogramFeaturizer::update: the number of queries Q=", Q,
              " must be a positive multiple of hop=", hop);
  TORCH_CHECK(num_new_tokens >= 0 && num_new_tokens <= T,
              "SpectrogramFeaturizer::update: num_new_tokens=", num_new_tokens,
              " must be in [0, T=", T, "]");
  const int64_t num_old = T - num_new_tokens;
  const bool has_state = state.ema.defined();
  if (has_state) {
    TORCH_CHECK(state.ema.dim() == 2 && state.ema.size(0) == num_old && state.ema.size(1) == F,
                "SpectrogramFeaturizer::update: state.ema is ", state.ema.sizes(), ", expected [",
                num_old, ", ", F, "] (T=", T, " minus num_new_tokens=", num_new_tokens, ")");
    TORCH_CHECK(state.carry.defined() && state.carry.dim() == 2 &&
                    state.carry.size(0) == num_old && state.carry.size(1) == C,
                "SpectrogramFeaturizer::update: state.carry is ",
                state.carry.defined() ? state.carry.sizes() : at::IntArrayRef{}, ", expected [",
                num_old, ", ", C, "]");
  }

  const int64_t L = C + Q;                      // padded series length
  const int64_t J = (L - n_fft) / hop + 1;      // frames this update (= Q / hop)
  const at::Tensor a = attention.to(at::kFloat).contiguous();
  const at::Tensor old_ema = has_state ? state.ema.to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor old_carry = has_state ? state.carry.to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor out = at::empty({T, F}, at::kFloat);          // [T, F]
  at::Tensor new_carry = at::empty({T, C}, at::kFloat);    // [T, C]

  // frame j (0 oldest) weight (1-g) g^(J-1-j), g = gamma^hop.
  const double g = std::pow(options_.ema_gamma, static_cast<double>(hop));
  std::vector<float> weights(J);
  for (int64_t j = 0; j < J; ++j) {
    weights[j] = static_cast<float>((1.0 - g) * std::pow(g, static_cast<double>(J - 1 - j)));
  }
  const float decay =
      static_cast<float>(std::pow(options_.ema_gamma, static_cast<double>(num_new_tokens)));

  fftwf_plan block_plan = plans_->get(kBlockTokens * J);
  fftwf_plan token_plan = plans_->get(J);
  const float* window = plans_->window.data();
  const float* a_ptr = a.data_ptr<float>();
  const float* old_ema_ptr = has_state ? old_ema.data_ptr<float>() : nullptr;
  const float* old_carry_ptr = has_state ? old_carry.data_ptr<float>() : nullptr;
  float* out_ptr = out.data_ptr<float>();
  float* carry_ptr = new_carry.data_ptr<float>();
  const float* w = weights.data();

  const int64_t num_blocks = (T + kBlockTokens - 1) / kBlockTokens;
  const int64_t grain = std::max<int64_t>(1, kMinTokensPerTask / kBlockTokens);
  at::parallel_for(0, num_blocks, grain, [&](int64_t block_begin, int64_t block_end) {
    AlignedPtr<float> series = aligned_alloc_n<float>(kBlockTokens * L);
    AlignedPtr<float> frames = aligned_alloc_n<float>(kBlockTokens * J * n_fft);
    AlignedPtr<fftwf_complex> spectra = aligned_alloc_n<fftwf_complex>(kBlockTokens * J * F);
    AlignedPtr<float> mags = aligned_alloc_n<float>(kBlockTokens * J * F);
    for (int64_t block = block_begin; block < block_end; ++block) {
      const int64_t t0 = block * kBlockTokens;
      const int64_t nb = std::min(kBlockTokens, T - t0);
      // padded series [nb, L]: carry (or zeros) then the token's column of A.
      for (int64_t b = 0; b < nb; ++b) {
        float* s = series.get() + b * L;
        const int64_t t = t0 + b;
        if (old_carry_ptr != nullptr && t < num_old) {
          std::memcpy(s, old_carry_ptr + t * C, sizeof(float) * C);
        } else {
          std::fill(s, s + C, 0.0f);
        }
      }
      gather_columns(a_ptr + t0, T, Q, nb, L, series.get() + C);
      // a new token ignores frames from before it existed: new-index i
      // keeps frames j >= i / hop (the reference's strided causal mask).
      // Those frames are not even transformed: in an update with as many
      // new tokens as old, they are a quarter of all frames.
      int64_t first_frame[kBlockTokens];
      bool whole_block = nb == kBlockTokens;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t t = t0 + b;
        first_frame[b] = t < num_old ? 0 : std::min(J, (t - num_old) / hop);
        whole_block = whole_block && first_frame[b] == 0;
      }
      // windowed frames [nb * J, n_fft]; token b's frames j >= first_frame[b].
      for (int64_t b = 0; b < nb; ++b) {
        const float* s = series.get() + b * L;
        float* fr = frames.get() + b * J * n_fft;
        for (int64_t j = first_frame[b]; j < J; ++j) {
          const float* sj = s + j * hop;
          float* fj = fr + j * n_fft;
          for (int64_t n = 0; n < n_fft; ++n) fj[n] = sj[n] * window[n];
        }
      }
      if (whole_block) {
        fftwf_execute_dft_r2c(block_plan, frames.get(), spectra.get());
        complex_magnitudes(reinterpret_cast<const float*>(spectra.get()), nb * J * F, mags.get());
      } else {
        for (int64_t b = 0; b < nb; ++b) {
          const int64_t count = J - first_frame[b];
          if (count == 0) continue;
          // the spectra of frames [first_frame, J) land at the start of the
          // token's slot: an offset of first_frame * F complex values would
          // break the 16-byte alignment the plans were made with.
          fftwf_plan plan = count == J ? token_plan : plans_->get(count);
          fftwf_execute_dft_r2c(plan, frames.get() + (b * J + first_frame[b]) * n_fft,
                                spectra.get() + b * J * F);
          complex_magnitudes(reinterpret_cast<const float*>(spectra.get() + b * J * F),
                             count * F, mags.get() + b * J * F);
        }
      }
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t t = t0 + b;
        const int64_t j_begin = first_frame[b];
        float* o = out_ptr + t * F;
        // mags of token b hold frames [j_begin, J) from its slot's start.
        weighted_frame_sum(mags.get() + b * J * F, w + j_begin, 0, J - j_begin, F, o);
        if (old_ema_ptr != nullptr && t < num_old) {
          const float* e = old_ema_ptr + t * F;
          for (int64_t f = 0; f < F; ++f) o[f] += decay * e[f];
        }
        // the last C values of the padded series carry over to the next update.
        std::memcpy(carry_ptr + t * C, series.get() + b * L + (L - C), sizeof(float) * C);
      }
    }
  });

  state.carry = new_carry;
  state.ema = out;
  return out;
}

}  // namespace namm
