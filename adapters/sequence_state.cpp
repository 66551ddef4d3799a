// sequence_state: see sequence_state.h
#include "adapters/sequence_state.h"

#include <stdexcept>
#include <string>

namespace namm {

SequenceState SequenceState::with_layers(int64_t num_layers, const KvCacheOptions& options) {
  if (num_layers < 0) throw std::invalid_argument("SequenceState: num_layers must be >= 0, got " + std::to_string(num_layers));
  SequenceState state;
  state.caches.reserve(static_cast<size_t>(num_layers));
  for (int64_t l = 0; l < num_layers; ++l) state.caches.emplace_back(options);
  return state;
}

int64_t SequenceState::bytes() const {
  int64_t total = 0;
  for (const LayerKvCache& cache : caches) total += cache.bytes();
  return total;
}

int64_t SequenceState::used_bytes() const {
  int64_t total = 0;
  for (const LayerKvCache& cache : caches) total += cache.used_bytes();
  return total;
}

double SequenceState::mean_cached_tokens(int64_t layer) const {
  if (layer < 0 || layer >= num_layers()) {
    throw std::out_of_range("SequenceState::mean_cached_tokens: layer " + std::to_string(layer) +
                            " out of range [0, " + std::to_string(caches.size()) + ")");
  }
  const LayerKvCache& cache = caches[static_cast<size_t>(layer)];
  double total = 0.0;
  for (int64_t h = 0; h < cache.num_heads(); ++h) total += static_cast<double>(cache.length(h));
  return total / static_cast<double>(cache.num_heads());
}

double SequenceState::mean_cached_tokens() const {
  if (caches.empty()) return 0.0;
  double total = 0.0;
  for (int64_t l = 0; l < num_layers(); ++l) total += mean_cached_tokens(l);
  return total / static_cast<double>(caches.size());
}

std::vector<double> SequenceState::cached_tokens_per_layer() const {
  std::vector<double> tokens;
  tokens.reserve(caches.size());
  for (int64_t l = 0; l < num_layers(); ++l) tokens.push_back(mean_cached_tokens(l));
  return tokens;
}

void SequenceState::clear() {
  for (LayerKvCache& cache : caches) cache.clear();
  next_position = 0;
}

}  // namespace namm
