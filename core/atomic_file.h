// Writing files so that a reader never sees a half-written one.
#pragma once

#include <string>
#include <string_view>

namespace namm {

/// Writes bytes to path.tmp, flushes it to disk and renames it over path.
/// On failure removes the temporary and throws std::runtime_error naming path.
void write_file_atomically(const std::string& path, std::string_view bytes);

/// Reads a whole file; throws std::runtime_error("<path>: ...") if it cannot.
std::string read_file(const std::string& path);

}  // namespace namm
