// Reading and writing safetensors files (the Hugging Face checkpoint format):
// 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, an optional "__metadata__" map of strings,
// then the raw little-endian data. Every malformed file fails with one
// message naming the file and the problem.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace namm {

/// A safetensors file in memory: named CPU tensors plus string metadata.
struct SafetensorsFile {
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, std::string> metadata;

  /// The tensor called name; throws naming the file and the tensor when missing.
  const at::Tensor& at(const std::string& name) const;
  std::string source;  ///< path it was read from, for messages.
};

/// Reads path; supports F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL.
/// Throws std::runtime_error("<path>: <problem>") on any malformed input.
SafetensorsFile read_safetensors(const std::string& path);

/// Writes atomically (to path.tmp, fsync, rename), tensors in name order.
void write_safetensors(const std::string& path,
                       const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace namm
