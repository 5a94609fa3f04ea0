#pragma once
// Process-wide signal setup for the two daemons.
#include <cstdint>
#include <functional>

namespace portico {

// Blocks SIGINT, SIGTERM, SIGQUIT, SIGHUP and SIGUSR1 in the calling thread (call before starting any thread, so every
// thread inherits the mask) and ignores SIGPIPE (broken sockets report EPIPE instead).
void BlockTerminationSignals();
// Waits until SIGINT, SIGTERM or SIGQUIT arrives; returns the signal number.
int WaitForTerminationSignal();
// The same, calling `on_hangup` on this thread for every SIGHUP that arrives meanwhile (reloads),
// and `on_reopen_logs` for every SIGUSR1 (log files reopened after logrotate moved them; a
// SIGUSR1 without a handler is ignored).
int WaitForTerminationSignal(const std::function<void()>& on_hangup,
                             const std::function<void()>& on_reopen_logs = nullptr);
// Waits at most `timeout_ms` for SIGINT, SIGTERM or SIGQUIT: the signal number, or 0 when none
// came. A SIGHUP meanwhile is consumed and ignored (during a shutdown); a SIGUSR1 calls
// `on_reopen_logs` when given (logrotate during a drain), else it is ignored too.
int WaitForTerminationSignalFor(int64_t timeout_ms, const std::function<void()>& on_reopen_logs = nullptr);
// True for the signals that ask for a graceful stop (SIGTERM, SIGQUIT), false for SIGINT.
bool IsGracefulStopSignal(int sig);

}  // namespace portico
