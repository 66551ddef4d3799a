// Writing files so that a reader never sees a half-written one, and reading
// whole files with errors that name them. Plain POSIX I/O; no torch here.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace namm {

/// Writes bytes to path.tmp (same directory), fsyncs it and renames it over
/// path. On failure removes the temporary and throws
/// std::runtime_error("<path>: <strerror>").
void write_file_atomically(const std::string& path, std::string_view bytes);

/// Same, for bytes given as consecutive pieces (header then tensor data),
/// so large payloads are written without first being joined into one string.
void write_file_atomically(const std::string& path,
                           const std::vector<std::string_view>& pieces);

/// Reads a whole file; throws std::runtime_error("<path>: ...") if it cannot
/// ("no such file", "is a directory", or the system's error text).
std::string read_file(const std::string& path);

}  // namespace namm
