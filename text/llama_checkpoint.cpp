// llama_checkpoint: see llama_checkpoint.h
#include "text/llama_checkpoint.h"

#include "core/atomic_file.h"
#include "core/hf_checkpoint.h"
#include "core/memory_budget.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <stdexcept>

namespace namm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kModel[] = "Llama";  // in messages

// tensors some checkpoints carry that hold no weights of their own
bool ignorable_tensor(const std::string& name, const LlamaConfig& config) {
  const std::string suffix = "rotary_emb.inv_freq";  // older transformers saved the RoPE buffer
  if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
  return config.tie_word_embeddings && name == "lm_head.weight";  // tied: Hugging Face ignores it too
}

// config.json "rope_scaling": {"rope_type" (or "type"): "linear" | "llama3" | "default", ...}
RopeScaling parse_rope_scaling(const json& scaling, const std::string& path) {
  if (!scaling.is_object()) hf_fail(path, "rope_scaling is not an object: " + scaling.dump());
  const std::string kind = scaling.value("rope_type", scaling.value("type", std::string()));
  const auto number = [&](const char* key, double fallback) {
    if (!scaling.contains(key)) return fallback;
    if (!scaling[key].is_number()) hf_fail(path, std::string("rope_scaling.") + key + " is not a number");
    return scaling[key].get<double>();
  };
  RopeScaling out;
  if (kind == "default") return out;
  if (kind == "linear") {
    out.kind = RopeScaling::Kind::kLinear;
  } else if (kind == "llama3") {
    out.kind = RopeScaling::Kind::kLlama3;
    out.low_freq_factor = number("low_freq_factor", 1.0);
    out.high_freq_factor = number("high_freq_factor", 4.0);
    const double original = number("original_max_position_embeddings", 8192);
    if (!(original >= 1 && original <= 1e9)) hf_fail(path, "rope_scaling.original_max_position_embeddings is out of range");
    out.original_max_position_embeddings = static_cast<int64_t>(original);
  } else {
    hf_fail(path, "rope_scaling.rope_type '" + kind + "' is not supported (default, linear, llama3)");
  }
  if (!scaling.contains("factor")) hf_fail(path, "rope_scaling.factor is missing");
  out.factor = number("factor", 1.0);
  return out;
}

}  // namespace

LlamaConfig parse_llama_config(const std::string& json_text, const std::string& path) {
  const json config = hf_parse_json_object(json_text, path);

  // settings whose math this model does not implement: refuse them by name
  const std::string model_type = hf_field<std::string>(config, "model_type", "llama", path);
  if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2" && model_type != "qwen3") {
    hf_fail(path, "model_type '" + model_type + "' is not supported (llama, mistral, qwen2, qwen3)");
  }
  LlamaConfig out;
  out.model_type = model_type;
  if (config.contains("rope_scaling") && !config["rope_scaling"].is_null()) {
    out.rope_scaling = parse_rope_scaling(config["rope_scaling"], path);
  }
  const std::string act = hf_field<std::string>(config, "hidden_act", "silu", path);
  if (act != "silu" && act != "swish") hf_fail(path, "hidden_act '" + act + "' is not supported (only silu)");
  // Llama's and Qwen3's attention_bias puts biases on all four projections;
  // Qwen2 always has them on q, k and v and never on o.
  const bool attention_bias = hf_field<bool>(config, "attention_bias", false, path);
  if (model_type == "qwen2") {
    if (attention_bias) hf_fail(path, "attention_bias true is not a Qwen2 setting (its q/k/v biases are implied)");
    out.qkv_bias = true;
  } else {
    out.qkv_bias = out.o_bias = attention_bias;
  }
  out.qk_norm = model_type == "qwen3";
  if (hf_field<bool>(config, "mlp_bias", false, path)) hf_fail(path, "mlp_bias true is not supported");

  out.vocab_size = hf_required_int(config, "vocab_size", path);
  out.hidden_size = hf_required_int(config, "hidden_size", path);
  out.intermediate_size = hf_required_int(config, "intermediate_size", path);
  out.num_hidden_layers = hf_required_int(config, "num_hidden_layers", path);
  out.num_attention_heads = hf_required_int(config, "num_attention_heads", path);
  out.num_key_value_heads = hf_field<int64_t>(config, "num_key_value_heads", out.num_attention_heads, path);
  out.head_dim = hf_field<int64_t>(config, "head_dim", 0, path);
  out.rms_norm_eps = hf_field<double>(config, "rms_norm_eps", 1e-6, path);
  out.rope_theta = hf_field<double>(config, "rope_theta", 10000.0, path);
  out.max_position_embeddings = hf_field<int64_t>(config, "max_position_embeddings", 2048, path);
  out.tie_word_embeddings = hf_field<bool>(config, "tie_word_embeddings", false, path);
  out.initializer_range = hf_field<double>(config, "initializer_range", 0.02, path);

  const int64_t window = hf_field<int64_t>(config, "sliding_window", 0, path);
  if (window > 0 && window < out.max_position_embeddings &&
      hf_field<bool>(config, "use_sliding_window", true, path)) {
    hf_fail(path, "sliding_window " + std::to_string(window) + " below max_position_embeddings " +
                      std::to_string(out.max_position_embeddings) +
                      " is not supported (attention here is not windowed)");
  }
  try {
    out.validate();
  } catch (const std::invalid_argument& e) {
    hf_fail(path, e.what());
  }
  return out;
}

