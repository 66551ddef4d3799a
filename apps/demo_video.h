// The video part of `namm demo`: the shipped clips (scenes/video/demo)
// answered by the shipped video model with the full cache and with the
// language-evolved NAMM applied zero-shot, plus the frame-drop picture of each.
#pragma once

#include <string>

namespace namm::app {

/// Prints the video demo and writes one PNG per clip under out_dir; says
/// plainly what is missing when the model, the clips or the NAMM are not
/// there. Returns false when it could not run at all.
bool demo_video(const std::string& model_dir, const std::string& index_path, const std::string& namm_path,
                const std::string& out_dir, int threads);

}  // namespace namm::app
