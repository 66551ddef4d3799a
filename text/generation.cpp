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

at::Tensor prefill(const Llama& model, LlamaState& state, const at::Tensor& prompt, int64_t prompt_chunk,
                   MemoryController* controller) {
  TORCH_CHECK(prompt.dim() == 1 && prompt.size(0) >= 1, "prefill: prompt must be [T] with T >= 1, got ",
              prompt.sizes());
  TORCH_CHECK(prompt_chunk >= 1, "prefill: prompt_chunk must be >= 1, got ", prompt_chunk);
  const int64_t total = prompt.size(0);
  at::Tensor logits;
  for (int64_t start = 0; start < total;) {
    int64_t n = std::min(prompt_chunk, total - start);
    // the host protocol: every policy update sees exactly `delay` new queries
    if (controller != nullptr) n = std::min(n, controller->tokens_until_update());
    logits = model->feed(state, prompt.narrow(0, start, n), controller);  // [V]
    start += n;
  }
  return logits;
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

GenerationResult generate(const Llama& model, const at::Tensor& prompt, const GenerationOptions& options,
                          MemoryController* controller) {
  check_options(options);
  at::Generator generator = at::detail::createCPUGenerator(options.seed);
  GenerationResult result;
  result.prompt_tokens = prompt.size(0);
  LlamaState state = model->new_state();

  const auto start = std::chrono::steady_clock::now();
  at::Tensor logits = prefill(model, state, prompt, options.prompt_chunk, controller);  // [V]
  result.prefill_seconds = seconds_since(start);

  const auto decode_start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    const int64_t token = pick_token(logits, options, generator);
    result.tokens.push_back(token);
    if (std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), token) !=
        options.stop_token_ids.end()) {
      result.stopped = true;
      break;
    }
    if (i + 1 == options.max_new_tokens) break;  // the last token needs no logits
    // one token never exceeds tokens_until_update() (always >= 1)
    logits = model->feed(state, at::full({1}, token, at::kLong), controller);  // [V]
  }
  result.decode_seconds = seconds_since(decode_start);

  for (int64_t l = 0; l < static_cast<int64_t>(state.caches.size()); ++l) {
    result.cached_tokens_per_layer.push_back(state.mean_cached_tokens(l));
  }
  result.cache_bytes = state.bytes();
  result.cache_used_bytes = state.used_bytes();
  result.policy_updates = controller != nullptr ? controller->num_updates() : 0;
  return result;
}

}  // namespace namm
