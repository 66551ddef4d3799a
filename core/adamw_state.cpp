#include "core/adamw_state.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "core/hf_checkpoint.h"
#include "core/safetensors.h"

namespace namm {

void add_adamw_state(torch::optim::AdamW& adamw, const std::vector<at::Tensor>& parameters,
                     const std::vector<std::string>& names, std::map<std::string, at::Tensor>& tensors) {
  auto& states = adamw.state();
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    tensors["model/" + name] = parameters[i].detach();
    const auto it = states.find(c10::guts::to_string(parameters[i].unsafeGetTensorImpl()));
    if (it == states.end()) continue;  // before the first step, or not trained: no moments
    auto& state = static_cast<torch::optim::AdamWParamState&>(*it->second);
    tensors["adam/" + name + "/exp_avg"] = state.exp_avg();
    tensors["adam/" + name + "/exp_avg_sq"] = state.exp_avg_sq();
    tensors["adam/" + name + "/step"] = at::tensor({state.step()}, at::kLong);
  }
}

void restore_adamw_state(const SafetensorsFile& file, torch::optim::AdamW& adamw,
                         const std::vector<at::Tensor>& parameters, const std::vector<std::string>& names,
                         const std::vector<bool>& trained) {
  auto load = [&](const std::string& key, at::IntArrayRef shape) {
    const auto it = file.tensors.find(key);
    if (it == file.tensors.end()) throw std::runtime_error(file.source + ": tensor " + key + " is missing");
    if (it->second.sizes() != shape) {
      throw std::runtime_error(file.source + ": tensor " + key + " has shape " + hf_shape_text(it->second.sizes()) +
                               ", expected " + hf_shape_text(shape));
    }
    return it->second;
  };
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    at::Tensor p = parameters[i];
    p.copy_(load("model/" + name, p.sizes()));
    if (!trained.empty() && !trained[i]) continue;
    const std::string moments = "adam/" + name + "/exp_avg";
    if (file.tensors.find(moments) == file.tensors.end()) continue;  // saved before its first step
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->exp_avg(load(moments, p.sizes()).to(p.scalar_type()).clone());
    state->exp_avg_sq(load("adam/" + name + "/exp_avg_sq", p.sizes()).to(p.scalar_type()).clone());
    state->step(load("adam/" + name + "/step", {1}).item<int64_t>());
    adamw.state()[c10::guts::to_string(p.unsafeGetTensorImpl())] = std::move(state);
  }
}

void throw_if_resume_options_differ(const std::string& path, const std::vector<std::string>& mismatches) {
  if (mismatches.empty()) return;
  std::string joined;
  for (const std::string& m : mismatches) joined += (joined.empty() ? "" : "; ") + m;
  throw std::runtime_error(path + ": the checkpoint was trained with other options (" + joined +
                           "); pass the same options to resume, or another --out to start afresh");
}

}  // namespace namm
