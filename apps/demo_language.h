// The language part of `namm demo`: long test prompts answered by the shipped
// language host, with the full cache and with the shipped NAMM.
#pragma once

#include <string>

namespace namm::app {

/// Prints the language demo; says plainly what is missing when the host or
/// the NAMM is not there. Returns false when it could not run at all.
bool demo_language(const std::string& lm_dir, const std::string& namm_path, int threads);

}  // namespace namm::app
