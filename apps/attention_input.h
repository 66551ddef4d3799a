// Reading the attention stacks `namm spectrogram` and `namm score` take.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace namm::app {

/// Reads float32 attention [heads, queries, keys] from a .npy file and checks
/// it is usable for one update: non-empty, finite, queries a multiple of hop,
/// keys >= queries (the last `queries` keys are the queries' own tokens).
/// Throws std::runtime_error("<path>: <problem>").
at::Tensor read_attention_stack(const std::string& path, int64_t hop);

}  // namespace namm::app
