// Making any memory policy by the name a user types. Every policy is one
// entry here (name, help, maker); every list of policy names in the project
// comes from policy_names(), so adding a policy is adding its entry.
#pragma once

#include "core/memory_policy.h"
#include "core/scorer_baselines.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace namm {

struct NammModel;

/// Everything a policy may be built from; each policy reads what it needs.
struct PolicySpec {
  std::string name = "full";      ///< one of policy_names().
  Budget budget{0, 0.5};          ///< for the baselines.
  int64_t sinks = 4;              ///< StreamingLLM.
  double h2o_recent_share = 0.5;  ///< H2O.
  uint64_t seed = 0;              ///< random.
  WindowOptions window;           ///< SnapKV, PyramidKV, AdaKV: observation window and pooling.
  double pyramid_beta = 20.0;     ///< PyramidKV: largest / smallest layer budget beyond the window.
  double adakv_floor_share = 0.2; ///< AdaKV: share of B every head keeps whatever the ranking.
  std::shared_ptr<const NammModel> namm_model;  ///< required for "namm".
};

/// One policy of the registry.
struct PolicyEntry {
  std::string name;  ///< as typed on command lines.
  std::string help;  ///< one line: the rule and the PolicySpec fields it reads.
  bool budgeted;     ///< whether it reads PolicySpec::budget.
  std::function<std::unique_ptr<MemoryPolicy>(const PolicySpec&)> make;
};

/// Every policy, in display order: full, namm, then the baselines.
const std::vector<PolicyEntry>& policy_entries();

/// The names make_policy accepts, in display order (from policy_entries()).
const std::vector<std::string>& policy_names();

/// "name: help" lines for --help texts, one per policy.
std::string policy_help();

/// A fresh policy for one sequence; throws std::invalid_argument naming the
/// unknown policy or the missing model.
std::unique_ptr<MemoryPolicy> make_policy(const PolicySpec& spec);

}  // namespace namm
