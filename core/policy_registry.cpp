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

const std::vector<PolicyEntry>& policy_entries() {
  static const std::vector<PolicyEntry> entries = {
      {"full", "keeps every token", false, [](const PolicySpec&) { return std::make_unique<FullCachePolicy>(); }},
      {"namm", "the evolved Neural Attention Memory Model (needs a NAMM file)", false,
       [](const PolicySpec& spec) -> std::unique_ptr<MemoryPolicy> {
         if (!spec.namm_model) throw std::invalid_argument("memory policy 'namm' needs a model (none was loaded)");
         return std::make_unique<NammPolicy>(spec.namm_model);
       }},
      {"h2o", "heavy hitters by attention summed over all queries so far, plus a recent window (h2o_recent_share of B)",
       true, [](const PolicySpec& spec) { return std::make_unique<H2oPolicy>(spec.budget, spec.h2o_recent_share); }},
      {"l2", "the keys of lowest L2 norm, plus the newest token", true,
       [](const PolicySpec& spec) { return std::make_unique<L2NormPolicy>(spec.budget); }},
      {"streaming", "StreamingLLM: the first `sinks` tokens plus the most recent ones", true,
       [](const PolicySpec& spec) { return std::make_unique<StreamingLlmPolicy>(spec.budget, spec.sinks); }},
      {"tova", "TOVA: the tokens the last query attends to most", true,
       [](const PolicySpec& spec) { return std::make_unique<TovaPolicy>(spec.budget); }},
      {"recency", "the most recent tokens", true,
       [](const PolicySpec& spec) { return std::make_unique<RecencyPolicy>(spec.budget); }},
      {"random", "a random subset with the newest token (seed)", true,
       [](const PolicySpec& spec) { return std::make_unique<RandomPolicy>(spec.budget, spec.seed); }},
      {"snapkv", "SnapKV: attention of the last `window` queries, average-pooled over `kernel` tokens; the window stays",
       true, [](const PolicySpec& spec) { return std::make_unique<SnapKvPolicy>(spec.budget, spec.window); }},
      {"pyramidkv", "PyramidKV: SnapKV with budgets falling linearly from the first layer to the last (pyramid_beta)",
       true,
       [](const PolicySpec& spec) {
         return std::make_unique<PyramidKvPolicy>(spec.budget, spec.window, spec.pyramid_beta);
       }},
      {"adakv", "AdaKV: SnapKV with a layer's budget shared among its heads by score (adakv_floor_share of B each)",
       true,
       [](const PolicySpec& spec) {
         return std::make_unique<AdaKvPolicy>(spec.budget, spec.window, spec.adakv_floor_share);
       }},
      {"keydiff", "KeyDiff: the keys least like the head's mean key direction, plus the newest token", true,
       [](const PolicySpec& spec) { return std::make_unique<KeyDiffPolicy>(spec.budget); }},
  };
  return entries;
}

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const PolicyEntry& entry : policy_entries()) out.push_back(entry.name);
    return out;
  }();
  return names;
}

std::string policy_help() {
  std::string out;
  for (const PolicyEntry& entry : policy_entries()) out += "  " + entry.name + ": " + entry.help + "\n";
  return out;
}

std::unique_ptr<MemoryPolicy> make_policy(const PolicySpec& spec) {
  for (const PolicyEntry& entry : policy_entries()) {
    if (entry.name == spec.name) return entry.make(spec);
  }
  throw std::invalid_argument("unknown memory policy '" + spec.name + "' (choose from: " + joined_names() + ")");
}

}  // namespace namm
