// llava_checkpoint: see llava_checkpoint.h
#include "vision/llava_checkpoint.h"

#include "core/atomic_file.h"
#include "core/hf_checkpoint.h"
#include "text/llama_checkpoint.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <stdexcept>

namespace namm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kModel[] = "LLaVA";  // in messages

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// buffers some checkpoints carry that hold no weights of their own (canonical names)
bool ignorable_tensor(const std::string& name, const VideoModelConfig& config) {
  if (ends_with(name, "embeddings.position_ids")) return true;  // older CLIP saved its index buffer
  if (ends_with(name, "rotary_emb.inv_freq")) return true;      // older Llama saved its RoPE buffer
  return config.text.tie_word_embeddings && name == "language_model.lm_head.weight";  // tied: ignored as HF does
}

// the Hugging Face CLIPVisionConfig of LlavaNextVideoConfig's default tower (CLIP ViT-L/14 at 336 px)
json default_vision_config() {
  return {{"model_type", "clip_vision_model"}, {"hidden_size", 1024}, {"intermediate_size", 4096},
          {"num_hidden_layers", 24},          {"num_attention_heads", 16}, {"image_size", 336},
          {"patch_size", 14}};
}

VisionTowerConfig parse_vision_config(const json& v, const std::string& path) {
  if (!v.is_object()) hf_fail(path, "vision_config must be an object, got " + v.dump());
  const std::string w = "vision_config.";
  const std::string type = hf_field<std::string>(v, "model_type", "clip_vision_model", path, w);
  if (type != "clip_vision_model") {
    hf_fail(path, "vision_config.model_type '" + type + "' is not supported (only clip_vision_model)");
  }
  VisionTowerConfig c;  // CLIPVisionConfig's defaults for what is missing
  c.hidden_size = hf_field<int64_t>(v, "hidden_size", c.hidden_size, path, w);
  c.intermediate_size = hf_field<int64_t>(v, "intermediate_size", c.intermediate_size, path, w);
  c.num_hidden_layers = hf_field<int64_t>(v, "num_hidden_layers", c.num_hidden_layers, path, w);
  c.num_attention_heads = hf_field<int64_t>(v, "num_attention_heads", c.num_attention_heads, path, w);
  c.num_channels = hf_field<int64_t>(v, "num_channels", c.num_channels, path, w);
  c.image_size = hf_field<int64_t>(v, "image_size", c.image_size, path, w);
  c.patch_size = hf_field<int64_t>(v, "patch_size", c.patch_size, path, w);
  c.hidden_act = hf_field<std::string>(v, "hidden_act", c.hidden_act, path, w);
  c.layer_norm_eps = hf_field<double>(v, "layer_norm_eps", c.layer_norm_eps, path, w);
  c.initializer_range = hf_field<double>(v, "initializer_range", c.initializer_range, path, w);
  return c;
}

}  // namespace

VideoModelConfig parse_llava_config(const std::string& json_text, const std::string& path) {
  const json config = hf_parse_json_object(json_text, path);
  const std::string type = hf_field<std::string>(config, "model_type", "llava_next_video", path);
  if (type != "llava_next_video") {
    hf_fail(path, "model_type '" + type + "' is not supported (only llava_next_video)");
  }

  VideoModelConfig out;
  out.vision = parse_vision_config(config.contains("vision_config") && !config["vision_config"].is_null()
                                       ? config["vision_config"]
                                       : default_vision_config(),
                                   path);

  // text_config: real checkpoints store only what differs from LlamaConfig's defaults
  json text = config.contains("text_config") && !config["text_config"].is_null() ? config["text_config"] : json::object();
  if (!text.is_object()) hf_fail(path, "text_config must be an object, got " + text.dump());
  const std::pair<const char*, int64_t> llama_defaults[] = {{"vocab_size", 32000},
                                                            {"hidden_size", 4096},
                                                            {"intermediate_size", 11008},
                                                            {"num_hidden_layers", 32},
                                                            {"num_attention_heads", 32}};
  for (const auto& [name, value] : llama_defaults) {
    if (!text.contains(name) || text[name].is_null()) text[name] = value;
  }
  if (!text.contains("tie_word_embeddings") && config.contains("tie_word_embeddings")) {
    text["tie_word_embeddings"] = config["tie_word_embeddings"];
  }
  out.text = parse_llama_config(text.dump(), path + " (text_config)");

  out.projector_hidden_act = hf_field<std::string>(config, "projector_hidden_act", out.projector_hidden_act, path);
  out.multimodal_projector_bias =
      hf_field<bool>(config, "multimodal_projector_bias", out.multimodal_projector_bias, path);
  if (config.contains("vision_feature_layer") && config["vision_feature_layer"].is_array()) {
    hf_fail(path, "vision_feature_layer " + config["vision_feature_layer"].dump() +
                      " is not supported (a list of layers; only one layer is implemented)");
  }
  out.vision_feature_layer = hf_field<int64_t>(config, "vision_feature_layer", out.vision_feature_layer, path);
  out.vision_feature_select_strategy =
      hf_field<std::string>(config, "vision_feature_select_strategy", out.vision_feature_select_strategy, path);
  out.spatial_pool_mode = hf_field<std::string>(config, "spatial_pool_mode", out.spatial_pool_mode, path);
  out.spatial_pool_stride = hf_field<int64_t>(config, "spatial_pool_stride", out.spatial_pool_stride, path);
  out.image_token_index = hf_field<int64_t>(config, "image_token_id", out.image_token_index, path);
  out.image_token_index = hf_field<int64_t>(config, "image_token_index", out.image_token_index, path);
  out.video_token_index = hf_field<int64_t>(config, "video_token_id", out.video_token_index, path);
  out.video_token_index = hf_field<int64_t>(config, "video_token_index", out.video_token_index, path);
  try {
    out.validate();
  } catch (const std::invalid_argument& e) {
    hf_fail(path, e.what());
  }
  return out;
}

