// The RL part of `namm demo`: the shipped Decision Transformer playing Hopper
// in MuJoCo with its KV cache kept across the episode, with the full cache and
// with the language-evolved NAMM applied zero-shot.
#pragma once

#include <string>

namespace namm::app {

/// Prints one episode per memory setting and renders the NAMM's episode (the
/// full cache's when there is no NAMM) to out_dir/<env>.mp4, printing the
/// path; says plainly what is missing when the model or the NAMM is not there.
/// Returns false when it could not run.
bool demo_rl(const std::string& model_dir, const std::string& env_name, const std::string& namm_path,
             const std::string& out_dir, int threads);

}  // namespace namm::app
