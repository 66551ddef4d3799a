// namm_provenance: see namm_provenance.h
#include "core/namm_provenance.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace namm {

bool provenance_names_domain(const std::string& provenance_json, const DomainVocabulary& domain) {
  nlohmann::json p;
  try {
    p = nlohmann::json::parse(provenance_json);
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  if (!p.is_object()) return false;
  const auto names_domain = [&](std::string text) {
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
    if (std::find(domain.names.begin(), domain.names.end(), text) != domain.names.end()) return true;
    for (const std::string& word : domain.words) {
      if (text.find(word) != std::string::npos) return true;
    }
    return false;
  };
  if (p.contains("domain") && p["domain"].is_string() && names_domain(p["domain"].get<std::string>())) return true;
  for (const char* key : {"tasks", "domains"}) {
    if (!p.contains(key) || !p[key].is_array()) continue;
    for (const auto& entry : p[key]) {
      if (entry.is_string() && names_domain(entry.get<std::string>())) return true;
    }
  }
  return false;
}

}  // namespace namm
