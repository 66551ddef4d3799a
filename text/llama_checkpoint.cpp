// llama_checkpoint: see llama_checkpoint.h
#include "text/llama_checkpoint.h"

#include "core/atomic_file.h"
#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>
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

int64_t required_int(const json& config, const char* field, const std::string& path) {
  if (!config.contains(field) || config[field].is_null()) fail(path, std::string("required field '") + field + "' is missing");
  if (!config[field].is_number_integer()) {
    fail(path, std::string("field '") + field + "' must be an integer, got " + config[field].dump());
  }
  return config[field].get<int64_t>();
}

// the field's value, or fallback when absent or null
template <typename T>
T optional_field(const json& config, const char* field, T fallback, const std::string& path) {
  if (!config.contains(field) || config[field].is_null()) return fallback;
  const json& value = config[field];
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
  if (!ok) fail(path, std::string("field '") + field + "' has the wrong type: " + value.dump());
  return value.get<T>();
}

std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "float32";
    case c10::kBFloat16: return "bfloat16";
    case c10::kHalf: return "float16";
    case c10::kDouble: return "float64";
    default: throw std::invalid_argument(std::string("Llama checkpoints hold floating-point weights, not ") + c10::toString(dtype));
  }
}

// tensors some checkpoints carry that hold no weights of their own
bool ignorable_tensor(const std::string& name, const LlamaConfig& config) {
  const std::string suffix = "rotary_emb.inv_freq";  // older transformers saved the RoPE buffer
  if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
  return config.tie_word_embeddings && name == "lm_head.weight";  // tied: Hugging Face ignores it too
}

}  // namespace

LlamaConfig parse_llama_config(const std::string& json_text, const std::string& path) {
  json config;
  try {
    config = json::parse(json_text);
  } catch (const json::exception& e) {
    fail(path, std::string("not valid JSON: ") + e.what());
  }
  if (!config.is_object()) fail(path, "expected a JSON object, got " + std::string(config.type_name()));

  // settings whose math this model does not implement: refuse them by name
  const std::string model_type = optional_field<std::string>(config, "model_type", "llama", path);
  if (model_type != "llama" && model_type != "mistral") {
    fail(path, "model_type '" + model_type + "' is not supported (only the Llama family: llama, mistral)");
  }
  if (config.contains("rope_scaling") && !config["rope_scaling"].is_null()) {
    const json& scaling = config["rope_scaling"];
    const std::string kind = scaling.is_object() ? scaling.value("rope_type", scaling.value("type", std::string())) : "";
    if (kind != "default") {
      fail(path, "rope_scaling " + scaling.dump() + " is not supported (it changes RoPE; only plain RoPE is implemented)");
    }
  }
  const std::string act = optional_field<std::string>(config, "hidden_act", "silu", path);
  if (act != "silu" && act != "swish") fail(path, "hidden_act '" + act + "' is not supported (only silu)");
  if (optional_field<bool>(config, "attention_bias", false, path)) {
    fail(path, "attention_bias true is not supported (Llama projections have no bias)");
  }
  if (optional_field<bool>(config, "mlp_bias", false, path)) fail(path, "mlp_bias true is not supported");

  LlamaConfig out;
  out.vocab_size = required_int(config, "vocab_size", path);
  out.hidden_size = required_int(config, "hidden_size", path);
  out.intermediate_size = required_int(config, "intermediate_size", path);
  out.num_hidden_layers = required_int(config, "num_hidden_layers", path);
  out.num_attention_heads = required_int(config, "num_attention_heads", path);
  out.num_key_value_heads = optional_field<int64_t>(config, "num_key_value_heads", out.num_attention_heads, path);
  out.head_dim = optional_field<int64_t>(config, "head_dim", 0, path);
  out.rms_norm_eps = optional_field<double>(config, "rms_norm_eps", 1e-6, path);
  out.rope_theta = optional_field<double>(config, "rope_theta", 10000.0, path);
  out.max_position_embeddings = optional_field<int64_t>(config, "max_position_embeddings", 2048, path);
  out.tie_word_embeddings = optional_field<bool>(config, "tie_word_embeddings", false, path);
  out.initializer_range = optional_field<double>(config, "initializer_range", 0.02, path);

  const int64_t window = optional_field<int64_t>(config, "sliding_window", 0, path);
  if (window > 0 && window < out.max_position_embeddings &&
      optional_field<bool>(config, "use_sliding_window", true, path)) {
    fail(path, "sliding_window " + std::to_string(window) + " below max_position_embeddings " +
                   std::to_string(out.max_position_embeddings) + " is not supported (attention here is not windowed)");
  }
  try {
    out.validate();
  } catch (const std::invalid_argument& e) {
    fail(path, e.what());
  }
  return out;
}

