#include "common/base/signals.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <cerrno>

namespace portico {
namespace {
sigset_t TerminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGQUIT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  return set;
}
}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForTerminationSignal() { return WaitForTerminationSignal(nullptr); }

int WaitForTerminationSignal(const std::function<void()>& on_hangup, const std::function<void()>& on_reopen_logs) {
  sigset_t set = TerminationSet();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      if (on_reopen_logs) on_reopen_logs();
      continue;
    }
    if (sig != SIGHUP) return sig;
    if (on_hangup) on_hangup();
  }
}

int WaitForTerminationSignalFor(int64_t timeout_ms, const std::function<void()>& on_reopen_logs) {
  sigset_t set = TerminationSet();
  timespec deadline{};
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += (timeout_ms % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec += 1;
    deadline.tv_nsec -= 1000000000;
  }
  for (;;) {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t left_ns = (deadline.tv_sec - now.tv_sec) * 1000000000LL + (deadline.tv_nsec - now.tv_nsec);
    if (left_ns <= 0) return 0;
    const timespec wait{static_cast<time_t>(left_ns / 1000000000LL), static_cast<long>(left_ns % 1000000000LL)};
    const int sig = sigtimedwait(&set, nullptr, &wait);
    if (sig < 0) {
      if (errno == EAGAIN) return 0;
      continue;  // EINTR
    }
    if (sig == SIGUSR1 && on_reopen_logs) on_reopen_logs();
    if (sig != SIGHUP && sig != SIGUSR1) return sig;
  }
}

bool IsGracefulStopSignal(int sig) { return sig == SIGTERM || sig == SIGQUIT; }

}  // namespace portico
