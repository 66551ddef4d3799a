// memory_controller: see memory_controller.h
#include "adapters/memory_controller.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace namm {

MemoryController::MemoryController(std::unique_ptr<MemoryPolicy> policy, int num_layers, ControllerOptions options)
    : policy_(std::move(policy)), num_layers_(num_layers), options_(options) {
  if (!policy_) throw std::invalid_argument("MemoryController: policy is null");
  if (num_layers_ < 1) {
    throw std::invalid_argument("MemoryController: num_layers must be >= 1, got " + std::to_string(num_layers_));
  }
  if (options_.delay < 1) {
    throw std::invalid_argument("MemoryController: delay must be >= 1, got " + std::to_string(options_.delay));
  }
  recorders_.resize(static_cast<size_t>(num_layers_));
  for (AttentionRecorder& recorder : recorders_) recorder_pointers_.push_back(&recorder);
  kept_sum_.assign(static_cast<size_t>(num_layers_), 0.0);
  seen_sum_.assign(static_cast<size_t>(num_layers_), 0.0);
}

AttentionRecorder* MemoryController::recorder(int layer) {
  if (layer < 0 || layer >= num_layers_) {
    throw std::out_of_range("MemoryController::recorder: layer " + std::to_string(layer) + " out of range [0, " +
                            std::to_string(num_layers_) + ")");
  }
  if (!policy_->needs().attention) return nullptr;
  return &recorders_[static_cast<size_t>(layer)];
}

const std::vector<AttentionRecorder*>& MemoryController::recorders() const {
  static const std::vector<AttentionRecorder*> kNone;
  return policy_->needs().attention ? recorder_pointers_ : kNone;
}

std::vector<LayerKvCache*> MemoryController::pointers(std::vector<LayerKvCache>& caches) {
  std::vector<LayerKvCache*> out;
  out.reserve(caches.size());
  for (LayerKvCache& cache : caches) out.push_back(&cache);
  return out;
}

bool MemoryController::after_tokens(int64_t n, const std::vector<LayerKvCache*>& caches) {
  if (n < 0 || n > tokens_until_update()) {
    throw std::invalid_argument("MemoryController::after_tokens: " + std::to_string(n) +
                                " tokens fed but only " + std::to_string(tokens_until_update()) +
                                " allowed before the next update (delay " + std::to_string(options_.delay) + ")");
  }
  buffered_ += n;
  tokens_seen_ += n;
  if (buffered_ < options_.delay) return false;
  run_update(caches);
  return true;
}

bool MemoryController::after_tokens(int64_t n, std::vector<LayerKvCache>& caches) {
  return after_tokens(n, pointers(caches));
}

bool MemoryController::flush(const std::vector<LayerKvCache*>& caches) {
  if (buffered_ == 0) return false;
  run_update(caches);
  return true;
}

bool MemoryController::flush(std::vector<LayerKvCache>& caches) { return flush(pointers(caches)); }

