// Budgeted policies that only score tokens: the score is the policy, the
// choice of what to keep is one shared selection (after kvpress's
// ScorerPress). A subclass says how worth keeping each cached token of each
// head is, how many tokens each head of the layer may keep (by default
// every head the same budget B), and how many of the newest tokens are never
// evicted (by default the newest one). The selection then keeps those newest
// tokens plus the highest-scored rest, ties to the newer token: the tie rule
// of every baseline (top_k_ascending, core/selection.h).
//
// Shape letters: Q new queries, T cached tokens of one head, H KV heads.
#pragma once

#include "core/memory_policy.h"

#include <cstdint>
#include <vector>

namespace namm {

/// keep [K] int64 ascending: the newest min(protected_recent, budget) of T
/// tokens plus the top budget - that many scores among the others (ties:
/// newer first); all T when T <= budget. scores [T] float32 (NaN ranks lowest).
at::Tensor keep_by_score(const at::Tensor& scores, int64_t budget, int64_t protected_recent);

/// A policy that scores tokens and leaves the choice to keep_by_score.
class ScorerPolicy : public MemoryPolicy {
 public:
  explicit ScorerPolicy(Budget budget) : budget_(budget) {}

  /// Scores every head, splits the layer's budget over heads, selects.
  LayerDecision update(const LayerObservation& observation) final;

 protected:
  /// Per head of the layer, scores [T_h] float32 (higher = more worth keeping).
  virtual std::vector<at::Tensor> score_layer(const LayerObservation& observation) = 0;

  /// Per head, the tokens it may keep, given the budget B every head would
  /// get (budget resolved against tokens_seen) and the scores. Default: B each.
  virtual std::vector<int64_t> head_budgets(const LayerObservation& observation, const std::vector<at::Tensor>& scores,
                                            int64_t budget);

  /// The newest tokens of every head that are never evicted. Default: 1 (the newest token).
  virtual int64_t protected_recent(const LayerObservation& observation) const;

  /// Called with each head's kept indices after selection (stateful scorers realign here).
  virtual void kept(const LayerObservation& observation, const std::vector<at::Tensor>& keep);

  const Budget& budget() const { return budget_; }

 private:
  Budget budget_;
};

/// Checks that head h of observation carries what a policy named `policy`
/// needs (positions [T] int64, and attention [Q, T] or keys [T, D] when
/// asked); returns T. Throws c10::Error naming the policy, layer and head.
int64_t check_head_observation(const char* policy, const LayerObservation& observation, size_t h,
                               bool need_attention, bool need_keys);

/// The budget of a layer resolved against tokens_seen (which must cover every head's cache).
int64_t resolve_layer_budget(const char* policy, const Budget& budget, const LayerObservation& observation);

}  // namespace namm