LlamaConfig read_llama_config(const std::string& path) { return parse_llama_config(read_file(path), path); }

std::string llama_config_json(const LlamaConfig& config, c10::ScalarType dtype) {
  const std::string architecture = config.model_type == "qwen2"     ? "Qwen2ForCausalLM"
                                   : config.model_type == "qwen3"   ? "Qwen3ForCausalLM"
                                   : config.model_type == "mistral" ? "MistralForCausalLM"
                                                                    : "LlamaForCausalLM";
  json rope_scaling = nullptr;
  if (config.rope_scaling.kind == RopeScaling::Kind::kLinear) {
    rope_scaling = {{"rope_type", "linear"}, {"factor", config.rope_scaling.factor}};
  } else if (config.rope_scaling.kind == RopeScaling::Kind::kLlama3) {
    rope_scaling = {{"rope_type", "llama3"},
                    {"factor", config.rope_scaling.factor},
                    {"low_freq_factor", config.rope_scaling.low_freq_factor},
                    {"high_freq_factor", config.rope_scaling.high_freq_factor},
                    {"original_max_position_embeddings", config.rope_scaling.original_max_position_embeddings}};
  }
  json out = {
      {"architectures", {architecture}},
      {"model_type", config.model_type},
      {"vocab_size", config.vocab_size},
      {"hidden_size", config.hidden_size},
      {"intermediate_size", config.intermediate_size},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_attention_heads", config.num_attention_heads},
      {"num_key_value_heads", config.num_key_value_heads},
      {"head_dim", config.resolved_head_dim()},
      {"rms_norm_eps", config.rms_norm_eps},
      {"rope_theta", config.rope_theta},
      {"rope_scaling", rope_scaling},
      {"max_position_embeddings", config.max_position_embeddings},
      {"tie_word_embeddings", config.tie_word_embeddings},
      {"initializer_range", config.initializer_range},
      {"hidden_act", "silu"},
      {"attention_bias", config.model_type == "qwen2" ? false : config.o_bias},
      {"mlp_bias", false},
      {"torch_dtype", hf_dtype_name(dtype, kModel)},
      {"use_cache", true},
  };
  return out.dump(2) + "\n";
}

double llama_parameter_count(const LlamaConfig& c) {
  const double d = static_cast<double>(c.hidden_size), v = static_cast<double>(c.vocab_size);
  const double dh = static_cast<double>(c.resolved_head_dim());
  const double hq = static_cast<double>(c.num_attention_heads), hkv = static_cast<double>(c.num_key_value_heads);
  const double biases = (c.qkv_bias ? dh * (hq + 2.0 * hkv) : 0.0) + (c.o_bias ? d : 0.0);
  const double layer = d * dh * (2.0 * hq + 2.0 * hkv) + 3.0 * d * static_cast<double>(c.intermediate_size) + 2.0 * d +
                       biases + (c.qk_norm ? 2.0 * dh : 0.0);
  return v * d * (c.tie_word_embeddings ? 1.0 : 2.0) + static_cast<double>(c.num_hidden_layers) * layer + d;
}

