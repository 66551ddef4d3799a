// The part of a trainer checkpoint every trainer writes the same way: each
// parameter's weights and its AdamW moments, under names a resume can find.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/optim/adamw.h>

#include <map>
#include <string>
#include <vector>

namespace namm {

/// Adds "model/NAME" (the weights) for every parameter and, for those the
/// optimizer has stepped, "adam/NAME/exp_avg", "adam/NAME/exp_avg_sq" and
/// "adam/NAME/step". parameters and names: [P], in the same order.
void add_adamw_state(torch::optim::AdamW& adamw, const std::vector<at::Tensor>& parameters,
                     const std::vector<std::string>& names, std::map<std::string, at::Tensor>& tensors);

}  // namespace namm
