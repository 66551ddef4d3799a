// The one place that maps a policy name to a policy.
#include "core/policy_registry.h"

#include "core/baselines.h"
#include "core/namm_policy.h"

#include <stdexcept>

namespace namm {
namespace {

std::string joined_names() {
  std::string out;
  for (const std::string& name : policy_names()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = {"full", "namm", "h2o", "l2",
                                                 "streaming", "tova", "recency", "random"};
  return names;
}

std::unique_ptr<MemoryPolicy> make_policy(const PolicySpec& spec) {
  const std::string& name = spec.name;
  if (name == "full") return std::make_unique<FullCachePolicy>();
  if (name == "namm") {
    if (!spec.namm_model) {
      throw std::invalid_argument("memory policy 'namm' needs a model (none was loaded)");
    }
    return std::make_unique<NammPolicy>(spec.namm_model);
  }
  if (name == "h2o") return std::make_unique<H2oPolicy>(spec.budget, spec.h2o_recent_share);
  if (name == "l2") return std::make_unique<L2NormPolicy>(spec.budget);
  if (name == "streaming") return std::make_unique<StreamingLlmPolicy>(spec.budget, spec.sinks);
  if (name == "tova") return std::make_unique<TovaPolicy>(spec.budget);
  if (name == "recency") return std::make_unique<RecencyPolicy>(spec.budget);
  if (name == "random") return std::make_unique<RandomPolicy>(spec.budget, spec.seed);
  throw std::invalid_argument("unknown memory policy '" + name + "' (choose from: " + joined_names() + ")");
}

}  // namespace namm
