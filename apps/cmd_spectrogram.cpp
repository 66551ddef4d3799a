#include "apps/command.h"

namespace namm::app {
int run_spectrogram(const std::vector<std::string>& args) { throw UsageError("not built yet"); }
}  // namespace namm::app
