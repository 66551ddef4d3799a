// llava_checkpoint: see llava_checkpoint.h
#include "vision/llava_checkpoint.h"

#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "text/llama_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace namm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";
constexpr char kConfigFile[] = "config.json";

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw std::runtime_error(path + ": " + message);
}

std::string shape_text(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

// the field's value, or fallback when absent or null; where names the object in messages
template <typename T>
T field(const json& object, const char* name, T fallback, const std::string& path, const std::string& where) {
  if (!object.contains(name) || object[name].is_null()) return fallback;
  const json& value = object[name];
  bool ok = false;
  if constexpr (std::is_same_v<T, bool>) {
    ok = value.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    ok = value.is_number_integer();
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = value.is_number();
  } else {
    ok = value.is_string();
  }
  if (!ok) fail(path, "field '" + where + name + "' has the wrong type: " + value.dump());
  return value.get<T>();
}

std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "float32";
    case c10::kBFloat16: return "bfloat16";
    case c10::kHalf: return "float16";
    case c10::kDouble: return "float64";
    default:
      throw std::invalid_argument(std::string("LLaVA checkpoints hold floating-point weights, not ") +
                                  c10::toString(dtype));
  }
}

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
  if (!v.is_object()) fail(path, "vision_config must be an object, got " + v.dump());
  const std::string w = "vision_config.";
  const std::string type = field<std::string>(v, "model_type", "clip_vision_model", path, w);
  if (type != "clip_vision_model") {
    fail(path, "vision_config.model_type '" + type + "' is not supported (only clip_vision_model)");
  }
  VisionTowerConfig c;  // CLIPVisionConfig's defaults for what is missing
  c.hidden_size = field<int64_t>(v, "hidden_size", c.hidden_size, path, w);
  c.intermediate_size = field<int64_t>(v, "intermediate_size", c.intermediate_size, path, w);
  c.num_hidden_layers = field<int64_t>(v, "num_hidden_layers", c.num_hidden_layers, path, w);
  c.num_attention_heads = field<int64_t>(v, "num_attention_heads", c.num_attention_heads, path, w);
  c.num_channels = field<int64_t>(v, "num_channels", c.num_channels, path, w);
  c.image_size = field<int64_t>(v, "image_size", c.image_size, path, w);
  c.patch_size = field<int64_t>(v, "patch_size", c.patch_size, path, w);
  c.hidden_act = field<std::string>(v, "hidden_act", c.hidden_act, path, w);
  c.layer_norm_eps = field<double>(v, "layer_norm_eps", c.layer_norm_eps, path, w);
  c.initializer_range = field<double>(v, "initializer_range", c.initializer_range, path, w);
  return c;
}

// which safetensors files hold the weights: (path, names the index puts there)
std::vector<std::pair<std::string, std::vector<std::string>>> weight_files(const std::string& dir) {
  std::vector<std::pair<std::string, std::vector<std::string>>> files;
  const fs::path single = fs::path(dir) / kSingleFile;
  const fs::path index = fs::path(dir) / kIndexFile;
  if (fs::exists(single)) {
    files.push_back({single.string(), {}});
    return files;
  }
  if (!fs::exists(index)) fail(dir, std::string("no ") + kSingleFile + " or " + kIndexFile + " in the checkpoint directory");
  json parsed;
  try {
    parsed = json::parse(read_file(index.string()));
  } catch (const json::exception& e) {
    fail(index.string(), std::string("not valid JSON: ") + e.what());
  }
  if (!parsed.is_object() || !parsed.contains("weight_map") || !parsed["weight_map"].is_object()) {
    fail(index.string(), "no \"weight_map\" object");
  }
  std::map<std::string, size_t> slot;  // file -> position in files
  for (const auto& [name, file] : parsed["weight_map"].items()) {
    if (!file.is_string()) fail(index.string(), "weight_map entry for " + name + " is not a file name: " + file.dump());
    const std::string shard = (fs::path(dir) / file.get<std::string>()).string();
    auto [it, fresh] = slot.emplace(shard, files.size());
    if (fresh) files.push_back({shard, {}});
    files[it->second].second.push_back(name);
  }
  if (files.empty()) fail(index.string(), "weight_map is empty");
  for (const auto& [shard, names] : files) {
    if (!fs::exists(shard)) {
      fail(shard, "shard not found (listed in " + index.string() + " for " + std::to_string(names.size()) +
                      " tensors, e.g. " + names.front() + ")");
    }
  }
  return files;
}

}  // namespace

