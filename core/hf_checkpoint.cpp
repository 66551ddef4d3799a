// hf_checkpoint: see hf_checkpoint.h
#include "core/hf_checkpoint.h"

#include "core/atomic_file.h"
#include "core/memory_budget.h"
#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <type_traits>

namespace namm {

namespace fs = std::filesystem;
using json = nlohmann::json;

[[noreturn]] void hf_fail(const std::string& path, const std::string& message) {
  throw std::runtime_error(path + ": " + message);
}

std::string hf_shape_text(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

std::string hf_dtype_name(c10::ScalarType dtype, const std::string& model) {
  switch (dtype) {
    case c10::kFloat: return "float32";
    case c10::kBFloat16: return "bfloat16";
    case c10::kHalf: return "float16";
    case c10::kDouble: return "float64";
    default:
      throw std::invalid_argument(model + " checkpoints hold floating-point weights, not " + c10::toString(dtype));
  }
}

// ---------------------------------------------------------------------------
// config.json

json hf_parse_json(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    hf_fail(path, std::string("not valid JSON: ") + e.what());
  }
}

json hf_parse_json_object(const std::string& text, const std::string& path) {
  json parsed = hf_parse_json(text, path);
  if (!parsed.is_object()) hf_fail(path, "expected a JSON object, got " + std::string(parsed.type_name()));
  return parsed;
}

int64_t hf_required_int(const json& object, const char* name, const std::string& path) {
  if (!object.contains(name) || object[name].is_null()) {
    hf_fail(path, std::string("required field '") + name + "' is missing");
  }
  if (!object[name].is_number_integer()) {
    hf_fail(path, std::string("field '") + name + "' must be an integer, got " + object[name].dump());
  }
  return object[name].get<int64_t>();
}

template <typename T>
T hf_field(const json& object, const char* name, T fallback, const std::string& path, const std::string& where) {
  if (!object.contains(name) || object[name].is_null()) return fallback;
  const json& value = object[name];
  bool ok = false;
  if constexpr (std::is_same_v<T, bool>) {
    ok = value.is_boolean();  // first: bool is an integral type too
  } else if constexpr (std::is_integral_v<T>) {
    ok = value.is_number_integer();
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = value.is_number();
  } else {
    ok = value.is_string();
  }
  if (!ok) hf_fail(path, "field '" + where + name + "' has the wrong type: " + value.dump());
  return value.get<T>();
}

// the four types config.json fields are read as (the header promises exactly these)
template bool hf_field<bool>(const json&, const char*, bool, const std::string&, const std::string&);
template int64_t hf_field<int64_t>(const json&, const char*, int64_t, const std::string&, const std::string&);
template double hf_field<double>(const json&, const char*, double, const std::string&, const std::string&);
template std::string hf_field<std::string>(const json&, const char*, std::string, const std::string&,
                                           const std::string&);

// ---------------------------------------------------------------------------
// weights

std::map<std::string, std::vector<int64_t>> hf_weight_shapes(
    const std::vector<HfWeightFile>& files, const std::function<std::string(const std::string&)>& canonical) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const HfWeightFile& file : files) {
    for (const auto& [name, entry] : read_safetensors_header(file.path).tensors) {
      out[canonical ? canonical(name) : name] = entry.shape;
    }
  }
  return out;
}

void hf_check_layer_count(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& prefix,
                          int64_t declared, const std::string& field, const std::string& config_path) {
  std::set<int64_t> layers;
  for (const auto& [name, shape] : shapes) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t dot = name.find('.', prefix.size());
    const std::string index = name.substr(prefix.size(), dot - prefix.size());
    if (index.empty() || index.size() > 9 || index.find_first_not_of("0123456789") != std::string::npos) continue;
    layers.insert(std::stoll(index));
  }
  const int64_t present = static_cast<int64_t>(layers.size());
  if (declared > present) {
    hf_fail(config_path, "field '" + field + "' is " + std::to_string(declared) + ", but the weights hold " +
                             std::to_string(present) + " layers (" + prefix + "N.*)");
  }
}

void hf_check_size(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& tensor, size_t dim,
                   int64_t declared, const std::string& field, const std::string& config_path) {
  const auto it = shapes.find(tensor);
  if (it == shapes.end() || it->second.size() <= dim || it->second[dim] == declared) return;
  hf_fail(config_path, "field '" + field + "' is " + std::to_string(declared) + ", but " + tensor + " has size " +
                           std::to_string(it->second[dim]) + " in dimension " + std::to_string(dim) + " (shape " +
                           hf_shape_text(it->second) + ")");
}

void hf_check_weights_fit(const std::map<std::string, std::vector<int64_t>>& shapes, c10::ScalarType dtype,
                          const std::string& what) {
  double values = 0.0;
  for (const auto& [name, shape] : shapes) {
    double n = 1.0;
    for (int64_t d : shape) n *= static_cast<double>(d);
    values += n;
  }
  require_memory(values * static_cast<double>(c10::elementSize(dtype)), what);
}

