// The hand-designed memory policies NAMMs are compared against, all behind
// the MemoryPolicy seam and all given the same kind of budget.
#pragma once

#include "core/memory_policy.h"

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace namm {

/// Keeps everything.
class FullCachePolicy : public MemoryPolicy {
 public:
  std::string name() const override { return "full"; }
  PolicyNeeds needs() const override { return {}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override {}
};

/// Keeps the budget's most recent tokens.
class RecencyPolicy : public MemoryPolicy {
 public:
  explicit RecencyPolicy(Budget budget) : budget_(budget) {}
  std::string name() const override { return "recency"; }
  PolicyNeeds needs() const override { return {}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override {}
 private:
  Budget budget_;
};

/// StreamingLLM: the first `sinks` tokens of the sequence plus a recent window.
class StreamingLlmPolicy : public MemoryPolicy {
 public:
  StreamingLlmPolicy(Budget budget, int64_t sinks = 4) : budget_(budget), sinks_(sinks) {}
  std::string name() const override { return "streaming"; }
  PolicyNeeds needs() const override { return {}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override {}
 private:
  Budget budget_;
  int64_t sinks_;
};

/// H2O: heavy hitters by attention accumulated over every query so far, plus
/// a window of the most recent tokens (recent_share of the budget).
class H2oPolicy : public MemoryPolicy {
 public:
  H2oPolicy(Budget budget, double recent_share = 0.5) : budget_(budget), recent_share_(recent_share) {}
  std::string name() const override { return "h2o"; }
  PolicyNeeds needs() const override { return {true, false}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override { accumulated_.clear(); }
 private:
  Budget budget_;
  double recent_share_;
  std::map<int, std::vector<at::Tensor>> accumulated_;  // layer -> head -> [T]
};

/// L2 key norm: keeps the keys with the LOWEST L2 norm (plus the newest token).
class L2NormPolicy : public MemoryPolicy {
 public:
  explicit L2NormPolicy(Budget budget) : budget_(budget) {}
  std::string name() const override { return "l2"; }
  PolicyNeeds needs() const override { return {false, true}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override {}
 private:
  Budget budget_;
};

/// TOVA: keeps the tokens the LAST query attends to most, averaged over the
/// heads when they hold the same tokens (else per head).
class TovaPolicy : public MemoryPolicy {
 public:
  explicit TovaPolicy(Budget budget) : budget_(budget) {}
  std::string name() const override { return "tova"; }
  PolicyNeeds needs() const override { return {true, false}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override {}
 private:
  Budget budget_;
};

/// A uniformly random subset of the budget (plus the newest token); seeded.
class RandomPolicy : public MemoryPolicy {
 public:
  RandomPolicy(Budget budget, uint64_t seed) : budget_(budget), seed_(seed), draws_(0) {}
  std::string name() const override { return "random"; }
  PolicyNeeds needs() const override { return {}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override { draws_ = 0; }
 private:
  Budget budget_;
  uint64_t seed_;
  uint64_t draws_;
};

}  // namespace namm
