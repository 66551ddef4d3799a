// Numbers read from files and metadata with errors that name where they came
// from: std::stoll's bare "stoll" tells a user nothing.
#pragma once

#include "core/printable.h"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace namm {

/// text as a whole base-10 integer; throws std::runtime_error("<what>: '<text>' is not an integer"
/// or "... is out of range") otherwise.
inline int64_t parse_int64(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end != text.c_str() + text.size() || text.find_first_of(" \t\n") != std::string::npos)
    throw std::runtime_error(what + ": '" + printable(text, 60) + "' is not an integer");
  if (errno == ERANGE) throw std::runtime_error(what + ": '" + printable(text, 60) + "' is out of range");
  return static_cast<int64_t>(value);
}

/// text as a whole finite number; throws std::runtime_error("<what>: '<text>' is not a finite number").
inline double parse_finite_double(const std::string& text, const std::string& what) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value))
    throw std::runtime_error(what + ": '" + printable(text, 60) + "' is not a finite number");
  return value;
}

}  // namespace namm
