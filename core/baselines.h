// The hand-designed memory policies NAMMs are compared against, all behind
// the MemoryPolicy seam and all given the same kind of budget.
//
// Every budgeted policy resolves its budget against observation.tokens_seen
// to B tokens per head; a head holding T <= B tokens keeps them all, one
// holding more keeps exactly B. Decisions carry the policy's score per token
// where one exists (see each class), else an undefined tensor. Recency, H2O,
// L2 and TOVA are scorers (core/scorer_policy.h: one shared selection, ties
// to the newer token); StreamingLLM and random are rules of their own.
#pragma once

#include "core/memory_policy.h"
#include "core/scorer_policy.h"

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace namm {

/// Keeps everything; scores undefined.
class FullCachePolicy : public MemoryPolicy {
 public:
  std::string name() const override { return "full"; }
  PolicyNeeds needs() const override { return {}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override {}
};

/// Keeps the last B cached tokens of each head; scores: [T] the positions.
class RecencyPolicy : public ScorerPolicy {
 public:
  explicit RecencyPolicy(Budget budget) : ScorerPolicy(budget) {}
  std::string name() const override { return "recency"; }
  PolicyNeeds needs() const override { return {}; }
  void reset() override {}

 protected:
  std::vector<at::Tensor> score_layer(const LayerObservation& observation) override;
};

/// StreamingLLM: the first `sinks` tokens of the sequence (positions < sinks,
/// while still cached) plus the most recent B - (sinks kept) tokens. When B is
/// too small for all sinks and the newest token, the newest token wins.
/// scores: [T] the positions, sinks raised above the newest position.
class StreamingLlmPolicy : public MemoryPolicy {
 public:
  /// Throws std::invalid_argument when sinks < 0.
  StreamingLlmPolicy(Budget budget, int64_t sinks = 4);
  std::string name() const override { return "streaming"; }
  PolicyNeeds needs() const override { return {}; }
  LayerDecision update(const LayerObservation& observation) override;
  void reset() override {}
 private:
  Budget budget_;
  int64_t sinks_;
};

/// H2O: heavy hitters by attention accumulated (plain sum) over every query so
/// far, plus a window of the round(recent_share * B) most recent tokens (at
/// least 1, so the newest token stays). scores: [T] the accumulated attention.
class H2oPolicy : public ScorerPolicy {
 public:
  /// Throws std::invalid_argument unless 0 <= recent_share <= 1.
  H2oPolicy(Budget budget, double recent_share = 0.5);
  std::string name() const override { return "h2o"; }
  PolicyNeeds needs() const override { return {true, false}; }
  void reset() override { accumulated_.clear(); }

  /// The running sums of one head after the last update: [T_kept] float32,
  /// aligned with the tokens that head kept; undefined before any update.
  at::Tensor accumulated(int layer, int head) const;

 protected:
  std::vector<at::Tensor> score_layer(const LayerObservation& observation) override;
  int64_t protected_recent(const LayerObservation& observation) const override;
  void kept(const LayerObservation& observation, const std::vector<at::Tensor>& keep) override;

 private:
  double recent_share_;
  std::map<int, std::vector<at::Tensor>> accumulated_;  // layer -> head -> [T] aligned with the cache
  std::vector<at::Tensor> totals_;                      // this update's sums per head, until kept()
};

/// L2 key norm: keeps the B - 1 keys with the LOWEST L2 norm plus the newest
/// token. scores: [T] minus the key norms.
class L2NormPolicy : public ScorerPolicy {
 public:
  explicit L2NormPolicy(Budget budget) : ScorerPolicy(budget) {}
  std::string name() const override { return "l2"; }
  PolicyNeeds needs() const override { return {false, true}; }
  void reset() override {}

 protected:
  std::vector<at::Tensor> score_layer(const LayerObservation& observation) override;
};

/// TOVA: keeps the B tokens the LAST query attends to most (no token is
/// protected). When every head of the layer holds the same positions, the
/// rows are averaged over heads, so every head keeps the same tokens; else
/// each head ranks its own row. scores: [T] the (averaged) last attention row.
class TovaPolicy : public ScorerPolicy {
 public:
  explicit TovaPolicy(Budget budget) : ScorerPolicy(budget) {}
  std::string name() const override { return "tova"; }
  PolicyNeeds needs() const override { return {true, false}; }
  void reset() override {}

 protected:
  std::vector<at::Tensor> score_layer(const LayerObservation& observation) override;
  int64_t protected_recent(const LayerObservation& observation) const override;
};

/// A uniformly random B-subset per head that always includes the newest
/// token; each head decision is a fresh draw, determined by (seed, number of
/// draws so far), so a reset policy repeats itself. scores undefined.
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
