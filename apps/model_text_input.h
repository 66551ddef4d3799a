// What `namm logits` and `namm generate` share: a model directory's
// tokenizer and checkpoint opened with checks before anything large is
// allocated, --dtype, and the user's text read and tokenised with errors
// that name the file.
#pragma once

#include "apps/command.h"
#include "text/llama_checkpoint.h"
#include "text/text_tokenizer.h"

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <vector>

namespace namm::app {

/// "float32" / "bfloat16" / "float16" (also f32, bf16, f16) -> dtype; UsageError otherwise.
c10::ScalarType parse_dtype_option(const std::string& text);

/// A model directory opened for text: its tokenizer (checked against
/// config.json's vocab_size) and its config; load() reads the weights.
struct ModelForText {
  std::string dir;
  LlamaConfig config;
  TextTokenizer tokenizer;
  /// config.json's eos_token_id (an id or a list) and the tokenizer's end token.
  std::vector<int64_t> end_ids;

  static ModelForText open(const std::string& dir);
  /// The checkpoint in dtype, with a progress line on stderr (a real model
  /// takes a while to read).
  LlamaCheckpoint load(c10::ScalarType dtype) const;
};

/// The ids of a UTF-8 text file ('-': standard input); throws naming the
/// file when it cannot be read, is not UTF-8, or holds no tokens.
std::vector<int64_t> read_text_tokens(const ModelForText& model, const std::string& path, bool add_special_tokens);

}  // namespace namm::app
