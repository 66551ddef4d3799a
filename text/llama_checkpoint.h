// Hugging Face Llama-family checkpoints: a directory holding config.json and
// either model.safetensors or shards model-0000i-of-0000n.safetensors listed
// by model.safetensors.index.json, with the tensor names LlamaForCausalLM
// writes (model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight,
// ..., lm_head.weight unless tied). Our own trained models are saved in the
// same layout, so Hugging Face tools read them too.
//
// Layouts: Llama 1-3 (rope_scaling linear or llama3, tied embeddings,
// attention_bias), Mistral, Qwen2 (q/k/v biases) and Qwen3 (q_norm/k_norm),
// in f32, bf16 or f16 (converted to the dtype asked for).
//
// Every shape is checked against config.json; errors are one line naming
// the file, the tensor and the expected and actual shapes. Settings that
// would change the math and that the model does not implement (other RoPE
// scalings, MLP biases, another activation, sliding windows) are refused by
// name rather than silently ignored.
//
// Not here: the model (llama.h), the safetensors format itself (core/safetensors.h).
#pragma once

#include "text/llama.h"

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace namm {

/// A loaded checkpoint: its config, the model with its weights, the safetensors metadata.
struct LlamaCheckpoint {
  LlamaConfig config;
  Llama model{nullptr};
  std::map<std::string, std::string> metadata;  ///< "__metadata__" of the (first) weights file.
};

/// Parses a Hugging Face config.json (given as text; path only names it in
/// messages). Required: vocab_size, hidden_size, intermediate_size,
/// num_hidden_layers, num_attention_heads; the rest default as in Hugging
/// Face's LlamaConfig. Throws std::runtime_error("<path>: ...") naming a
/// missing or mistyped field, or an unsupported setting and its value.
LlamaConfig parse_llama_config(const std::string& json_text, const std::string& path = "config.json");

/// Reads and parses path (see parse_llama_config).
LlamaConfig read_llama_config(const std::string& path);

/// The config.json text for config (LlamaForCausalLM, model_type "llama"),
/// torch_dtype naming dtype.
std::string llama_config_json(const LlamaConfig& config, c10::ScalarType dtype = c10::kFloat);

/// Loads the checkpoint in directory dir into a new model of the given dtype
/// on the given device (bf16/f16/f32 weights are converted). Prefers
/// model.safetensors over an index, as Hugging Face does. Throws
/// std::runtime_error naming the file, and the tensor where there is one.
LlamaCheckpoint load_llama_checkpoint(const std::string& dir, c10::ScalarType dtype = c10::kFloat,
                                      c10::Device device = c10::kCPU);

/// load_llama_checkpoint that reports each weight file read: on_file(files
/// done, files, bytes read so far), for progress lines while a large model loads.
LlamaCheckpoint load_llama_checkpoint_reporting(const std::string& dir, c10::ScalarType dtype, c10::Device device,
                                                const std::function<void(std::size_t, std::size_t, int64_t)>& on_file);

/// The parameter count config describes (embeddings, head, every layer), in
/// floating point so that an absurd config overflows nothing.
double llama_parameter_count(const LlamaConfig& config);

/// Everything load_llama_checkpoint checks before it allocates: config's
/// sizes against dir's weight headers, and that the model fits in memory in
/// dtype. Throws naming config.json and the field, or the bytes needed.
void check_llama_checkpoint_sizes(const std::string& dir, const LlamaConfig& config,
                                  c10::ScalarType dtype = c10::kFloat);

/// Checks config's sizes (layers, vocabulary, widths, heads) against the
/// tensor shapes a checkpoint's headers declare (hf_weight_shapes), with
/// prefix before every tensor name ("language_model." inside LLaVA), before
/// a model is built. Throws "<config_path>: field '<name>' is N, but ...".
void check_llama_config_against_weights(const LlamaConfig& config,
                                        const std::map<std::string, std::vector<int64_t>>& shapes,
                                        const std::string& prefix, const std::string& config_path);

/// Copies the weights of the checkpoint in dir into model, whose config must
/// match the checkpoint's shapes; returns the safetensors metadata.
std::map<std::string, std::string> load_llama_weights(
    const std::string& dir, Llama& model,
    const std::function<void(std::size_t, std::size_t, int64_t)>& on_file = {});

/// Writes model as dir/model.safetensors (one file, the model's dtype, the
/// given metadata plus "format": "pt") and dir/config.json, each atomically
/// (temporary file, then rename). Creates dir if needed; removes a stale
/// model.safetensors.index.json, which would otherwise name old shards.
void save_llama_checkpoint(const std::string& dir, const Llama& model,
                           const std::map<std::string, std::string>& metadata = {});

}  // namespace namm
