#include "common/base/signals.h"

#include <pthread.h>
#include <signal.h>

namespace portico {
namespace {
sigset_t TerminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
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

}  // namespace portico
