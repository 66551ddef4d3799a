#include "apps/command.h"

namespace namm::app {

int run_frames(const std::vector<std::string>& args) { return 0; }

}  // namespace namm::app