VideoModelConfig parse_llava_config(const std::string& json_text, const std::string& path) {
  json config;
  try {
    config = json::parse(json_text);
  } catch (const json::exception& e) {
    fail(path, std::string("not valid JSON: ") + e.what());
  }
  if (!config.is_object()) fail(path, "expected a JSON object, got " + std::string(config.type_name()));
  const std::string type = field<std::string>(config, "model_type", "llava_next_video", path, "");
  if (type != "llava_next_video") {
    fail(path, "model_type '" + type + "' is not supported (only llava_next_video)");
  }

  VideoModelConfig out;
  out.vision = parse_vision_config(config.contains("vision_config") && !config["vision_config"].is_null()
                                       ? config["vision_config"]
                                       : default_vision_config(),
                                   path);

  // text_config: real checkpoints store only what differs from LlamaConfig's defaults
  json text = config.contains("text_config") && !config["text_config"].is_null() ? config["text_config"] : json::object();
  if (!text.is_object()) fail(path, "text_config must be an object, got " + text.dump());
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

  out.projector_hidden_act = field<std::string>(config, "projector_hidden_act", out.projector_hidden_act, path, "");
  out.multimodal_projector_bias =
      field<bool>(config, "multimodal_projector_bias", out.multimodal_projector_bias, path, "");
  if (config.contains("vision_feature_layer") && config["vision_feature_layer"].is_array()) {
    fail(path, "vision_feature_layer " + config["vision_feature_layer"].dump() +
                   " is not supported (a list of layers; only one layer is implemented)");
  }
  out.vision_feature_layer = field<int64_t>(config, "vision_feature_layer", out.vision_feature_layer, path, "");
  out.vision_feature_select_strategy =
      field<std::string>(config, "vision_feature_select_strategy", out.vision_feature_select_strategy, path, "");
  out.spatial_pool_mode = field<std::string>(config, "spatial_pool_mode", out.spatial_pool_mode, path, "");
  out.spatial_pool_stride = field<int64_t>(config, "spatial_pool_stride", out.spatial_pool_stride, path, "");
  out.image_token_index = field<int64_t>(config, "image_token_id", out.image_token_index, path, "");
  out.image_token_index = field<int64_t>(config, "image_token_index", out.image_token_index, path, "");
  out.video_token_index = field<int64_t>(config, "video_token_id", out.video_token_index, path, "");
  out.video_token_index = field<int64_t>(config, "video_token_index", out.video_token_index, path, "");
  try {
    out.validate();
  } catch (const std::invalid_argument& e) {
    fail(path, e.what());
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
      {"torch_dtype", dtype_name(dtype)},
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
  const auto files = weight_files(dir);
  std::map<std::string, at::Tensor> expected;  // classic name -> parameter
  for (const auto& [name, tensor] : model->hf_named_parameters()) expected[name] = tensor;
  std::map<std::string, std::string> source;  // classic name -> name as written
  std::map<std::string, std::string> metadata;
  at::NoGradGuard no_grad;
  for (const auto& [path, listed] : files) {
    const SafetensorsFile file = read_safetensors(path);
    if (metadata.empty()) metadata = file.metadata;
    for (const std::string& name : listed) {
      if (!file.tensors.count(name)) fail(path, "tensor " + name + " listed in " + kIndexFile + " is missing");
    }
    for (const auto& [name, tensor] : file.tensors) {
      const std::string canonical = canonical_llava_tensor_name(name);
      auto it = expected.find(canonical);
      if (it == expected.end()) {
        if (ignorable_tensor(canonical, config)) continue;
        fail(path, "unexpected tensor " + name + " " + shape_text(tensor.sizes()) + " for a LLaVA-NeXT-Video model (" +
                       config.vision.summary() + "; " + config.text.summary() + ")");
      }
      at::Tensor& parameter = it->second;
      if (tensor.sizes() != parameter.sizes()) {
        fail(path, "tensor " + name + " has shape " + shape_text(tensor.sizes()) + " but " + kConfigFile +
                       " implies " + shape_text(parameter.sizes()));
      }
      if (!at::isFloatingType(tensor.scalar_type())) {
        fail(path, "tensor " + name + " has dtype " + c10::toString(tensor.scalar_type()) + ", expected floating point");
      }
      auto [previous, fresh] = source.emplace(canonical, name);
      if (!fresh) fail(path, "tensor " + name + " is given twice (also as " + previous->second + ")");
      parameter.copy_(tensor);  // converts bf16/f16 to the model's dtype and device
    }
  }
  for (const auto& [name, parameter] : expected) {
    if (source.count(name) || name == "image_newline") continue;  // image_newline: image-only, optional
    fail(files.size() == 1 ? files.front().first : dir,
         "missing tensor " + name + " (expected shape " + shape_text(parameter.sizes()) + ")");
  }
  return metadata;
}

LlavaCheckpoint load_llava_checkpoint(const std::string& dir, c10::ScalarType dtype, c10::Device device) {
  dtype_name(dtype);  // refuses non-floating dtypes before reading anything
  LlavaCheckpoint checkpoint;
  checkpoint.config = read_llava_config((fs::path(dir) / kConfigFile).string());
  checkpoint.model = VideoModel(checkpoint.config);
  checkpoint.model->to(device, dtype);
  checkpoint.metadata = load_llava_weights(dir, checkpoint.model);
  return checkpoint;
}

void save_llava_checkpoint(const std::string& dir, const VideoModel& model,
                           const std::map<std::string, std::string>& metadata) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) fail(dir, "cannot create directory: " + error.message());
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> tensors;
  c10::ScalarType dtype = c10::kFloat;
  for (const auto& [name, parameter] : model->hf_named_parameters()) {
    tensors[name] = parameter.detach().to(at::kCPU).contiguous();
    dtype = parameter.scalar_type();
  }
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";  // what Hugging Face's loader looks for
  write_safetensors((fs::path(dir) / kSingleFile).string(), tensors, meta);
  fs::remove(fs::path(dir) / kIndexFile, error);  // a stale index would name old shards
  write_file_atomically((fs::path(dir) / kConfigFile).string(), llava_config_json(model->config(), dtype));
}

}  // namespace namm
