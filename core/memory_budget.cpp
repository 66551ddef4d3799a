// memory_budget: see memory_budget.h
#include "core/memory_budget.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace namm {

double available_memory_bytes() {
  double available = -1.0, swap_free = 0.0;
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    double kb = 0.0;
    fields >> key >> kb;
    if (key == "MemAvailable:") available = kb * 1024.0;
    if (key == "SwapFree:") swap_free = kb * 1024.0;
  }
  if (available >= 0.0) available += swap_free;
  if (const char* limit = std::getenv("NAMM_MEMORY_LIMIT")) {
    char* end = nullptr;
    const double cap = std::strtod(limit, &end);
    if (end != limit && cap > 0.0) available = available < 0.0 ? cap : std::min(available, cap);
  }
  return available;
}

std::string format_bytes(double bytes) {
  if (!std::isfinite(bytes)) return "more than can be counted";
  char text[64];
  if (bytes >= 1e15) std::snprintf(text, sizeof(text), "%.3g PB", bytes / 1e15);
  else if (bytes >= 1e12) std::snprintf(text, sizeof(text), "%.3g TB", bytes / 1e12);
  else if (bytes >= 1e9) std::snprintf(text, sizeof(text), "%.3g GB", bytes / 1e9);
  else if (bytes >= 1e6) std::snprintf(text, sizeof(text), "%.3g MB", bytes / 1e6);
  else if (bytes >= 1e3) std::snprintf(text, sizeof(text), "%.3g KB", bytes / 1e3);
  else std::snprintf(text, sizeof(text), "%.0f bytes", bytes);
  return text;
}

void require_memory(double bytes, const std::string& what) {
  const double available = available_memory_bytes();
  if (std::isnan(bytes) || (available >= 0.0 && !(bytes <= available))) {
    throw std::runtime_error(what + " needs about " + format_bytes(bytes) + " of memory, " +
                             (available >= 0.0 ? format_bytes(available) : std::string("less")) + " is available");
  }
}

}  // namespace namm
