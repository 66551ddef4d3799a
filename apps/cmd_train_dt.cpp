#include "apps/command.h"

namespace namm::app {

int run_train_dt(const std::vector<std::string>& args) { return 0; }

}  // namespace namm::app
