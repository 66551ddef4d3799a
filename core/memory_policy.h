// The seam between memory policies and host transformers.
//
// A policy sees, for each layer, only what a host's attention produced:
// attention rows of the queries since the last update, the positions of the
// cached tokens and (for key-norm baselines) their keys. It never sees a
// host's weights or embeddings, which is what lets one NAMM fit any host.
// It answers with the indices of the cached tokens each KV head keeps.
//
// Shape letters: Q new queries, T cached tokens of one head, D head width.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace namm {

/// What a policy sees of one KV head of one layer at an update.
struct HeadObservation {
  at::Tensor attention;  ///< [Q, T] float32 rows of the Q queries since the last update over the T cached tokens (0 where a query could not see a key); undefined unless needs().attention.
  at::Tensor positions;  ///< [T] int64 sequence position of each cached token, ascending.
  at::Tensor keys;       ///< [T, D] float32 keys after RoPE; undefined unless needs().keys.
};

/// What a policy sees of one layer at an update.
struct LayerObservation {
  int layer = 0;                 ///< layer index in the host, 0 = first.
  int num_layers = 1;            ///< layers of the host (layer-wise budgets need it).
  int64_t num_new_tokens = 0;    ///< tokens appended since this layer's previous update: the last num_new_tokens of every head's cache.
  int64_t tokens_seen = 0;       ///< tokens of the sequence so far, i.e. the full-cache size; fractional budgets refer to it.
  std::vector<HeadObservation> heads;  ///< one per KV head.
};

/// A policy's verdict for one KV head.
struct HeadDecision {
  at::Tensor keep;    ///< [K] int64 ascending indices into the head's T cached tokens.
  at::Tensor scores;  ///< [T] float32 the policy's score per token (higher = more worth keeping); may be undefined.
};

/// A policy's verdict for one layer: one decision per KV head.
struct LayerDecision {
  std::vector<HeadDecision> heads;
};

/// What a policy needs the host to record between updates.
struct PolicyNeeds {
  bool attention = false;  ///< buffer attention rows of new queries.
  bool keys = false;       ///< hand over the cached keys.
};

/// A memory policy for one sequence. Policies keep per-sequence state (EMA
/// features, accumulated attention), so a host creates one per sequence and
/// calls reset() before reusing it. Trained parameters live apart, shared.
class MemoryPolicy {
 public:
  virtual ~MemoryPolicy() = default;

  /// Short name as given on command lines: "namm", "h2o", "full", ...
  virtual std::string name() const = 0;

  /// What the host must record for update().
  virtual PolicyNeeds needs() const = 0;

  /// Decides which tokens each head of one layer keeps, and drops its own
  /// state for the evicted tokens. Called once per layer per update.
  virtual LayerDecision update(const LayerObservation& observation) = 0;

  /// Forgets all per-sequence state before a new sequence.
  virtual void reset() = 0;
};

/// A memory budget in tokens or as a fraction of the tokens seen so far.
struct Budget {
  int64_t tokens = 0;     ///< absolute budget when fraction == 0.
  double fraction = 0.0;  ///< in (0, 1]; used when > 0.

  /// Tokens to keep for a sequence of tokens_seen tokens (at least 1).
  int64_t resolve(int64_t tokens_seen) const;

  /// Parses "512" (tokens), "25%" or "0.25" (fraction); throws on anything else.
  static Budget parse(const std::string& text);

  /// "512 tokens" or "25%".
  std::string to_string() const;
};

}  // namespace namm
