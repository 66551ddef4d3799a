#include "apps/command.h"

namespace namm::app {

int run_gen_data(const std::vector<std::string>& args) { return 0; }

}  // namespace namm::app
