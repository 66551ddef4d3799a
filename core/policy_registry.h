// Making any memory policy by the name a user types.
#pragma once

#include "core/memory_policy.h"

#include <memory>
#include <string>
#include <vector>

namespace namm {

struct NammModel;

/// Everything a policy may be built from; each policy reads what it needs.
struct PolicySpec {
  std::string name = "full";      ///< full|namm|recency|streaming|h2o|l2|tova|random
  Budget budget{0, 0.5};          ///< for the baselines.
  int64_t sinks = 4;              ///< StreamingLLM.
  double h2o_recent_share = 0.5;  ///< H2O.
  uint64_t seed = 0;              ///< random.
  std::shared_ptr<const NammModel> namm_model;  ///< required for "namm".
};

/// The names make_policy accepts, in display order.
const std::vector<std::string>& policy_names();

/// A fresh policy for one sequence; throws std::invalid_argument naming the
/// unknown policy or the missing model.
std::unique_ptr<MemoryPolicy> make_policy(const PolicySpec& spec);

}  // namespace namm
