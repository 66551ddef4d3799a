// Reading and writing files so that nothing is lost: inputs must be regular
// files (a FIFO or a device never hangs or floods a reader), outputs are
// written to a unique temporary in the same directory and renamed into
// place (a reader never sees a half-written file), a symlink output is
// written through to its target (never replaced by a regular file) and an
// output that is a device, a FIFO or a directory is refused. Every error
// names the file. Plain POSIX I/O; no torch here.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace namm {

/// Opens path for reading and returns the descriptor (the caller closes it).
/// Throws std::runtime_error("<path>: <problem>") when it does not exist, is a
/// directory, or is not a regular file ("is a FIFO, not a regular file"): the
/// open never blocks, so a FIFO with no writer fails at once instead of hanging.
int open_input_file(const std::string& path);

/// Throws as open_input_file does, without keeping the file open: for inputs
/// other libraries open (FFmpeg), checked before the work starts.
void check_input_file(const std::string& path);

/// Where path's bytes really go: path itself, or for a symlink (of any
/// depth, dangling or not) the final target, so an output written there
/// updates the target and keeps the link.
std::string resolve_output_path(const std::string& path);

/// Checks, before any work, that an output can be written at path: it is not
/// a directory, not an existing non-regular file (device, FIFO, socket; after
/// following symlinks), and its nearest existing ancestor directory is
/// writable. Throws std::runtime_error("<path>: <problem>").
void check_output_file(const std::string& path);

/// A fresh temporary name beside path ("<dir>/.<name>.tmp-<pid>-<n>"): unique
/// per process and call, so two writers never share one.
std::string unique_temp_path(const std::string& path);

/// Writes bytes to a unique temporary beside path (after following symlinks),
/// fsyncs it and renames it over the target. Refuses a target that exists and
/// is not a regular file. On failure removes the temporary and throws
/// std::runtime_error("<path>: <step>: <strerror>").
void write_file_atomically(const std::string& path, std::string_view bytes);

/// Same, for bytes given as consecutive pieces (header then tensor data),
/// so large payloads are written without first being joined into one string.
void write_file_atomically(const std::string& path,
                           const std::vector<std::string_view>& pieces);

/// Reads a whole regular file; throws std::runtime_error("<path>: ...") if it
/// cannot ("no such file", "is a directory", "is a FIFO, not a regular
/// file", or the system's error text).
std::string read_file(const std::string& path);

}  // namespace namm
