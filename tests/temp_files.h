// Whether a failed or abandoned write left its temporary behind: outputs are
// written to a unique temporary beside them (core/atomic_file.h
// unique_temp_path: ".<name>.tmp-<pid>-<n>") and renamed into place.
#pragma once

#include <filesystem>
#include <string>

namespace namm::test_support {

/// True when a temporary of path exists beside it (any process's, any counter).
inline bool has_temporary(const std::string& path) {
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  const std::string prefix = "." + target.filename().string() + ".tmp-";
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) return false;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.path().filename().string().rfind(prefix, 0) == 0) return true;
  }
  return false;
}

}  // namespace namm::test_support