void check_llama_checkpoint_sizes(const std::string& dir, const LlamaConfig& config, c10::ScalarType dtype) {
  const std::string config_path = (fs::path(dir) / kHfConfigFile).string();
  const auto shapes = hf_weight_shapes(hf_weight_files(dir));
  check_llama_config_against_weights(config, shapes, "", config_path);
  hf_check_weights_fit(shapes, dtype, dir + ": the model");
  require_memory(llama_parameter_count(config) * static_cast<double>(c10::elementSize(dtype)),
                 config_path + ": the model it declares (" + config.summary() + ")");
}

void check_llama_config_against_weights(const LlamaConfig& config,
                                        const std::map<std::string, std::vector<int64_t>>& shapes,
                                        const std::string& prefix, const std::string& config_path) {
  const std::string layers = prefix + "model.layers.";
  hf_check_layer_count(shapes, layers, config.num_hidden_layers, "num_hidden_layers", config_path);
  const std::string embed = prefix + "model.embed_tokens.weight";
  hf_check_size(shapes, embed, 0, config.vocab_size, "vocab_size", config_path);
  hf_check_size(shapes, embed, 1, config.hidden_size, "hidden_size", config_path);
  hf_check_size(shapes, layers + "0.mlp.gate_proj.weight", 0, config.intermediate_size, "intermediate_size",
                config_path);
  const int64_t head_dim = config.resolved_head_dim();
  hf_check_size(shapes, layers + "0.self_attn.q_proj.weight", 0, config.num_attention_heads * head_dim,
                "num_attention_heads x head_dim", config_path);
  hf_check_size(shapes, layers + "0.self_attn.k_proj.weight", 0, config.num_key_value_heads * head_dim,
                "num_key_value_heads x head_dim", config_path);
}

std::map<std::string, std::string> load_llama_weights(
    const std::string& dir, Llama& model, const std::function<void(std::size_t, std::size_t, int64_t)>& on_file) {
  const LlamaConfig& config = model->config();
  HfWeightRules rules;
  rules.on_file = on_file;
  rules.model = "a Llama with " + config.summary();
  rules.ignorable = [&config](const std::string& name) { return ignorable_tensor(name, config); };
  rules.require_finite = true;  // a diverged run saves NaN: refuse it here, not as '<pad>' answers later
  return hf_load_weights(dir, hf_weight_files(dir), model->hf_named_parameters(), rules);
}

LlamaCheckpoint load_llama_checkpoint(const std::string& dir, c10::ScalarType dtype, c10::Device device) {
  return load_llama_checkpoint_reporting(dir, dtype, device, {});
}

LlamaCheckpoint load_llama_checkpoint_reporting(const std::string& dir, c10::ScalarType dtype, c10::Device device,
                                                const std::function<void(std::size_t, std::size_t, int64_t)>& on_file) {
  hf_dtype_name(dtype, kModel);  // refuses non-floating dtypes before reading anything
  LlamaCheckpoint checkpoint;
  const std::string config_path = (fs::path(dir) / kHfConfigFile).string();
  checkpoint.config = read_llama_config(config_path);
  check_llama_checkpoint_sizes(dir, checkpoint.config, dtype);  // before anything is allocated
  checkpoint.model = Llama(checkpoint.config);
  checkpoint.model->to(device, dtype);
  checkpoint.metadata = load_llama_weights(dir, checkpoint.model, on_file);
  return checkpoint;
}

void save_llama_checkpoint(const std::string& dir, const Llama& model,
                           const std::map<std::string, std::string>& metadata) {
  const c10::ScalarType dtype = hf_save_weights(dir, model->hf_named_parameters(), metadata);
  write_file_atomically((fs::path(dir) / kHfConfigFile).string(), llama_config_json(model->config(), dtype));
}

}  // namespace namm
