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

/// Everything that shapes a NAMM apart from its learned numbers.
struct NammConfig {
  SpectrogramOptions spectrogram;
  int64_t recency_dim = 8;          ///< even; 0 disables the recency features.
  double recency_max_freq = 50000.0;
  BamOptions bam;                   ///< bam.input_dim must equal recency_dim + spectrogram.num_freqs().
  SelectionOptions selection;
  int64_t delay = 512;              ///< tokens between updates (a multiple of spectrogram.hop).

  /// Throws std::invalid_argument with the offending values if inconsistent.
  void validate() const;
  /// JSON text of all fields (stored in checkpoints).
  std::string to_json() const;
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
  /// the file and the problem (bad header, missing tensor, wrong shape/dtype).
  static NammModel load(const std::string& path);
  /// Saves as safetensors atomically: tensors "params", "norm_mean",
  /// "norm_var"; metadata "format" = "namm", "config", "norm_count",
  /// "norm_frozen", "provenance".
  void save(const std::string& path) const;
};

}  // namespace namm