std::vector<HfWeightFile> hf_weight_files(const std::string& dir) {
  std::vector<HfWeightFile> files;
  const fs::path single = fs::path(dir) / kHfWeightsFile;
  const fs::path index = fs::path(dir) / kHfIndexFile;
  if (fs::exists(single)) {
    files.push_back({single.string(), {}});
    return files;
  }
  if (!fs::exists(index)) {
    hf_fail(dir, std::string("no ") + kHfWeightsFile + " or " + kHfIndexFile + " in the checkpoint directory");
  }
  const json parsed = hf_parse_json(read_file(index.string()), index.string());
  if (!parsed.is_object() || !parsed.contains("weight_map") || !parsed["weight_map"].is_object()) {
    hf_fail(index.string(), "no \"weight_map\" object");
  }
  std::map<std::string, size_t> slot;  // shard path -> position in files
  for (const auto& [name, file] : parsed["weight_map"].items()) {
    if (!file.is_string()) {
      hf_fail(index.string(), "weight_map entry for " + name + " is not a file name: " + file.dump());
    }
    const std::string shard = (fs::path(dir) / file.get<std::string>()).string();
    auto [it, fresh] = slot.emplace(shard, files.size());
    if (fresh) files.push_back({shard, {}});
    files[it->second].listed.push_back(name);
  }
  if (files.empty()) hf_fail(index.string(), "weight_map is empty");
  for (const HfWeightFile& shard : files) {
    if (!fs::exists(shard.path)) {
      hf_fail(shard.path, "shard not found (listed in " + index.string() + " for " +
                              std::to_string(shard.listed.size()) + " tensors, e.g. " + shard.listed.front() + ")");
    }
  }
  return files;
}

std::map<std::string, std::string> hf_load_weights(const std::string& dir, const std::vector<HfWeightFile>& files,
                                                   const HfNamedTensors& parameters, const HfWeightRules& rules) {
  std::map<std::string, at::Tensor> expected(parameters.begin(), parameters.end());  // name -> parameter
  std::map<std::string, std::string> source;  // parameter name -> the name it was written as
  std::map<std::string, std::string> metadata;
  at::NoGradGuard no_grad;
  int64_t bytes_read = 0;
  std::size_t files_done = 0;
  for (const HfWeightFile& weights : files) {
    const std::string& path = weights.path;
    const SafetensorsFile file = read_safetensors(path);
    for (const auto& [name, tensor] : file.tensors) bytes_read += static_cast<int64_t>(tensor.nbytes());
    if (metadata.empty()) metadata = file.metadata;
    for (const std::string& name : weights.listed) {
      if (!file.tensors.count(name)) hf_fail(path, "tensor " + name + " listed in " + kHfIndexFile + " is missing");
    }
    for (const auto& [name, tensor] : file.tensors) {
      const std::string canonical = rules.canonical ? rules.canonical(name) : name;
      auto it = expected.find(canonical);
      if (it == expected.end()) {
        if (rules.ignorable && rules.ignorable(canonical)) continue;
        hf_fail(path, "unexpected tensor " + name + " " + hf_shape_text(tensor.sizes()) + " for " + rules.model);
      }
      at::Tensor& parameter = it->second;
      if (tensor.sizes() != parameter.sizes()) {
        hf_fail(path, "tensor " + name + " has shape " + hf_shape_text(tensor.sizes()) + " but " + kHfConfigFile +
                          " implies " + hf_shape_text(parameter.sizes()));
      }
      if (!at::isFloatingType(tensor.scalar_type())) {
        hf_fail(path, "tensor " + name + " has dtype " + c10::toString(tensor.scalar_type()) +
                          ", expected floating point");
      }
      if (rules.require_finite && !at::isfinite(tensor).all().item<bool>()) {
        hf_fail(path, "tensor " + name + " holds NaN or Inf");
      }
      // a name twice means two shards; two names for one parameter means two layouts mixed
      auto [previous, fresh] = source.emplace(canonical, name);
      if (!fresh && previous->second == name) hf_fail(path, "tensor " + name + " appears in more than one file");
      if (!fresh) hf_fail(path, "tensor " + name + " is given twice (also as " + previous->second + ")");
      parameter.copy_(tensor);  // converts bf16/f16 to the model's dtype and device
    }
    if (rules.on_file) rules.on_file(++files_done, files.size(), bytes_read);
  }
  for (const auto& [name, parameter] : expected) {
    if (source.count(name) || rules.optional.count(name)) continue;
    hf_fail(files.size() == 1 ? files.front().path : dir,
            "missing tensor " + name + " (expected shape " + hf_shape_text(parameter.sizes()) + ")");
  }
  return metadata;
}

c10::ScalarType hf_save_weights(const std::string& dir, const HfNamedTensors& parameters,
                                const std::map<std::string, std::string>& metadata,
                                std::optional<c10::ScalarType> dtype) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) hf_fail(dir, "cannot create directory: " + error.message());
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> tensors;
  c10::ScalarType written = c10::kFloat;
  for (const auto& [name, parameter] : parameters) {
    at::Tensor tensor = parameter.detach().to(at::kCPU);
    if (dtype) tensor = tensor.to(*dtype);
    tensors[name] = tensor.contiguous();
    written = tensor.scalar_type();
  }
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";  // what Hugging Face's loader looks for
  write_safetensors((fs::path(dir) / kHfWeightsFile).string(), tensors, meta);
  fs::remove(fs::path(dir) / kHfIndexFile, error);  // a stale index would name old shards
  return written;
}

}  // namespace namm
