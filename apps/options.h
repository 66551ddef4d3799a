// Small helpers shared by the subcommands: parsing with Boost.Program_options
// and turning its errors into UsageError.
#pragma once

#include "apps/command.h"

#include <boost/program_options.hpp>

#include <iostream>
#include <string>
#include <vector>

namespace namm::app {

namespace po = boost::program_options;

/// Parses args against options; prints help and returns false on --help.
/// Throws UsageError for unknown options, missing required ones, bad values.
inline bool parse_options(const std::string& command, const std::string& usage,
                          po::options_description& options,
                          const std::vector<std::string>& args, po::variables_map& vm) {
  options.add_options()("help,h", "show this help");
  try {
    po::store(po::command_line_parser(args).options(options).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: namm " << command << " " << usage << "\n\n" << options << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return true;
}

}  // namespace namm::app
