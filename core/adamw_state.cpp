#include "core/adamw_state.h"

#include <ATen/ATen.h>

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

}  // namespace namm
