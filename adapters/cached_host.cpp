// cached_host: see cached_host.h
#include "adapters/cached_host.h"

#include "adapters/memory_controller.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace namm {
namespace {

void check_state(const CachedHost& host, const SequenceState& state, const MemoryController* controller) {
  TORCH_CHECK(state.num_layers() == host.num_layers(), "feed: the state has ", state.num_layers(), " caches for ",
              host.num_layers(), " layers (make it with the host's new_state())");
  TORCH_CHECK(controller == nullptr || controller->num_layers() == host.num_layers(), "feed: the controller has ",
              controller ? controller->num_layers() : 0, " layers, the host has ", host.num_layers());
}

}  // namespace

at::Tensor feed_chunk(const CachedHost& host, SequenceState& state, const at::Tensor& embeddings,
                      MemoryController* controller, const at::Tensor& positions) {
  // no autograd graph; not InferenceMode, whose tensors in the caches could
  // not be compacted in place by a later eviction outside such a guard
  at::NoGradGuard no_grad;
  check_state(host, state, controller);
  TORCH_CHECK(embeddings.dim() == 2 && embeddings.size(0) >= 1 && embeddings.size(1) == host.embedding_width(),
              "feed: embeddings must be [n, ", host.embedding_width(), "] with n >= 1, got ", embeddings.sizes());
  const int64_t n = embeddings.size(0);
  TORCH_CHECK(controller == nullptr || n <= controller->tokens_until_update(), "feed: ", n,
              " tokens fed but the controller allows ", controller ? controller->tokens_until_update() : 0,
              " before its next update (chunk by tokens_until_update())");
  at::Tensor pos;  // [n] int64 on the CPU
  if (positions.defined()) {
    TORCH_CHECK(positions.dim() == 1 && positions.size(0) == n, "feed: positions must be [", n, "], got ",
                positions.sizes());
    pos = positions.to(at::kCPU, at::kLong).contiguous();
  } else {
    pos = at::arange(state.next_position, state.next_position + n, at::kLong);
  }
  static const std::vector<AttentionRecorder*> kNoRecorders;
  const std::vector<AttentionRecorder*>& recorders = controller != nullptr ? controller->recorders() : kNoRecorders;
  at::Tensor hidden = host.forward_layers(state, embeddings, pos, recorders);  // [n, D]
  state.next_position = pos.data_ptr<int64_t>()[n - 1] + 1;
  if (controller != nullptr) controller->after_tokens(n, state.caches);
  return hidden;
}

at::Tensor feed_sequence(const CachedHost& host, SequenceState& state, int64_t total,
                         const std::function<at::Tensor(int64_t begin, int64_t n)>& embeddings_of, int64_t max_chunk,
                         MemoryController* controller, HiddenRows rows) {
  TORCH_CHECK(total >= 1, "feed_sequence: the sequence must hold >= 1 token, got ", total);
  TORCH_CHECK(max_chunk >= 0, "feed_sequence: max_chunk must be >= 0, got ", max_chunk);
  std::vector<at::Tensor> kept;  // chunks' rows, in order
  for (int64_t begin = 0; begin < total;) {
    int64_t n = total - begin;
    if (max_chunk > 0) n = std::min(n, max_chunk);
    // the host protocol: every policy update sees exactly `delay` new queries
    if (controller != nullptr) n = std::min(n, controller->tokens_until_update());
    at::Tensor hidden = feed_chunk(host, state, embeddings_of(begin, n), controller);  // [n, D]
    begin += n;
    if (rows == HiddenRows::kAll) {
      kept.push_back(std::move(hidden));
    } else if (begin == total) {
      kept.push_back(hidden.narrow(0, n - 1, 1));  // [1, D]
    }
  }
  return kept.size() == 1 ? kept.front() : at::cat(kept, 0);
}

at::Tensor feed_sequence(const CachedHost& host, SequenceState& state, const at::Tensor& embeddings, int64_t max_chunk,
                         MemoryController* controller, HiddenRows rows) {
  TORCH_CHECK(embeddings.dim() == 2, "feed_sequence: embeddings must be [T, D], got ", embeddings.sizes());
  return feed_sequence(
      host, state, embeddings.size(0), [&](int64_t begin, int64_t n) { return embeddings.narrow(0, begin, n); },
      max_chunk, controller, rows);
}

at::Tensor prefill_tokens(const CausalLm& model, SequenceState& state, const at::Tensor& prompt, int64_t max_chunk,
                          MemoryController* controller) {
  TORCH_CHECK(prompt.dim() == 1 && prompt.size(0) >= 1, "prefill: prompt must be [T] with T >= 1, got ", prompt.sizes());
  at::NoGradGuard no_grad;
  const at::Tensor last = feed_sequence(
      model, state, prompt.size(0), [&](int64_t begin, int64_t n) { return model.embed(prompt.narrow(0, begin, n)); },
      max_chunk, controller, HiddenRows::kLast);  // [1, D]
  return model.logits(last).squeeze(0);           // [V]
}

at::Tensor prefill_embeddings(const CausalLm& model, SequenceState& state, const at::Tensor& embeddings,
                              int64_t max_chunk, MemoryController* controller, bool all_logits) {
  TORCH_CHECK(embeddings.dim() == 2 && embeddings.size(0) >= 1, "prefill: embeddings must be [T, D] with T >= 1, got ",
              embeddings.sizes());
  at::NoGradGuard no_grad;
  const at::Tensor hidden = feed_sequence(model, state, embeddings, max_chunk, controller,
                                          all_logits ? HiddenRows::kAll : HiddenRows::kLast);  // [T or 1, D]
  const at::Tensor logits = model.logits(hidden);                                             // [T or 1, V]
  return all_logits ? logits : logits.squeeze(0);
}

at::Tensor decode_token(const CausalLm& model, SequenceState& state, int64_t token, MemoryController* controller) {
  at::NoGradGuard no_grad;
  const at::Tensor hidden = feed_chunk(model, state, model.embed(at::full({1}, token, at::kLong)), controller);  // [1, D]
  return model.logits(hidden).squeeze(0);  // [V]
}

}  // namespace namm