LlamaConfig read_llama_config(const std::string& path) { return parse_llama_config(read_file(path), path); }

std::string llama_config_json(const LlamaConfig& config, c10::ScalarType dtype) {
  json out = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", config.vocab_size},
      {"hidden_size", config.hidden_size},
      {"intermediate_size", config.intermediate_size},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_attention_heads", config.num_attention_heads},
      {"num_key_value_heads", config.num_key_value_heads},
      {"head_dim", config.resolved_head_dim()},
      {"rms_norm_eps", config.rms_norm_eps},
      {"rope_theta", config.rope_theta},
      {"rope_scaling", nullptr},
      {"max_position_embeddings", config.max_position_embeddings},
      {"tie_word_embeddings", config.tie_word_embeddings},
      {"initializer_range", config.initializer_range},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"torch_dtype", dtype_name(dtype)},
      {"use_cache", true},
  };
  return out.dump(2) + "\n";
}

std::map<std::string, std::string> load_llama_weights(const std::string& dir, Llama& model) {
  const LlamaConfig& config = model->config();
  // which file holds each tensor; empty list of names means "whatever the file has"
  std::vector<std::pair<std::string, std::vector<std::string>>> files;  // path -> names the index puts there
  const fs::path single = fs::path(dir) / kSingleFile;
  const fs::path index = fs::path(dir) / kIndexFile;
  if (fs::exists(single)) {
    files.push_back({single.string(), {}});
  } else if (fs::exists(index)) {
    json parsed;
    try {
      parsed = json::parse(read_file(index.string()));
    } catch (const json::exception& e) {
      fail(index.string(), std::string("not valid JSON: ") + e.what());
    }
    if (!parsed.contains("weight_map") || !parsed["weight_map"].is_object()) {
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
    for (const auto& [shard, names] : files) {
      if (!fs::exists(shard)) {
        fail(shard, "shard not found (listed in " + index.string() + " for " + std::to_string(names.size()) +
                        " tensors, e.g. " + names.front() + ")");
      }
    }
  } else {
    fail(dir, std::string("no ") + kSingleFile + " or " + kIndexFile + " in the checkpoint directory");
  }

  std::map<std::string, at::Tensor> expected;  // Hugging Face name -> parameter
  for (const auto& [name, tensor] : model->hf_named_parameters()) expected[name] = tensor;
  std::set<std::string> loaded;
  std::map<std::string, std::string> metadata;
  at::NoGradGuard no_grad;
  for (const auto& [path, listed] : files) {
    const SafetensorsFile file = read_safetensors(path);
    if (metadata.empty()) metadata = file.metadata;
    for (const std::string& name : listed) {
      if (!file.tensors.count(name)) fail(path, "tensor " + name + " listed in " + kIndexFile + " is missing");
    }
    for (const auto& [name, tensor] : file.tensors) {
      auto it = expected.find(name);
      if (it == expected.end()) {
        if (ignorable_tensor(name, config)) continue;
        fail(path, "unexpected tensor " + name + " " + shape_text(tensor.sizes()) + " for a Llama with " +
                       config.summary());
      }
      at::Tensor& parameter = it->second;
      if (tensor.sizes() != parameter.sizes()) {
        fail(path, "tensor " + name + " has shape " + shape_text(tensor.sizes()) + " but " + kConfigFile +
                       " implies " + shape_text(parameter.sizes()));
      }
      if (!at::isFloatingType(tensor.scalar_type())) {
        fail(path, "tensor " + name + " has dtype " + c10::toString(tensor.scalar_type()) + ", expected floating point");
      }
      if (!loaded.insert(name).second) fail(path, "tensor " + name + " appears in more than one file");
      parameter.copy_(tensor);  // converts bf16/f16 to the model's dtype and device
    }
  }
  for (const auto& [name, parameter] : expected) {
    if (!loaded.count(name)) {
      fail(files.size() == 1 ? files.front().first : dir,
           "missing tensor " + name + " (expected shape " + shape_text(parameter.sizes()) + ")");
    }
  }
  return metadata;
}

LlamaCheckpoint load_llama_checkpoint(const std::string& dir, c10::ScalarType dtype, c10::Device device) {
  dtype_name(dtype);  // refuses non-floating dtypes before reading anything
  LlamaCheckpoint checkpoint;
  checkpoint.config = read_llama_config((fs::path(dir) / kConfigFile).string());
  checkpoint.model = Llama(checkpoint.config);
  checkpoint.model->to(device, dtype);
  checkpoint.metadata = load_llama_weights(dir, checkpoint.model);
  return checkpoint;
}

void save_llama_checkpoint(const std::string& dir, const Llama& model,
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
  write_file_atomically((fs::path(dir) / kConfigFile).string(), llama_config_json(model->config(), dtype));
}

}  // namespace namm