void MemoryController::run_update(const std::vector<LayerKvCache*>& caches) {
  if (static_cast<int>(caches.size()) != num_layers_) {
    throw std::invalid_argument("MemoryController: " + std::to_string(caches.size()) + " caches for " +
                                std::to_string(num_layers_) + " layers");
  }
  const PolicyNeeds needs = policy_->needs();
  const int64_t queries = buffered_;
  for (int layer = 0; layer < num_layers_; ++layer) {
    LayerKvCache& cache = *caches[static_cast<size_t>(layer)];
    AttentionRecorder& rec = recorders_[static_cast<size_t>(layer)];
    const int64_t heads = cache.num_heads();
    if (needs.attention) {
      // a host that skipped recording would hand the policy rows that do not exist
      TORCH_CHECK(rec.num_heads() == heads && rec.num_rows() == queries, "MemoryController: layer ", layer,
                  " recorded ", rec.num_rows(), " attention rows over ", rec.num_heads(), " heads, expected ",
                  queries, " over ", heads, " (pass controller.recorder(layer) to prunable_attention)");
    }

    LayerObservation observation;  // heads: [Hkv]
    observation.layer = layer;
    observation.num_layers = num_layers_;
    observation.num_new_tokens = queries;
    observation.tokens_seen = tokens_seen_;
    observation.heads.resize(static_cast<size_t>(heads));
    for (int64_t h = 0; h < heads; ++h) {
      HeadObservation& head = observation.heads[static_cast<size_t>(h)];
      head.positions = cache.positions(h);  // [T]
      if (needs.attention) head.attention = rec.rows(h, cache).to(options_.policy_device);  // [Q, T]
      if (needs.keys) head.keys = cache.keys(h).to(options_.policy_device, at::kFloat);   // [T, D]
    }

    const LayerDecision decision = policy_->update(observation);
    TORCH_CHECK(static_cast<int64_t>(decision.heads.size()) == heads, "MemoryController: policy '",
                policy_->name(), "' decided for ", decision.heads.size(), " heads of layer ", layer, ", which has ",
                heads);
    std::vector<at::Tensor> keep(static_cast<size_t>(heads));
    std::vector<int64_t> before(static_cast<size_t>(heads));
    for (int64_t h = 0; h < heads; ++h) {
      const HeadDecision& head = decision.heads[static_cast<size_t>(h)];
      TORCH_CHECK(head.keep.defined(), "MemoryController: policy '", policy_->name(), "' gave no keep indices for layer ",
                  layer, " head ", h);
      keep[static_cast<size_t>(h)] = head.keep;
      before[static_cast<size_t>(h)] = cache.length(h);
    }
    cache.keep_all_heads(keep);

    for (int64_t h = 0; h < heads; ++h) {
      const int64_t after = cache.length(h);
      kept_sum_[static_cast<size_t>(layer)] += static_cast<double>(after);
      seen_sum_[static_cast<size_t>(layer)] += static_cast<double>(tokens_seen_);
      if (!options_.record_statistics) continue;
      UpdateHeadStats stats;
      stats.update = num_updates_;
      stats.layer = layer;
      stats.head = static_cast<int>(h);
      stats.tokens_seen = tokens_seen_;
      stats.num_new_tokens = queries;
      stats.tokens_before = before[static_cast<size_t>(h)];
      stats.tokens_after = after;
      const std::vector<int64_t>& positions = cache.position_list(h);
      if (!positions.empty()) {
        const int64_t newest = cache.newest_position();
        double age_sum = 0.0;
        for (int64_t position : positions) age_sum += static_cast<double>(newest - position);
        stats.mean_age = age_sum / static_cast<double>(positions.size());
        stats.max_age = static_cast<double>(newest - positions.front());  // ascending: the first is the oldest
      }
      const at::Tensor& scores = decision.heads[static_cast<size_t>(h)].scores;
      stats.has_scores = scores.defined();
      if (scores.defined() && scores.numel() > 0) {
        const at::Tensor s = scores.to(at::kCPU, at::kDouble);
        stats.score_mean = s.mean().item<double>();
        stats.score_nonneg_fraction = (s >= 0).to(at::kDouble).mean().item<double>();
      } else {
        stats.score_mean = std::numeric_limits<double>::quiet_NaN();
        stats.score_nonneg_fraction = std::numeric_limits<double>::quiet_NaN();
      }
      statistics_.push_back(stats);
    }
    rec.clear();
  }
  buffered_ = 0;
  ++num_updates_;
}

void MemoryController::reset() {
  policy_->reset();
  for (AttentionRecorder& rec : recorders_) rec.clear();
  buffered_ = 0;
  tokens_seen_ = 0;
  num_updates_ = 0;
  statistics_.clear();
  std::fill(kept_sum_.begin(), kept_sum_.end(), 0.0);
  std::fill(seen_sum_.begin(), seen_sum_.end(), 0.0);
}

double MemoryController::mean_retained_fraction() const {
  double kept = 0.0, seen = 0.0;
  for (int layer = 0; layer < num_layers_; ++layer) {
    kept += kept_sum_[static_cast<size_t>(layer)];
    seen += seen_sum_[static_cast<size_t>(layer)];
  }
  return seen > 0 ? kept / seen : 1.0;
}

double MemoryController::mean_retained_fraction(int layer) const {
  if (layer < 0 || layer >= num_layers_) {
    throw std::out_of_range("MemoryController::mean_retained_fraction: layer " + std::to_string(layer) +
                            " out of range [0, " + std::to_string(num_layers_) + ")");
  }
  const double seen = seen_sum_[static_cast<size_t>(layer)];
  return seen > 0 ? kept_sum_[static_cast<size_t>(layer)] / seen : 1.0;
}

}  // namespace namm
