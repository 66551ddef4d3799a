// generation: see generation.h
#include "text/generation.h"

#include "adapters/memory_controller.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

namespace namm {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void check_options(const GenerationOptions& options) {
  if (options.max_new_tokens < 0) {
    throw std::invalid_argument("GenerationOptions: max_new_tokens must be >= 0, got " +
                                std::to_string(options.max_new_tokens));
  }
  if (!(options.temperature >= 0.0)) {
    throw std::invalid_argument("GenerationOptions: temperature must be >= 0, got " +
                                std::to_string(options.temperature));
  }
  if (options.top_k < 0) {
    throw std::invalid_argument("GenerationOptions: top_k must be >= 0, got " + std::to_string(options.top_k));
  }
  if (options.prompt_chunk < 1) {
    throw std::invalid_argument("GenerationOptions: prompt_chunk must be >= 1, got " +
                                std::to_string(options.prompt_chunk));
  }
}

}  // namespace

double GenerationResult::mean_cached_tokens() const {
  if (cached_tokens_per_layer.empty()) return 0.0;
  double total = 0.0;
  for (double tokens : cached_tokens_per_layer) total += tokens;
  return total / static_cast<double>(cached_tokens_per_layer.size());
}

int64_t pick_token(const at::Tensor& logits, const GenerationOptions& options, at::Generator& generator) {
  TORCH_CHECK(logits.dim() == 1 && logits.size(0) >= 1, "pick_token: logits must be [V], got ", logits.sizes());
  const at::Tensor scores = logits.to(at::kCPU, at::kFloat);  // [V]
  if (options.temperature == 0.0) return scores.argmax().item<int64_t>();
  const at::Tensor scaled = scores / options.temperature;  // [V]
  if (options.top_k > 0 && options.top_k < scaled.size(0)) {
    const auto [values, indices] = scaled.topk(options.top_k);  // [k], [k]
    const at::Tensor choice = at::multinomial(values.softmax(-1), 1, /*replacement=*/false, generator);  // [1]
    return indices[choice.item<int64_t>()].item<int64_t>();
  }
  return at::multinomial(scaled.softmax(-1), 1, /*replacement=*/false, generator).item<int64_t>();
}

Continuation continue_sequence(const CausalLm& model, SequenceState& state, at::Tensor logits,
                               const GenerationOptions& options, at::Generator& generator,
                               MemoryController* controller) {
  Continuation out;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    const int64_t token = pick_token(logits, options, generator);
    out.tokens.push_back(token);
    if (options.on_token) options.on_token(token);
    if (std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), token) !=
        options.stop_token_ids.end()) {
      out.stopped = true;
      break;
    }
    if (i + 1 == options.max_new_tokens) break;  // the last token needs no logits
    // one token never exceeds tokens_until_update() (always >= 1)
    logits = decode_token(model, state, token, controller);  // [V]
  }
  return out;
}

GenerationOptions greedy_answer_options(int64_t max_tokens, int64_t stop_token) {
  GenerationOptions options;
  options.max_new_tokens = max_tokens;
  options.temperature = 0.0;
  options.stop_token_ids = {stop_token};
  return options;
}

GenerationResult generate(const CausalLm& model, const at::Tensor& prompt, const GenerationOptions& options,
                          MemoryController* controller) {
  check_options(options);
  at::Generator generator = at::detail::createCPUGenerator(options.seed);
  GenerationResult result;
  result.prompt_tokens = prompt.size(0);
  SequenceState state = model.new_state();

  const auto start = std::chrono::steady_clock::now();
  // the prompt in slices so that a long one reports progress; the slices
  // continue one state, so the controller sees the same chunks either way
  const int64_t total = prompt.dim() == 1 ? prompt.size(0) : 0;
  if (total < 1) throw std::invalid_argument("generate: the prompt must be [T] with T >= 1 tokens");
  const int64_t slice = options.on_prefill ? std::max<int64_t>(options.progress_every, 1) : total;
  at::Tensor logits;  // [V]
  for (int64_t begin = 0; begin < total; begin += slice) {
    const int64_t n = std::min(slice, total - begin);
    logits = prefill_tokens(model, state, prompt.narrow(0, begin, n), options.prompt_chunk, controller);
    if (options.on_prefill) options.on_prefill(begin + n, total);
  }
  result.prefill_seconds = seconds_since(start);

  const auto decode_start = std::chrono::steady_clock::now();
  Continuation continuation = continue_sequence(model, state, logits, options, generator, controller);
  result.tokens = std::move(continuation.tokens);
  result.stopped = continuation.stopped;
  result.decode_seconds = seconds_since(decode_start);

  result.cached_tokens_per_layer = state.cached_tokens_per_layer();
  result.cache_bytes = state.bytes();
  result.cache_used_bytes = state.used_bytes();
  result.policy_updates = controller != nullptr ? controller->num_updates() : 0;
  return result;
}

}  // namespace namm
