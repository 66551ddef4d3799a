// Small helpers shared by the subcommands: parsing with Boost.Program_options
// and turning its errors into UsageError, comma-separated lists, and the
// command line as typed (for provenance records).
#pragma once

#include "apps/command.h"

#include <boost/program_options.hpp>

#include <iostream>
#include <sstream>
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

/// "a, b,,c" -> {"a", "b", "c"}: items trimmed of spaces and tabs, empty ones dropped.
inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

/// "namm COMMAND ARGS..." as typed, arguments with spaces or quotes in single quotes.
inline std::string command_line(const std::string& command, const std::vector<std::string>& args) {
  std::string out = "namm " + command;
  for (const std::string& a : args) {
    out += " ";
    out += a.find_first_of(" \t\"'") == std::string::npos ? a : "'" + a + "'";
  }
  return out;
}

}  // namespace namm::app
