// A tiny random Llama over the task tokenizer's vocabulary, shared by the
// tests that answer task examples (fast, deterministic, peaked predictions).
#pragma once

#include "text/llama.h"
#include "text/tokenizer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

namespace namm::test_support {

inline Llama tiny_task_model() {
  at::set_num_threads(2);
  LlamaConfig config;
  config.vocab_size = builtin_tokenizer().vocab_size();
  config.hidden_size = 32;
  config.intermediate_size = 48;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 512;
  config.initializer_range = 0.3;  // peaked predictions
  at::manual_seed(7);
  return Llama(config);
}

}  // namespace namm::test_support
