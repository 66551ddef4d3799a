// The one zero-shot guard: does a NAMM's provenance record say it was
// evolved or tuned on a given domain? Results on that domain's host would
// then not be zero-shot, so eval-video, video-qa, eval-rl and rollout
// refuse such a NAMM unless told otherwise.
#pragma once

#include <string>
#include <vector>

namespace namm {

/// The words that name a domain in a provenance record.
struct DomainVocabulary {
  std::vector<std::string> words;  ///< lower-case; a field containing one names the domain.
  std::vector<std::string> names;  ///< lower-case; a field equal to one names the domain (e.g. its task names).
};

/// True when provenance_json (a NAMM's provenance record) has a "domain"
/// string, or an entry of its "tasks" or "domains" arrays, that names the
/// domain (compared in lower case). Unparsable records name nothing.
bool provenance_names_domain(const std::string& provenance_json, const DomainVocabulary& domain);

}  // namespace namm
