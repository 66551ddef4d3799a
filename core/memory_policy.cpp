#include "core/memory_policy.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace namm {

int64_t Budget::resolve(int64_t tokens_seen) const {
  int64_t keep = fraction > 0 ? static_cast<int64_t>(std::ceil(fraction * static_cast<double>(tokens_seen)))
                              : tokens;
  if (keep < 1) keep = 1;
  return keep;
}

Budget Budget::parse(const std::string& text) {
  const auto fail = [&](const char* why) {
    return std::invalid_argument("budget '" + text + "': " + why +
                                 " (expected tokens like 512, or a fraction like 25% or 0.25)");
  };
  if (text.empty()) throw fail("empty");
  std::string number = text;
  bool percent = false;
  if (number.back() == '%') {
    percent = true;
    number.pop_back();
  }
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(number, &used);
  } catch (const std::exception&) {
    throw fail("not a number");
  }
  if (used != number.size() || !std::isfinite(value)) throw fail("not a number");
  Budget budget;
  if (percent) {
    if (value <= 0 || value > 100) throw fail("percentage must be in (0, 100]");
    budget.fraction = value / 100.0;
  } else if (number.find_first_of(".eE") != std::string::npos) {
    if (value <= 0 || value > 1) throw fail("fraction must be in (0, 1]");
    budget.fraction = value;
  } else {
    if (value < 1) throw fail("token budget must be at least 1");
    budget.tokens = static_cast<int64_t>(value);
  }
  return budget;
}

std::string Budget::to_string() const {
  std::ostringstream out;
  if (fraction > 0) {
    out << fraction * 100.0 << "%";
  } else {
    out << tokens << " tokens";
  }
  return out.str();
}

}  // namespace namm
