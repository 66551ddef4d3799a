// NumPy .npy files (format versions 1.0-3.0), for exchanging arrays with
// Python tools. Little-endian float32/float64/int64/int32, C order.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace namm {

/// Reads path into a CPU tensor; throws std::runtime_error("<path>: <problem>").
at::Tensor read_npy(const std::string& path);

/// Writes a contiguous CPU tensor atomically (path.tmp then rename).
void write_npy(const std::string& path, const at::Tensor& tensor);

}  // namespace namm
