// The subcommands of the `namm` program and how they are found.
#pragma once

#include <string>
#include <vector>

namespace namm::app {

/// One subcommand: `namm <name> [args]`. run() returns the exit status and
/// throws on errors; main() turns an exception into one line and exit 1.
struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

int run_demo(const std::vector<std::string>& args);
int run_spectrogram(const std::vector<std::string>& args);
int run_score(const std::vector<std::string>& args);
int run_train_lm(const std::vector<std::string>& args);
int run_evolve(const std::vector<std::string>& args);
int run_eval_text(const std::vector<std::string>& args);
int run_frames(const std::vector<std::string>& args);
int run_make_scenes(const std::vector<std::string>& args);
int run_gen_data(const std::vector<std::string>& args);
int run_train_dt(const std::vector<std::string>& args);
int run_rollout(const std::vector<std::string>& args);
int run_eval_rl(const std::vector<std::string>& args);
int run_train_video(const std::vector<std::string>& args);
int run_video_qa(const std::vector<std::string>& args);
int run_eval_video(const std::vector<std::string>& args);
int run_tokenize(const std::vector<std::string>& args);
int run_logits(const std::vector<std::string>& args);
int run_generate(const std::vector<std::string>& args);

/// Thrown for bad command-line usage: printed with a hint to use --help, exit 2.
struct UsageError : std::exception {
  explicit UsageError(std::string message) : message(std::move(message)) {}
  const char* what() const noexcept override { return message.c_str(); }
  std::string message;
};

}  // namespace namm::app
