// Text generation with the prunable KV cache: chunked prefill, then one
// token at a time, greedy or sampled, under any memory policy.
//
// Any language host (a CausalLm, adapters/cached_host.h: the Llama, the
// video model's language model, a loaded Hugging Face checkpoint) runs
// through the shared prefill/decode loop there, so both phases follow the
// MemoryController protocol and a policy sees exactly `delay` new queries per
// update.
//
// Not here: tokenisation, stopping on strings, batching several sequences.
#pragma once

#include "adapters/cached_host.h"

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace namm {

class MemoryController;

/// How to generate.
struct GenerationOptions {
  int64_t max_new_tokens = 64;          ///< upper bound on generated tokens.
  double temperature = 0.0;             ///< 0 = greedy (argmax); else softmax(logits / temperature).
  int64_t top_k = 0;                    ///< sample among the k likeliest tokens; 0 = all.
  uint64_t seed = 0;                    ///< seed of the sampling generator (same seed, same text).
  std::vector<int64_t> stop_token_ids;  ///< generation ends after emitting one of these.
  int64_t prompt_chunk = 128;           ///< most prompt tokens fed at once.
  /// Called with each generated id as soon as it is picked (streaming output).
  std::function<void(int64_t token)> on_token;
  /// Called during the prompt with (tokens fed, prompt tokens) after every
  /// progress_every tokens and at its end (progress of a long prompt).
  std::function<void(int64_t fed, int64_t total)> on_prefill;
  int64_t progress_every = 4096;
};

/// What generate() produced and what it cost.
struct GenerationResult {
  std::vector<int64_t> tokens;      ///< generated ids, the stop token included when one ended it.
  bool stopped = false;             ///< a stop token ended generation.
  int64_t prompt_tokens = 0;        ///< tokens of the prompt.
  double prefill_seconds = 0.0;     ///< wall time of the prompt.
  double decode_seconds = 0.0;      ///< wall time after the prompt: picking and feeding the generated tokens.
  std::vector<double> cached_tokens_per_layer;  ///< [L] tokens cached at the end, mean over KV heads.
  int64_t cache_bytes = 0;          ///< K/V storage allocated at the end, all layers.
  int64_t cache_used_bytes = 0;     ///< K/V storage holding cached tokens at the end.
  int64_t policy_updates = 0;       ///< updates the controller ran (0 without one).

  /// Mean over layers of cached_tokens_per_layer.
  double mean_cached_tokens() const;
};

/// Picks the next token from logits [V]: argmax when temperature is 0, else a
/// sample with the given temperature and top_k drawn with generator (CPU).
int64_t pick_token(const at::Tensor& logits, const GenerationOptions& options, at::Generator& generator);

/// What a decode loop produced.
struct Continuation {
  std::vector<int64_t> tokens;  ///< picked ids, the stop token included when one ended it.
  bool stopped = false;         ///< a stop token ended the loop.
};

/// The decode loop every language host shares: from logits [V] of the last
/// fed token, picks a token (pick_token), ends after a stop id or
/// options.max_new_tokens, else feeds it (decode_token, under controller) and
/// goes on. The last token is never fed: it needs no logits.
Continuation continue_sequence(const CausalLm& model, SequenceState& state, at::Tensor logits,
                               const GenerationOptions& options, at::Generator& generator,
                               MemoryController* controller = nullptr);

/// Greedy options for an answer of at most max_tokens ending at stop_token.
GenerationOptions greedy_answer_options(int64_t max_tokens, int64_t stop_token);

/// Generates up to options.max_new_tokens after prompt [T] int64 (T >= 1)
/// from a fresh state. With a controller (reset by the caller for a new
/// sequence), its policy prunes the cache as the sequence grows.
GenerationResult generate(const CausalLm& model, const at::Tensor& prompt, const GenerationOptions& options,
                          MemoryController* controller = nullptr);

}  // namespace namm
