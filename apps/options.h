// Small helpers shared by the subcommands: parsing with Boost.Program_options
// and turning its errors into UsageError, comma-separated lists, and the
// command line as typed (for provenance records).
#pragma once

#include "apps/command.h"
#include "core/policy_registry.h"
#include "core/run_lock.h"

#include <boost/program_options.hpp>

#include <algorithm>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <utility>
#include <sstream>
#include <string>
#include <vector>

namespace namm::app {

namespace po = boost::program_options;

/// Refuses values no option means: NaN, infinity or a magnitude beyond
/// float32 for any number, a negative --delay or --stop-after (0 is each
/// one's "default" value).
inline void check_option_values(const po::variables_map& vm) {
  for (const auto& [name, value] : vm) {
    const boost::any& any = value.value();
    double number = 0.0;
    bool is_number = false;
    if (const double* d = boost::any_cast<double>(&any)) number = *d, is_number = true;
    if (const float* f = boost::any_cast<float>(&any)) number = *f, is_number = true;
    char shown[32];
    std::snprintf(shown, sizeof(shown), "%g", number);
    if (is_number && !value.defaulted() && !std::isfinite(number)) {
      throw UsageError("--" + name + " must be a finite number, got " + shown);
    }
    // tensors hold float32: a larger magnitude would fail deep in LibTorch, unnamed
    if (is_number && !value.defaulted() && std::fabs(number) > 3.4e38) {
      throw UsageError("--" + name + " is outside the float32 range (|x| <= 3.4e38), got " + shown);
    }
    if (name == "delay" || name == "stop-after") {
      long long integer = 0;
      if (const int* i = boost::any_cast<int>(&any)) integer = *i;
      if (const int64_t* i = boost::any_cast<int64_t>(&any)) integer = *i;
      if (integer < 0) throw UsageError("--" + name + " must be >= 0, got " + std::to_string(integer));
    }
  }
}

/// Parses args against options; prints help and returns false on --help.
/// Throws UsageError for unknown options, missing required ones, bad values.
inline bool parse_options(const std::string& command, const std::string& usage,
                          po::options_description& options,
                          const std::vector<std::string>& args, po::variables_map& vm) {
  options.add_options()("help,h", "show this help");
  try {
    const po::parsed_options parsed = po::command_line_parser(args).options(options).run();
    for (const po::option& option : parsed.options) {
      // a stray word ("train-lm --steps 2 100") is a mistake, never silently ignored
      if (option.position_key >= 0 || option.string_key.empty()) {
        throw UsageError("unexpected argument '" +
                         (option.original_tokens.empty() ? std::string() : option.original_tokens[0]) +
                         "' (every value belongs to an option)");
      }
      // "--out --steps 4" would train into ./--steps
      for (const std::string& value : option.value) {
        if (value.size() > 2 && value.compare(0, 2, "--") == 0 &&
            options.find_nothrow(value.substr(2, value.find('=') == std::string::npos ? std::string::npos
                                                                                        : value.find('=') - 2),
                                 false) != nullptr) {
          throw UsageError("--" + option.string_key + " needs a value, got the option name '" + value + "'");
        }
      }
    }
    po::store(parsed, vm);
    if (vm.count("help")) {
      std::cout << "usage: namm " << command << " " << usage << "\n\n" << options << "\n";
      return false;
    }
    check_option_values(vm);  // before notify: a bad value is named even when a required option is missing
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return true;
}

/// The output files of a command, checked and locked before any work (empty
/// paths are options not given): a bad or busy path fails now, naming its
/// option, not after the run. Keep the result alive until the outputs are written.
/// (main() escapes control bytes in every message, these included.)
inline std::vector<std::unique_ptr<FileLock>> claim_outputs(
    const std::vector<std::pair<std::string, std::string>>& option_and_path) {
  std::vector<std::unique_ptr<FileLock>> locks;
  for (const auto& [option, path] : option_and_path) {
    if (path.empty()) continue;
    try {
      locks.push_back(lock_output_file(path, option));
    } catch (const std::runtime_error& e) {
      throw UsageError(e.what());
    }
  }
  return locks;
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

/// The policy names as a user reads them: "full, namm, h2o, ..." (from the registry).
inline std::string policy_choices() {
  std::string joined;
  for (const std::string& name : policy_names()) joined += (joined.empty() ? "" : ", ") + name;
  return joined;
}

/// --memory names a policy of the registry, else a UsageError listing them.
inline void check_policy_name(const std::string& memory) {
  const std::vector<std::string>& names = policy_names();
  if (std::find(names.begin(), names.end(), memory) == names.end()) {
    throw UsageError("--memory: unknown policy '" + memory + "' (choose from: " + policy_choices() + ")");
  }
}

/// The baselines' knobs every command that runs one policy offers, into spec.
inline void add_policy_tuning_options(po::options_description& options, PolicySpec& spec) {
  // clang-format off
  options.add_options()
      ("sinks", po::value(&spec.sinks)->default_value(spec.sinks), "StreamingLLM sink tokens")
      ("h2o-recent-share", po::value(&spec.h2o_recent_share)->default_value(spec.h2o_recent_share), "H2O share of the budget kept for recent tokens")
      ("obs-window", po::value(&spec.window.window)->default_value(spec.window.window), "SnapKV, PyramidKV, AdaKV: the last queries whose attention scores the tokens (kept themselves)")
      ("pool-kernel", po::value(&spec.window.kernel)->default_value(spec.window.kernel), "SnapKV, PyramidKV, AdaKV: average-pooling width over neighbouring tokens (odd; 1 = none)")
      ("pyramid-beta", po::value(&spec.pyramid_beta)->default_value(spec.pyramid_beta), "PyramidKV: largest over smallest layer budget beyond the window (>= 1)")
      ("adakv-floor", po::value(&spec.adakv_floor_share)->default_value(spec.adakv_floor_share), "AdaKV: share of the budget every head keeps whatever the ranking");
  // clang-format on
}

/// Refuses tuning values no policy accepts, naming the option.
inline void check_policy_tuning(const PolicySpec& spec) {
  if (spec.sinks < 0) throw UsageError("--sinks must be >= 0, got " + std::to_string(spec.sinks));
  if (!(spec.h2o_recent_share >= 0 && spec.h2o_recent_share <= 1)) {
    throw UsageError("--h2o-recent-share must be in [0, 1], got " + std::to_string(spec.h2o_recent_share));
  }
  if (spec.window.window < 1) throw UsageError("--obs-window must be >= 1, got " + std::to_string(spec.window.window));
  if (spec.window.kernel < 1 || spec.window.kernel % 2 == 0) {
    throw UsageError("--pool-kernel must be odd and >= 1, got " + std::to_string(spec.window.kernel));
  }
  if (!(spec.pyramid_beta >= 1)) throw UsageError("--pyramid-beta must be >= 1, got " + std::to_string(spec.pyramid_beta));
  if (!(spec.adakv_floor_share >= 0 && spec.adakv_floor_share <= 1)) {
    throw UsageError("--adakv-floor must be in [0, 1], got " + std::to_string(spec.adakv_floor_share));
  }
}

}  // namespace namm::app
