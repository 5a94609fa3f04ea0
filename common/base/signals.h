#pragma once
// Process-wide signal setup for the two daemons.
#include <functional>

namespace portico {

// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR1 in the calling thread (call before starting any thread, so every
// thread inherits the mask) and ignores SIGPIPE (broken sockets report EPIPE instead).
void BlockTerminationSignals();
// Waits until SIGINT or SIGTERM arrives; returns the signal number.
int WaitForTerminationSignal();
// The same, calling `on_hangup` on this thread for every SIGHUP that arrives meanwhile (reloads),
// and `on_reopen_logs` for every SIGUSR1 (log files reopened after logrotate moved them; a
// SIGUSR1 without a handler is ignored).
int WaitForTerminationSignal(const std::function<void()>& on_hangup,
                             const std::function<void()>& on_reopen_logs = nullptr);

}  // namespace portico
