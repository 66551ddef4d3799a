// Hugging Face LLaVA-NeXT-Video checkpoints (LlavaNextVideoForConditionalGeneration):
// a directory with config.json (vision_config, text_config,
// projector_hidden_act, vision_feature_layer, vision_feature_select_strategy,
// spatial_pool_mode/stride, image/video_token_index) and model.safetensors,
// or shards listed by model.safetensors.index.json.
//
// Tensor names, classic layout (transformers < 4.52, what llava-hf ships and
// what save_llava_checkpoint writes):
//   vision_tower.vision_model.embeddings.patch_embedding.weight, ...
//   multi_modal_projector.linear_1.weight / .bias, linear_2.*
//   language_model.model.layers.0.self_attn.q_proj.weight, ...
//   language_model.lm_head.weight (absent when tied), image_newline
// Newer transformers write model.vision_tower.*, model.multi_modal_projector.*,
// model.language_model.* (no ".model"), lm_head.weight, model.image_newline;
// both are read (canonical_llava_tensor_name). Buffers older versions saved
// (position_ids, rotary_emb.inv_freq) are skipped; image_newline is optional.
//
// Every tensor's shape is checked against config.json; errors are one line
// naming the file, the tensor and the shapes. Settings the model does not
// implement (a feature-layer list, "full" selection, max/conv pooling,
// another tower type) are refused by name.
//
// Not here: the model (video_model.h), the safetensors format (core/safetensors.h).
#pragma once

#include "vision/video_model.h"

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <map>
#include <string>

namespace namm {

/// A loaded checkpoint: its config, the model with its weights, the safetensors metadata.
struct LlavaCheckpoint {
  VideoModelConfig config;
  VideoModel model{nullptr};
  std::map<std::string, std::string> metadata;  ///< "__metadata__" of the (first) weights file.
};

/// Parses a LLaVA-NeXT-Video config.json given as text (path names it in
/// messages). Missing sub-config fields take Hugging Face's CLIPVisionConfig
/// and LlamaConfig defaults, as real checkpoints store only the differences.
/// Throws std::runtime_error("<path>: ...") naming the field and its value.
VideoModelConfig parse_llava_config(const std::string& json_text, const std::string& path = "config.json");

/// Reads and parses path (see parse_llava_config).
VideoModelConfig read_llava_config(const std::string& path);

/// The config.json text for config (model_type "llava_next_video"), torch_dtype naming dtype.
std::string llava_config_json(const VideoModelConfig& config, c10::ScalarType dtype = c10::kFloat);

/// The classic-layout name of a tensor written in either layout (see the top).
std::string canonical_llava_tensor_name(const std::string& name);

/// Copies the weights of the checkpoint in dir into model, whose config must
/// match the checkpoint's shapes; returns the safetensors metadata. Throws
/// std::runtime_error naming the file and the tensor.
std::map<std::string, std::string> load_llava_weights(const std::string& dir, VideoModel& model);

/// Loads the checkpoint in dir into a new model of the given dtype on the
/// given device. Prefers model.safetensors over an index, as Hugging Face does.
LlavaCheckpoint load_llava_checkpoint(const std::string& dir, c10::ScalarType dtype = c10::kFloat,
                                      c10::Device device = c10::kCPU);

/// Writes model as dir/model.safetensors (classic names, the model's dtype,
/// metadata plus "format": "pt") and dir/config.json, each atomically;
/// creates dir and removes a stale model.safetensors.index.json.
void save_llava_checkpoint(const std::string& dir, const VideoModel& model,
                           const std::map<std::string, std::string>& metadata = {});

}  // namespace namm
