// OfflineDataset <-> safetensors. The file is the whole contract with the
// readers (the Decision Transformer trainer): five tensors and four metadata
// strings, checked on every load so a corrupt file fails with its path.
#include "rl/offline_dataset.h"

#include "core/hf_checkpoint.h"
#include "core/safetensors.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace namm {

namespace {

/// A copy of a 1-D vector as a tensor: [n] of dtype.
template <class T>
at::Tensor to_tensor(const std::vector<T>& values, at::IntArrayRef shape, at::ScalarType dtype) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  if (!values.empty()) std::memcpy(t.data_ptr(), values.data(), values.size() * sizeof(T));
  return t;
}

/// The tensor `name` checked for dtype and shape; throws naming path.
const at::Tensor& expect_tensor(const SafetensorsFile& file, const std::string& path, const std::string& name,
                                at::ScalarType dtype, const std::vector<int64_t>& shape) {
  const auto it = file.tensors.find(name);
  if (it == file.tensors.end()) throw std::runtime_error(path + ": missing tensor '" + name + "'");
  const at::Tensor& t = it->second;
  if (t.scalar_type() != dtype) {
    throw std::runtime_error(path + ": tensor '" + name + "' has dtype " + std::string(c10::toString(t.scalar_type())) +
                             ", expected " + std::string(c10::toString(dtype)));
  }
  if (t.sizes().vec() != shape) {
    std::ostringstream s;
    s << path << ": tensor '" << name << "' has shape " << hf_shape_text(t.sizes()) << ", expected " << at::IntArrayRef(shape);
    throw std::runtime_error(s.str());
  }
  return t;
}

template <class T>
std::vector<T> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  std::vector<T> out(static_cast<size_t>(c.numel()));
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size() * sizeof(T));
  return out;
}

int64_t metadata_int(const SafetensorsFile& file, const std::string& path, const std::string& key) {
  const auto it = file.metadata.find(key);
  if (it == file.metadata.end()) throw std::runtime_error(path + ": metadata has no '" + key + "'");
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument("trailing text");
    return v;
  } catch (const std::exception&) {
    throw std::runtime_error(path + ": metadata '" + key + "' is not an integer: '" + it->second + "'");
  }
}

template <class T>
void check_length(const std::string& source, const char* name, const std::vector<T>& v, int64_t expected) {
  if (static_cast<int64_t>(v.size()) != expected) {
    throw std::runtime_error(source + ": " + name + " has " + std::to_string(v.size()) + " values, expected " +
                             std::to_string(expected));
  }
}

void check_finite(const std::string& source, const char* name, const std::vector<float>& v, int64_t row_size) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      std::ostringstream s;
      s << source << ": " << name << " holds a non-finite value (" << v[i] << ") at step " << i / row_size;
      if (row_size > 1) s << ", element " << i % row_size;
      throw std::runtime_error(s.str());
    }
  }
}

void check_flags(const std::string& source, const char* name, const std::vector<uint8_t>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] > 1) {
      throw std::runtime_error(source + ": " + name + " holds " + std::to_string(v[i]) + " at step " +
                               std::to_string(i) + ", expected 0 or 1");
    }
  }
}

}  // namespace

std::vector<EpisodeRange> OfflineDataset::episodes() const {
  std::vector<EpisodeRange> out;
  const int64_t n = size();
  EpisodeRange current;
  for (int64_t i = 0; i < n; ++i) {
    current.episode_return += rewards[i];
    const bool terminal = i < static_cast<int64_t>(terminals.size()) && terminals[i] != 0;
    const bool timeout = i < static_cast<int64_t>(timeouts.size()) && timeouts[i] != 0;
    if (terminal || timeout || i + 1 == n) {
      current.end = i + 1;
      current.terminated = terminal;
      out.push_back(current);
      current = EpisodeRange();
      current.begin = i + 1;
    }
  }
  return out;
}

void OfflineDataset::validate(const std::string& source) const {
  if (observation_size <= 0 || action_size <= 0) {
    throw std::runtime_error(source + ": observation_size " + std::to_string(observation_size) + " and action_size " +
                             std::to_string(action_size) + " must be positive");
  }
  const int64_t n = size();
  if (n <= 0) throw std::runtime_error(source + ": the dataset has no steps");
  check_length(source, "observations", observations, n * observation_size);
  check_length(source, "actions", actions, n * action_size);
  check_length(source, "terminals", terminals, n);
  check_length(source, "timeouts", timeouts, n);
  check_finite(source, "observations", observations, observation_size);
  check_finite(source, "actions", actions, action_size);
  check_finite(source, "rewards", rewards, 1);
  check_flags(source, "terminals", terminals);
  check_flags(source, "timeouts", timeouts);
}

void save_offline_dataset(const OfflineDataset& dataset, const std::string& path) {
  dataset.validate(path);
  const int64_t n = dataset.size();
  std::map<std::string, at::Tensor> tensors;
  tensors["observations"] = to_tensor(dataset.observations, {n, dataset.observation_size}, at::kFloat);
  tensors["actions"] = to_tensor(dataset.actions, {n, dataset.action_size}, at::kFloat);
  tensors["rewards"] = to_tensor(dataset.rewards, {n}, at::kFloat);
  tensors["terminals"] = to_tensor(dataset.terminals, {n}, at::kByte);
  tensors["timeouts"] = to_tensor(dataset.timeouts, {n}, at::kByte);
  const std::map<std::string, std::string> metadata = {
      {"env", dataset.env},
      {"observation_size", std::to_string(dataset.observation_size)},
      {"action_size", std::to_string(dataset.action_size)},
      {"provenance", dataset.metadata_json.empty() ? "{}" : dataset.metadata_json},
  };
  write_safetensors(path, tensors, metadata);
}

OfflineDataset load_offline_dataset(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);  // throws "<path>: ..." for missing/truncated files
  OfflineDataset d;
  const auto env = file.metadata.find("env");
  if (env == file.metadata.end()) throw std::runtime_error(path + ": metadata has no 'env'");
  d.env = env->second;
  d.observation_size = metadata_int(file, path, "observation_size");
  d.action_size = metadata_int(file, path, "action_size");
  if (d.observation_size <= 0 || d.action_size <= 0) {
    throw std::runtime_error(path + ": observation_size " + std::to_string(d.observation_size) + " and action_size " +
                             std::to_string(d.action_size) + " must be positive");
  }
  const auto provenance = file.metadata.find("provenance");
  d.metadata_json = provenance == file.metadata.end() ? "{}" : provenance->second;

  const auto rewards_it = file.tensors.find("rewards");
  if (rewards_it == file.tensors.end()) throw std::runtime_error(path + ": missing tensor 'rewards'");
  if (rewards_it->second.dim() != 1) {
    throw std::runtime_error(path + ": tensor 'rewards' has shape " + hf_shape_text(rewards_it->second.sizes()) + ", expected [N]");
  }
  const int64_t n = rewards_it->second.size(0);
  d.observations = to_vector<float>(expect_tensor(file, path, "observations", at::kFloat, {n, d.observation_size}));
  d.actions = to_vector<float>(expect_tensor(file, path, "actions", at::kFloat, {n, d.action_size}));
  d.rewards = to_vector<float>(expect_tensor(file, path, "rewards", at::kFloat, {n}));
  d.terminals = to_vector<uint8_t>(expect_tensor(file, path, "terminals", at::kByte, {n}));
  d.timeouts = to_vector<uint8_t>(expect_tensor(file, path, "timeouts", at::kByte, {n}));
  d.validate(path);
  return d;
}

}  // namespace namm
