// `namm`: one program, one subcommand per job. Errors from anywhere below
// are caught here, once, and printed as a single line.
#include "apps/command.h"
#include "core/allocator.h"
#include "core/printable.h"

#include <c10/util/Exception.h>

#include <cstring>
#include <exception>
#include <new>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namm::app::Command;

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"demo", "run the main job on the shipped models and a built-in example", namm::app::run_demo},
      {"spectrogram", "attention spectrogram / EMA features of an attention stack (.npy)", namm::app::run_spectrogram},
      {"score", "NAMM token scores of an attention stack (.npy) with a model", namm::app::run_score},
      {"train-lm", "train the language host on the long-context task suite", namm::app::run_train_lm},
      {"evolve", "evolve a NAMM with CMA-ES on the language tasks", namm::app::run_evolve},
      {"eval-text", "compare memory policies on the held-out language tasks", namm::app::run_eval_text},
      {"frames", "decode a clip and write N uniformly sampled frames as PNG", namm::app::run_frames},
      {"make-scenes", "render the synthetic video QA scenes (clips + questions)", namm::app::run_make_scenes},
      {"gen-data", "train behaviour policies and write offline RL datasets", namm::app::run_gen_data},
      {"train-dt", "train a Decision Transformer on an offline dataset", namm::app::run_train_dt},
      {"rollout", "run a Decision Transformer in MuJoCo with a memory policy", namm::app::run_rollout},
      {"eval-rl", "compare memory policies on a robot: window, full, NAMM zero-shot, baselines", namm::app::run_eval_rl},
      {"train-video", "train the video host on the synthetic video QA scenes", namm::app::run_train_video},
      {"video-qa", "answer a question about a video file under a memory policy", namm::app::run_video_qa},
      {"eval-video", "compare memory policies on the video QA scenes", namm::app::run_eval_video},
      {"tokenize", "text -> token ids (JSON) with a Hugging Face tokenizer.json, or --decode", namm::app::run_tokenize},
      {"logits", "a model's float32 logits over a text file (.npy), for parity checks", namm::app::run_logits},
      {"generate", "generate from your own text with a memory policy pruning the KV cache", namm::app::run_generate},
  };
  return table;
}

void print_usage(std::ostream& out) {
  out << "usage: namm <command> [options]\n\n"
         "Neural Attention Memory Models: learned KV-cache memory for transformers.\n\n"
         "commands:\n";
  for (const Command& command : commands()) {
    out << "  " << command.name << std::string(14 - std::strlen(command.name), ' ') << command.summary << "\n";
  }
  out << "\n`namm <command> --help` describes each command's options.\n";
}

// the first line of a message: c10::Error appends a backtrace-like context.
// Bytes from files (a header, a name) are escaped: a message never carries
// terminal escape sequences.
std::string first_line(const std::string& text) {
  return namm::printable(text.substr(0, text.find('\n')), 2000);
}

}  // namespace

int main(int argc, char** argv) {
  // before any tensor or thread exists: tensor-sized blocks stay in the heap
  namm::tune_allocator_for_tensors();
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(std::cout);
    return 0;
  }
  for (const Command& command : commands()) {
    if (name != command.name) continue;
    const std::vector<std::string> args(argv + 2, argv + argc);
    try {
      return command.run(args);
    } catch (const namm::app::UsageError& e) {
      std::cerr << "namm " << name << ": " << first_line(e.what()) << " (see `namm " << name << " --help`)\n";
      return 2;
    } catch (const std::bad_alloc&) {
      // sizes are bounded up front where the file or option is known; this is the last resort
      std::cerr << "namm " << name << ": error: out of memory (a file or option asks for more than this machine has)\n";
      return 1;
    } catch (const c10::Error& e) {
      std::cerr << "namm " << name << ": error: " << first_line(e.what_without_backtrace()) << "\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "namm " << name << ": error: " << first_line(e.what()) << "\n";
      return 1;
    }
  }
  std::cerr << "namm: unknown command '" << name << "'\n\n";
  print_usage(std::cerr);
  return 2;
}