VideoModelConfig read_llava_config(const std::string& path) { return parse_llava_config(read_file(path), path); }

std::string llava_config_json(const VideoModelConfig& config, c10::ScalarType dtype) {
  const VisionTowerConfig& v = config.vision;
  json out = {
      {"architectures", {"LlavaNextVideoForConditionalGeneration"}},
      {"model_type", "llava_next_video"},
      {"vision_config",
       {{"model_type", "clip_vision_model"},
        {"hidden_size", v.hidden_size},
        {"intermediate_size", v.intermediate_size},
        {"num_hidden_layers", v.num_hidden_layers},
        {"num_attention_heads", v.num_attention_heads},
        {"num_channels", v.num_channels},
        {"image_size", v.image_size},
        {"patch_size", v.patch_size},
        {"hidden_act", v.hidden_act},
        {"layer_norm_eps", v.layer_norm_eps},
        {"initializer_range", v.initializer_range},
        {"projection_dim", v.hidden_size}}},
      {"text_config", json::parse(llama_config_json(config.text, dtype))},
      {"projector_hidden_act", config.projector_hidden_act},
      {"multimodal_projector_bias", config.multimodal_projector_bias},
      {"vision_feature_layer", config.vision_feature_layer},
      {"vision_feature_select_strategy", config.vision_feature_select_strategy},
      {"spatial_pool_mode", config.spatial_pool_mode},
      {"spatial_pool_stride", config.spatial_pool_stride},
      {"image_token_index", config.image_token_index},
      {"video_token_index", config.video_token_index},
      {"image_seq_length", config.vision.num_patches()},
      {"video_seq_length", config.tokens_per_frame()},
      {"tie_word_embeddings", config.text.tie_word_embeddings},
      {"torch_dtype", hf_dtype_name(dtype, kModel)},
  };
  return out.dump(2) + "\n";
}

std::string canonical_llava_tensor_name(const std::string& name) {
  // transformers >= 4.52: a LlavaNextVideoModel under "model." plus a top-level lm_head
  if (starts_with(name, "model.vision_tower.")) return name.substr(6);
  if (starts_with(name, "model.multi_modal_projector.")) return name.substr(6);
  if (starts_with(name, "model.language_model.")) return "language_model.model." + name.substr(21);
  if (name == "model.image_newline") return "image_newline";
  if (starts_with(name, "lm_head.")) return "language_model." + name;
  return name;
}

std::map<std::string, std::string> load_llava_weights(const std::string& dir, VideoModel& model) {
  const VideoModelConfig& config = model->config();
  HfWeightRules rules;
  rules.model = "a LLaVA-NeXT-Video model (" + config.vision.summary() + "; " + config.text.summary() + ")";
  rules.canonical = canonical_llava_tensor_name;  // either layout (see the header)
  rules.ignorable = [&config](const std::string& name) { return ignorable_tensor(name, config); };
  rules.optional = {"image_newline"};  // image-only, so a checkpoint may leave it out
  rules.require_finite = true;         // a diverged run saves NaN: refuse it here, not as '<pad>' answers later
  return hf_load_weights(dir, hf_weight_files(dir), model->hf_named_parameters(), rules);
}

LlavaCheckpoint load_llava_checkpoint(const std::string& dir, c10::ScalarType dtype, c10::Device device) {
  hf_dtype_name(dtype, kModel);  // refuses non-floating dtypes before reading anything
  LlavaCheckpoint checkpoint;
  const std::string config_path = (fs::path(dir) / kHfConfigFile).string();
  checkpoint.config = read_llava_config(config_path);
  {
    // config.json's sizes against the weights' headers, before anything is allocated
    const auto shapes = hf_weight_shapes(hf_weight_files(dir), canonical_llava_tensor_name);
    check_llama_config_against_weights(checkpoint.config.text, shapes, "language_model.", config_path);
    hf_check_layer_count(shapes, "vision_tower.vision_model.encoder.layers.", checkpoint.config.vision.num_hidden_layers,
                         "vision_config.num_hidden_layers", config_path);
    hf_check_weights_fit(shapes, dtype, dir + ": the model");
  }
  checkpoint.model = VideoModel(checkpoint.config);
  checkpoint.model->to(device, dtype);
  checkpoint.metadata = load_llava_weights(dir, checkpoint.model);
  return checkpoint;
}

void save_llava_checkpoint(const std::string& dir, const VideoModel& model,
                           const std::map<std::string, std::string>& metadata) {
  const c10::ScalarType dtype = hf_save_weights(dir, model->hf_named_parameters(), metadata);
  write_file_atomically((fs::path(dir) / kHfConfigFile).string(), llava_config_json(model->config(), dtype));
}

}  // namespace namm
