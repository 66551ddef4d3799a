// The plumbing every Hugging Face checkpoint directory needs, whatever the
// model: typed readers of config.json fields, the list of weight files
// (model.safetensors, or the shards model.safetensors.index.json names), the
// checked copy of their tensors into a model's named parameters, and the
// atomic save. Shared by text/llama_checkpoint, vision/llava_checkpoint and
// rl/dt_checkpoint. Every error is one line, "<file>: <problem>".
//
// Not here: what any one model's config.json means or which tensor names it
// has (those loaders); the safetensors format itself (core/safetensors.h).
//
// nlohmann::json is only forward-declared here (json_fwd.hpp): a caller that
// builds or reads JSON includes <nlohmann/json.hpp> itself.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace namm {

/// The file names inside a Hugging Face checkpoint directory.
inline constexpr char kHfWeightsFile[] = "model.safetensors";
inline constexpr char kHfIndexFile[] = "model.safetensors.index.json";
inline constexpr char kHfConfigFile[] = "config.json";

/// A model's parameters under their Hugging Face names (what hf_named_parameters() returns).
using HfNamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// Throws std::runtime_error("<path>: <message>"), the form every checkpoint error takes.
[[noreturn]] void hf_fail(const std::string& path, const std::string& message);

/// "[2, 3]" for sizes {2, 3}: how shapes are written in messages.
std::string hf_shape_text(at::IntArrayRef sizes);

/// config.json's torch_dtype name of dtype: float32, bfloat16, float16 or float64. Throws
/// std::invalid_argument("<model> checkpoints hold floating-point weights, not <dtype>") for any other.
std::string hf_dtype_name(c10::ScalarType dtype, const std::string& model);

// ---------------------------------------------------------------------------
// config.json

/// Parses text; throws "<path>: not valid JSON: <parser's message>".
nlohmann::json hf_parse_json(const std::string& text, const std::string& path);

/// hf_parse_json, and the result must be an object: throws "<path>: expected a JSON object, got <type>".
nlohmann::json hf_parse_json_object(const std::string& text, const std::string& path);

/// object[name] as an integer. Throws "<path>: required field '<name>' is missing" when it is
/// absent or null, "<path>: field '<name>' must be an integer, got <value>" when it is not one.
int64_t hf_required_int(const nlohmann::json& object, const char* name, const std::string& path);

/// object[name] as T, or fallback when it is absent or null. T is bool, int64_t, double (an
/// integer is accepted) or std::string; the definitions for these four are in hf_checkpoint.cpp.
/// where prefixes name in messages for a nested object ("vision_config."). Throws
/// "<path>: field '<where><name>' has the wrong type: <value>".
template <typename T>
T hf_field(const nlohmann::json& object, const char* name, T fallback, const std::string& path,
           const std::string& where = "");

// ---------------------------------------------------------------------------
// weights

/// One safetensors file of a checkpoint and the tensor names the index puts
/// there (empty for a lone model.safetensors: whatever it holds).
struct HfWeightFile {
  std::string path;
  std::vector<std::string> listed;
};

/// The weight files of checkpoint directory dir: dir/model.safetensors when it
/// exists (Hugging Face prefers it over an index), else the shards that
/// dir/model.safetensors.index.json's weight_map names, in order of first
/// mention. Throws naming dir when there is neither, naming the index when it
/// is not JSON, has no "weight_map" object, an entry that is not a file name or
/// no entries, and naming a shard that is not there.
std::vector<HfWeightFile> hf_weight_files(const std::string& dir);

/// Tensor name -> shape of every tensor in files, from their headers alone (no
/// data read); names pass through canonical when it is set. For checking a
/// config.json against the weights before any model is built.
std::map<std::string, std::vector<int64_t>> hf_weight_shapes(
    const std::vector<HfWeightFile>& files, const std::function<std::string(const std::string&)>& canonical = {});

/// Throws "<config_path>: field '<field>' is <declared>, but the weights hold
/// <n> layers (<prefix>0. ...)" when declared exceeds the number of distinct
/// layer indices under prefix ("model.layers."): a config that asks for a
/// model larger than its weights is refused before it is allocated.
void hf_check_layer_count(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& prefix,
                          int64_t declared, const std::string& field, const std::string& config_path);

/// Throws "<config_path>: field '<field>' is <declared>, but <tensor> has
/// size <n> in dimension <dim>" when tensor is present and disagrees; a
/// missing tensor is left to hf_load_weights.
void hf_check_size(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& tensor, size_t dim,
                   int64_t declared, const std::string& field, const std::string& config_path);

/// Refuses (core/memory_budget.h) to build a model of the weights' size in
/// dtype when that cannot fit in memory; what names the checkpoint.
void hf_check_weights_fit(const std::map<std::string, std::vector<int64_t>>& shapes, c10::ScalarType dtype,
                          const std::string& what);

/// How hf_load_weights matches a checkpoint's tensors to a model's parameters.
struct HfWeightRules {
  /// Ends the message "unexpected tensor <name> <shape> for <model>", e.g. "a Llama with <summary>".
  std::string model;
  /// Name as written -> parameter name, for checkpoints written in more than one layout; unset = the same.
  std::function<std::string(const std::string&)> canonical;
  /// Whether a tensor no parameter takes may be skipped (buffers older writers saved); gets the
  /// canonical name; unset = none may.
  std::function<bool(const std::string&)> ignorable;
  /// Parameters a checkpoint may leave out; they keep the values they have.
  std::set<std::string> optional;
  /// Refuse tensors holding NaN or Inf.
  bool require_finite = false;
  /// Called after each weight file is read: (files done, files, bytes read so
  /// far); a loader of a large sharded model prints progress from it.
  std::function<void(std::size_t done, std::size_t total, int64_t bytes)> on_file;
};

/// Copies every tensor of files into the parameter of the same (canonical)
/// name, converting it to the parameter's dtype and device; returns the
/// "__metadata__" of the first file that has one. Each tensor's shape must be
/// the parameter's (which config.json implied) and its dtype floating point;
/// a tensor the index lists must be in its file, none may come twice, and
/// every parameter outside rules.optional must be given. Errors name the file
/// and the tensor; a missing tensor names the one file, or dir when sharded.
std::map<std::string, std::string> hf_load_weights(const std::string& dir, const std::vector<HfWeightFile>& files,
                                                   const HfNamedTensors& parameters, const HfWeightRules& rules);

/// Writes parameters as dir/model.safetensors, atomically: contiguous CPU
/// copies, converted to dtype when given, with metadata plus "format": "pt"
/// (what Hugging Face's loader looks for). Creates dir first (throws
/// "<dir>: cannot create directory: ...") and then removes a stale
/// model.safetensors.index.json, which would name old shards. Returns the
/// dtype written (the last parameter's; float32 when there are none), for
/// config.json's torch_dtype. The caller writes config.json after it.
c10::ScalarType hf_save_weights(const std::string& dir, const HfNamedTensors& parameters,
                                const std::map<std::string, std::string>& metadata,
                                std::optional<c10::ScalarType> dtype = std::nullopt);

}  // namespace namm
