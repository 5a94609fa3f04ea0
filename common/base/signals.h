#pragma once
// Process-wide signal setup for the two daemons.
#include <functional>

namespace portico {

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (call before starting any thread, so every
// thread inherits the mask) and ignores SIGPIPE (broken sockets report EPIPE instead).
void BlockTerminationSignals();
// Waits until SIGINT or SIGTERM arrives; returns the signal number.
int WaitForTerminationSignal();
// The same, calling `on_hangup` on this thread for every SIGHUP that arrives meanwhile (reloads).
int WaitForTerminationSignal(const std::function<void()>& on_hangup);

}  // namespace portico
