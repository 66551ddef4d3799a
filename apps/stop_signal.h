// Ctrl-C and SIGTERM during a long job (training, evolution): the first one
// asks the job to stop at its next safe point, where it checkpoints and the
// command exits 130; a second one kills at once, which loses nothing either,
// because every checkpoint is written atomically.
#pragma once

#include <atomic>

namespace namm::app {

/// Installs the handlers for SIGINT and SIGTERM while it lives and puts the
/// previous ones back when it goes. One at a time.
class StopSignal {
 public:
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  /// Whether a signal came since construction.
  bool requested() const;
  /// The flag the handler sets, for jobs that poll an atomic.
  const std::atomic<bool>* flag() const;

 private:
  void (*previous_interrupt_)(int);
  void (*previous_terminate_)(int);
};

}  // namespace namm::app
