// A trained NAMM: its hyperparameters, its flat parameter vector, its frozen
// feature statistics and the record of how it was made. Immutable once
// loaded and shared by every sequence's NammPolicy.
#pragma once

#include "core/bam.h"
#include "core/feature_norm.h"
#include "core/selection.h"
#include "core/spectrogram.h"

#include <ATen/core/Tensor.h>

#include <string>

namespace namm {

/// How the spectrogram features are put on a common scale before scoring.
enum class FeatureScaling {
  /// The published method: standardised with running statistics pooled over
  /// the evolution host's layers, heads and tokens, frozen after generation 1
  /// and stored with the model. The scale is the evolution host's.
  kFrozenStats,
  /// Each head, at each update, standardises every feature over its own
  /// cached tokens (mean 0, variance 1 across the tokens). A token is scored
  /// by how its attention compares with its neighbours', whatever the host's
  /// attention scale: multiplying a head's attention by a constant changes
  /// nothing. For transfer to hosts whose attention is spread differently
  /// (a Decision Transformer's is 3-5 times flatter than the language host's).
  kPerHead,
};

/// "frozen_stats", "per_head".
const char* to_string(FeatureScaling scaling);
/// Parses to_string's names (and "frozen-stats", "per-head"); throws std::invalid_argument.
FeatureScaling parse_feature_scaling(const std::string& text);

/// Everything that shapes a NAMM apart from its learned numbers.
struct NammConfig {
  SpectrogramOptions spectrogram;
  int64_t recency_dim = 8;          ///< even; 0 disables the recency features.
  double recency_max_freq = 50000.0;
  BamOptions bam;                   ///< bam.input_dim must equal recency_dim + spectrogram.num_freqs().
  SelectionOptions selection;
  int64_t delay = 512;              ///< tokens between updates (a multiple of spectrogram.hop).
  FeatureScaling feature_scaling = FeatureScaling::kFrozenStats;

  /// Throws std::invalid_argument with the offending values if inconsistent:
  /// n_fft even > hop > 0, 0 < ema_gamma < 1, recency_dim even >= 0,
  /// recency_max_freq > 0, bam.input_dim == recency_dim + num_freqs,
  /// hidden_dim > 0, cap >= 0, delay a positive multiple of hop.
  void validate() const;
  /// JSON text of all fields (stored in checkpoints), nested like the structs:
  /// {"spectrogram": {"n_fft", "hop", "ema_gamma"}, "recency_dim",
  /// "recency_max_freq", "bam": {"input_dim", "hidden_dim"},
  /// "selection": {"cap", "layout"}, "delay", "feature_scaling"}.
  std::string to_json() const;
  /// Parses to_json's text and validates it; every field is required (but
  /// "feature_scaling", absent from models saved before it existed, which
  /// means frozen_stats) and unknown fields are rejected. Throws
  /// std::invalid_argument naming the field.
  static NammConfig from_json(const std::string& text);
};

/// The learned NAMM.
struct NammModel {
  NammConfig config;
  at::Tensor params;             ///< [config.bam.param_count()] float32.
  FeatureNormalizer normalizer;  ///< over the spectrogram features.
  std::string provenance_json = "{}";  ///< how it was made: command, seed, commit, tasks, metrics.

  /// A model whose parameters are all zero: it keeps every token.
  static NammModel zeros(const NammConfig& config);

  /// Loads a checkpoint written by save(); throws std::runtime_error naming
  /// the file and the problem (not safetensors, not a namm file, other
  /// format_version, invalid config, missing tensor, wrong shape/dtype,
  /// NaN/Inf values, negative variances, provenance not JSON).
  static NammModel load(const std::string& path);
  /// Saves as safetensors atomically: tensors "params" [P] f32, "norm_mean"
  /// [F] f64, "norm_var" [F] f64; metadata "format" = "namm",
  /// "format_version" = "1", "config", "norm_count", "norm_frozen",
  /// "norm_eps", "provenance". Throws std::invalid_argument naming path if the
  /// model is inconsistent, or if the normalizer holds statistics but is not
  /// frozen (FeatureNormalizer::set always freezes, so load could not restore it).
  void save(const std::string& path) const;
};

}  // namespace namm
