#include "apps/stop_signal.h"

#include <csignal>

namespace namm::app {
namespace {

std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int signal) {
  g_stop_requested.store(true);
  std::signal(signal, SIG_DFL);  // the second one ends the process
}

}  // namespace

StopSignal::StopSignal() {
  g_stop_requested.store(false);
  previous_interrupt_ = std::signal(SIGINT, on_stop_signal);
  previous_terminate_ = std::signal(SIGTERM, on_stop_signal);
}

StopSignal::~StopSignal() {
  std::signal(SIGINT, previous_interrupt_ == SIG_ERR ? SIG_DFL : previous_interrupt_);
  std::signal(SIGTERM, previous_terminate_ == SIG_ERR ? SIG_DFL : previous_terminate_);
}

bool StopSignal::requested() const { return g_stop_requested.load(); }

const std::atomic<bool>* StopSignal::flag() const { return &g_stop_requested; }

}  // namespace namm::app
