// dt_checkpoint: see dt_checkpoint.h
#include "rl/dt_checkpoint.h"

#include "core/atomic_file.h"
#include "core/hf_checkpoint.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <stdexcept>

namespace namm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kSidecarFile[] = "dt_sidecar.json";

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// GPT-2 causal-mask buffers older transformers versions saved with the weights
bool ignorable_tensor(const std::string& name) {
  return name.rfind("encoder.h.", 0) == 0 && (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias"));
}

std::vector<double> number_list(const json& value, const char* field, const std::string& source) {
  if (!value.is_array()) {
    hf_fail(source, std::string("field '") + field + "' must be a list of numbers, got " + value.dump());
  }
  std::vector<double> out;
  for (const json& item : value) {
    if (!item.is_number()) hf_fail(source, std::string("field '") + field + "' holds a non-number: " + item.dump());
    out.push_back(item.get<double>());
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// sidecar

void DtSidecar::validate(int64_t state_dim, const std::string& source) const {
  if (!state_mean.empty() && static_cast<int64_t>(state_mean.size()) != state_dim) {
    hf_fail(source, "state_mean has " + std::to_string(state_mean.size()) + " values, the model's state_dim is " +
                        std::to_string(state_dim));
  }
  if (!state_std.empty() && static_cast<int64_t>(state_std.size()) != state_dim) {
    hf_fail(source, "state_std has " + std::to_string(state_std.size()) + " values, the model's state_dim is " +
                        std::to_string(state_dim));
  }
  for (size_t i = 0; i < state_mean.size(); ++i) {
    if (!std::isfinite(state_mean[i])) hf_fail(source, "state_mean[" + std::to_string(i) + "] is not finite");
  }
  for (size_t i = 0; i < state_std.size(); ++i) {
    if (!(state_std[i] > 0) || !std::isfinite(state_std[i])) {
      hf_fail(source, "state_std[" + std::to_string(i) + "] must be finite and > 0, got " +
                          std::to_string(state_std[i]));
    }
  }
  if (!(return_scale > 0) || !std::isfinite(return_scale)) {
    hf_fail(source, "return_scale must be finite and > 0, got " + std::to_string(return_scale));
  }
  if (!std::isfinite(target_return)) hf_fail(source, "target_return is not finite");
  if (context < 1) hf_fail(source, "context must be >= 1, got " + std::to_string(context));
}

at::Tensor DtSidecar::normalize(const at::Tensor& observations) const {
  const auto options = at::TensorOptions().dtype(at::kDouble);
  at::Tensor x = observations.to(at::kFloat);
  if (!state_mean.empty()) {
    x = x - at::tensor(state_mean, options).to(x.device(), at::kFloat);
  }
  if (!state_std.empty()) {
    x = x / at::tensor(state_std, options).to(x.device(), at::kFloat);
  }
  return x;
}

std::string DtSidecar::to_json() const {
  json provenance;
  try {
    provenance = json::parse(provenance_json);
  } catch (const json::exception&) {
    provenance = provenance_json;  // keep it as text rather than lose it
  }
  const json out = {{"format", "namm-dt-sidecar"},
                    {"version", 1},
                    {"env", env},
                    {"state_mean", state_mean},
                    {"state_std", state_std},
                    {"return_scale", return_scale},
                    {"target_return", target_return},
                    {"context", context},
                    {"provenance", provenance}};
  return out.dump(2) + "\n";
}

DtSidecar DtSidecar::from_json(const std::string& text, const std::string& source) {
  const json in = hf_parse_json(text, source);
  if (!in.is_object()) hf_fail(source, "expected a JSON object");
  DtSidecar out;
  out.env = hf_field<std::string>(in, "env", "", source);
  if (in.contains("state_mean") && !in["state_mean"].is_null()) out.state_mean = number_list(in["state_mean"], "state_mean", source);
  if (in.contains("state_std") && !in["state_std"].is_null()) out.state_std = number_list(in["state_std"], "state_std", source);
  out.return_scale = hf_field<double>(in, "return_scale", out.return_scale, source);
  out.target_return = hf_field<double>(in, "target_return", out.target_return, source);
  out.context = hf_field<int64_t>(in, "context", out.context, source);
  if (in.contains("provenance")) {
    out.provenance_json = in["provenance"].is_string() ? in["provenance"].get<std::string>() : in["provenance"].dump();
  }
  return out;
}

double default_target_return(const std::string& env) {
  if (env == "hopper") return 3600.0;
  if (env == "walker2d") return 5000.0;
  throw std::invalid_argument("no default target return for env '" + env + "' (hopper: 3600, walker2d: 5000)");
}

// ---------------------------------------------------------------------------
// config

DtConfig parse_dt_config(const std::string& json_text, const std::string& path) {
  const json config = hf_parse_json_object(json_text, path);
  const std::string model_type = hf_field<std::string>(config, "model_type", "decision_transformer", path);
  if (model_type != "decision_transformer") {
    hf_fail(path, "model_type '" + model_type + "' is not a Decision Transformer (expected decision_transformer)");
  }
  if (hf_field<bool>(config, "add_cross_attention", false, path)) {
    hf_fail(path, "add_cross_attention true is not supported (the Decision Transformer has no encoder to attend to)");
  }
  DtConfig out;
  out.state_dim = hf_required_int(config, "state_dim", path);
  out.act_dim = hf_required_int(config, "act_dim", path);
  out.hidden_size = hf_required_int(config, "hidden_size", path);
  out.max_ep_len = hf_field<int64_t>(config, "max_ep_len", out.max_ep_len, path);
  out.action_tanh = hf_field<bool>(config, "action_tanh", out.action_tanh, path);
  out.vocab_size = hf_field<int64_t>(config, "vocab_size", out.vocab_size, path);
  out.n_positions = hf_field<int64_t>(config, "n_positions", out.n_positions, path);
  out.n_layer = hf_field<int64_t>(config, "n_layer", out.n_layer, path);
  out.n_head = hf_field<int64_t>(config, "n_head", out.n_head, path);
  out.n_inner = hf_field<int64_t>(config, "n_inner", 0, path);
  out.activation_function = hf_field<std::string>(config, "activation_function", out.activation_function, path);
  out.resid_pdrop = hf_field<double>(config, "resid_pdrop", out.resid_pdrop, path);
  out.embd_pdrop = hf_field<double>(config, "embd_pdrop", out.embd_pdrop, path);
  out.attn_pdrop = hf_field<double>(config, "attn_pdrop", out.attn_pdrop, path);
  out.layer_norm_epsilon = hf_field<double>(config, "layer_norm_epsilon", out.layer_norm_epsilon, path);
  out.initializer_range = hf_field<double>(config, "initializer_range", out.initializer_range, path);
  out.scale_attn_weights = hf_field<bool>(config, "scale_attn_weights", out.scale_attn_weights, path);
  out.scale_attn_by_inverse_layer_idx =
      hf_field<bool>(config, "scale_attn_by_inverse_layer_idx", out.scale_attn_by_inverse_layer_idx, path);
  // reorder_and_upcast_attn only changes mixed-precision rounding; in float32 it is the same math
  try {
    out.validate();
  } catch (const std::invalid_argument& e) {
    hf_fail(path, e.what());
  }
  return out;
}

std::string dt_config_json(const DtConfig& config) {
  const json out = {{"architectures", {"DecisionTransformerModel"}},
                    {"model_type", "decision_transformer"},
                    {"state_dim", config.state_dim},
                    {"act_dim", config.act_dim},
                    {"hidden_size", config.hidden_size},
                    {"max_ep_len", config.max_ep_len},
                    {"action_tanh", config.action_tanh},
                    {"vocab_size", config.vocab_size},
                    {"n_positions", config.n_positions},
                    {"n_layer", config.n_layer},
                    {"n_head", config.n_head},
                    {"n_inner", config.n_inner > 0 ? json(config.n_inner) : json(nullptr)},
                    {"activation_function", config.activation_function},
                    {"resid_pdrop", config.resid_pdrop},
                    {"embd_pdrop", config.embd_pdrop},
                    {"attn_pdrop", config.attn_pdrop},
                    {"layer_norm_epsilon", config.layer_norm_epsilon},
                    {"initializer_range", config.initializer_range},
                    {"scale_attn_weights", config.scale_attn_weights},
                    {"scale_attn_by_inverse_layer_idx", config.scale_attn_by_inverse_layer_idx},
                    {"reorder_and_upcast_attn", false},
                    {"add_cross_attention", false},
                    {"use_cache", true},
                    {"torch_dtype", "float32"}};
  return out.dump(2) + "\n";
}

// ---------------------------------------------------------------------------
// weights

std::map<std::string, std::string> load_dt_weights(const std::string& path, DecisionTransformer& model) {
  if (!fs::exists(path)) {
    const fs::path pickle = fs::path(path).parent_path() / "pytorch_model.bin";
    if (fs::exists(pickle)) {
      hf_fail(path, "not found; pytorch_model.bin (a Python pickle) is not read: convert it with "
                    "safetensors.torch.save_file(torch.load(f), 'model.safetensors', {'format': 'pt'})");
    }
    hf_fail(path, "not found");
  }
  HfWeightRules rules;
  rules.model = "a Decision Transformer with " + model->config().summary();
  rules.ignorable = ignorable_tensor;
  rules.require_finite = true;  // a diverged training run saves NaN: refuse it here, not mid-rollout
  return hf_load_weights(path, {{path, {}}}, model->hf_named_parameters(), rules);  // one file: errors name path
}

DtCheckpoint load_dt_checkpoint(const std::string& dir, c10::Device device) {
  if (!fs::is_directory(dir)) hf_fail(dir, "not a checkpoint directory");
  DtCheckpoint out;
  const std::string config_path = (fs::path(dir) / kHfConfigFile).string();
  out.config = parse_dt_config(read_file(config_path), config_path);
  {
    // config.json's sizes against the weights' header, before anything is allocated
    const std::string weights = (fs::path(dir) / kHfWeightsFile).string();
    if (fs::exists(weights)) {
      const auto shapes = hf_weight_shapes({{weights, {}}});
      hf_check_layer_count(shapes, "encoder.h.", out.config.n_layer, "n_layer", config_path);
      hf_check_size(shapes, "embed_state.weight", 1, out.config.state_dim, "state_dim", config_path);
      hf_check_size(shapes, "embed_state.weight", 0, out.config.hidden_size, "hidden_size", config_path);
      hf_check_size(shapes, "embed_timestep.weight", 0, out.config.max_ep_len, "max_ep_len", config_path);
      hf_check_weights_fit(shapes, c10::kFloat, dir + ": the model");
    }
  }
  out.model = DecisionTransformer(out.config);
  out.metadata = load_dt_weights((fs::path(dir) / kHfWeightsFile).string(), out.model);
  out.model->to(device);
  const fs::path sidecar = fs::path(dir) / kSidecarFile;
  if (fs::exists(sidecar)) {
    out.sidecar = DtSidecar::from_json(read_file(sidecar.string()), sidecar.string());
    out.sidecar.validate(out.config.state_dim, sidecar.string());
    out.has_sidecar = true;
  }
  return out;
}

void save_dt_checkpoint(const std::string& dir, const DecisionTransformer& model, const DtSidecar& sidecar,
                        const std::map<std::string, std::string>& metadata) {
  sidecar.validate(model->config().state_dim, (fs::path(dir) / kSidecarFile).string());
  hf_save_weights(dir, model->hf_named_parameters(), metadata, c10::kFloat);
  write_file_atomically((fs::path(dir) / kHfConfigFile).string(), dt_config_json(model->config()));
  write_file_atomically((fs::path(dir) / kSidecarFile).string(), sidecar.to_json());
}

}  // namespace namm
