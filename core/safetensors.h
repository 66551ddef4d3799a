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

/// One tensor as a safetensors header declares it.
struct SafetensorsEntry {
  std::string dtype;           ///< "F32", "BF16", ...
  std::vector<int64_t> shape;  ///< as declared.
};

/// A safetensors file's header alone: what it holds, without its data.
struct SafetensorsHeader {
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
  std::string source;  ///< path it was read from, for messages.
};

/// Reads and validates path's header as read_safetensors does (the same
/// errors), reading no tensor data: for checks before anything is allocated.
SafetensorsHeader read_safetensors_header(const std::string& path);

/// Reads path; supports F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL.
/// The data section is read once into one allocation and the tensors are
/// views of it (each keeps the whole allocation alive; a tensor at an offset
/// that is not a multiple of its item size is copied out instead).
/// Validates the whole header first. Throws
/// std::runtime_error("<path>: <problem>") on any malformed input: short
/// file, bad header length, header not a JSON object, bad or missing entry
/// fields, unknown dtype, byte length != numel * item size, ranges past the
/// end (truncation) or overlapping, metadata values that are not strings,
/// BOOL bytes other than 0/1. Gaps and trailing bytes are tolerated.
SafetensorsFile read_safetensors(const std::string& path);

/// Writes atomically (to path.tmp, fsync, rename): data laid out in name
/// order, header padded with spaces to a multiple of 8 bytes, "__metadata__"
/// omitted when metadata is empty. Tensors may be non-contiguous or on any
/// device (copied to contiguous CPU). Throws std::invalid_argument naming
/// path for an unsupported dtype, an undefined tensor or the name
/// "__metadata__", std::runtime_error("<path>: ...") for I/O failures.
void write_safetensors(const std::string& path,
                       const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace namm
