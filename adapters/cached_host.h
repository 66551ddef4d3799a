// The host side of the seam: what a transformer implements so that a memory
// policy can prune its KV cache, and the one prefill/decode loop that runs
// any such host under the MemoryController protocol.
//
// A host (the Llama of text/, the video model of vision/, the Decision
// Transformer of rl/) implements CachedHost: it says how many attention
// layers it has and how wide its input embeddings are, makes an empty
// SequenceState, and runs one chunk of embeddings through all its layers
// (forward_layers), appending keys and values to the state's caches through
// prunable_attention and recording into the recorder it is handed. It never
// calls the controller: feed_chunk / feed_sequence below do that, once, for
// every host, so the protocol of adapters/memory_controller.h (no chunk
// beyond tokens_until_update(), after_tokens after every chunk) lives in one
// place. A language model adds token embeddings and an output head
// (CausalLm); generation, text evaluation and evolution take that interface.
//
// Adding a host is: implement CachedHost (or CausalLm), write its checkpoint
// loader.
//
// Shape letters: n tokens of one chunk, T tokens of a sequence, D width of
// the embeddings a host takes, V vocabulary, L layers.
#pragma once

#include "adapters/sequence_state.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace namm {

class AttentionRecorder;
class MemoryController;

/// A transformer whose per-sequence KV cache a memory policy prunes. The host
/// is immutable during inference: everything per sequence is in SequenceState.
class CachedHost {
 public:
  virtual ~CachedHost() = default;

  /// Attention layers L (one LayerKvCache each).
  virtual int64_t num_layers() const = 0;
  /// Width D of the embeddings forward_layers takes.
  virtual int64_t embedding_width() const = 0;
  /// An empty state whose L caches use the host's dtype and device.
  virtual SequenceState new_state() const = 0;

  /// Runs one chunk through every layer, without autograd: embeddings [n, D]
  /// (any dtype/device; the host converts) at positions [n] int64 on the CPU
  /// (ascending, above every cached position). Appends the chunk's keys and
  /// values to state.caches; layer l records attention into recorders[l]
  /// when recorders is non-empty and that entry is non-null. Neither evicts
  /// nor moves state.next_position (feed_chunk does both).
  /// Returns the residual stream after the last layer [n, D], before any final norm.
  virtual at::Tensor forward_layers(SequenceState& state, const at::Tensor& embeddings, const at::Tensor& positions,
                                    const std::vector<AttentionRecorder*>& recorders) const = 0;

  /// One line naming the host's shape (layers, widths, heads), for logs and fingerprints.
  virtual std::string summary() const = 0;
  /// The weights under their Hugging Face names, in a fixed order (for
  /// fingerprints and provenance).
  virtual std::vector<std::pair<std::string, at::Tensor>> hf_named_parameters() const = 0;
};

/// A host that reads and predicts tokens.
class CausalLm : public CachedHost {
 public:
  /// Vocabulary size V.
  virtual int64_t vocab_size() const = 0;
  /// Input embeddings of ids [...] int64 -> [..., D] on the host's device.
  virtual at::Tensor embed(const at::Tensor& ids) const = 0;
  /// The output head over forward_layers' residual stream: hidden [m, D] -> logits [m, V]
  /// (final norm, then the output projection).
  virtual at::Tensor logits(const at::Tensor& hidden) const = 0;
};

/// Which rows of the residual stream feed_sequence returns.
enum class HiddenRows {
  kAll,   ///< [T, D]: every token's.
  kLast,  ///< [1, D]: the last token's only (a long prompt keeps no [T, D] tensor).
};

/// One chunk under the protocol: embeddings [n, D] at positions [n] (undefined
/// means state.next_position + 0..n-1) through host.forward_layers, recording
/// for controller's policy; then state.next_position moves past the chunk and
/// controller->after_tokens(n, ...) runs (it may evict). n must not exceed
/// controller->tokens_until_update() (throws c10::Error). Returns
/// the residual stream [n, D]. No autograd.
at::Tensor feed_chunk(const CachedHost& host, SequenceState& state, const at::Tensor& embeddings,
                      MemoryController* controller = nullptr, const at::Tensor& positions = {});

/// The prefill loop: feeds T tokens whose embeddings [n, D] embeddings_of(begin, n)
/// makes on demand, in chunks of at most max_chunk (0 = no bound) and never
/// past controller->tokens_until_update(), so every policy update sees
/// exactly `delay` new queries. Returns the residual stream rows asked for.
/// T >= 1.
at::Tensor feed_sequence(const CachedHost& host, SequenceState& state, int64_t total,
                         const std::function<at::Tensor(int64_t begin, int64_t n)>& embeddings_of, int64_t max_chunk,
                         MemoryController* controller = nullptr, HiddenRows rows = HiddenRows::kAll);

/// feed_sequence over embeddings [T, D] already made.
at::Tensor feed_sequence(const CachedHost& host, SequenceState& state, const at::Tensor& embeddings, int64_t max_chunk,
                         MemoryController* controller = nullptr, HiddenRows rows = HiddenRows::kAll);

/// A language model's prefill: prompt ids [T] int64 (T >= 1), embedded chunk
/// by chunk, through feed_sequence; returns the logits [V] of the last token.
at::Tensor prefill_tokens(const CausalLm& model, SequenceState& state, const at::Tensor& prompt, int64_t max_chunk,
                          MemoryController* controller = nullptr);

/// A language model's prefill from input embeddings [T, D] (T >= 1; e.g. a
/// prompt with visual embeddings spliced in): returns the logits [V] of the
/// last token, or [T, V] of every token when all_logits.
at::Tensor prefill_embeddings(const CausalLm& model, SequenceState& state, const at::Tensor& embeddings,
                              int64_t max_chunk, MemoryController* controller = nullptr, bool all_logits = false);

/// One decoding step: token id through feed_chunk; returns its logits [V].
at::Tensor decode_token(const CausalLm& model, SequenceState& state, int64_t token,
                        MemoryController* controller = nullptr);

}  // namespace namm
