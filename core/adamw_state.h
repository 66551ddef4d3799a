// The part of a trainer checkpoint every trainer writes and reads the same
// way: each parameter's weights and its AdamW moments, under names a resume
// can find.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/optim/adamw.h>

#include <map>
#include <string>
#include <vector>

namespace namm {

struct SafetensorsFile;

/// Adds "model/NAME" (the weights) for every parameter and, for those the
/// optimizer has stepped, "adam/NAME/exp_avg", "adam/NAME/exp_avg_sq" and
/// "adam/NAME/step". parameters and names: [P], in the same order.
void add_adamw_state(torch::optim::AdamW& adamw, const std::vector<at::Tensor>& parameters,
                     const std::vector<std::string>& names, std::map<std::string, at::Tensor>& tensors);

/// The inverse of add_adamw_state: copies "model/NAME" into every parameter
/// and gives the optimizer the saved moments of those that have them (a
/// parameter saved before its first step has none and starts fresh).
/// trained, if not empty ([P]), marks the parameters the optimizer updates;
/// the others get their weights only. Throws std::runtime_error naming
/// file.source and the tensor when a weight is missing or a tensor has the
/// wrong shape.
void restore_adamw_state(const SafetensorsFile& file, torch::optim::AdamW& adamw,
                         const std::vector<at::Tensor>& parameters, const std::vector<std::string>& names,
                         const std::vector<bool>& trained = {});

/// Throws std::runtime_error("<path>: the checkpoint was trained with other
/// options (...)") listing mismatches, when there are any: the one message
/// every trainer gives when a resume is asked with different options.
void throw_if_resume_options_differ(const std::string& path, const std::vector<std::string>& mismatches);

}  // namespace namm
