#pragma once
// Process-wide signal setup for the two daemons.
namespace portico {

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (call before starting any thread, so every
// thread inherits the mask) and ignores SIGPIPE (broken sockets report EPIPE instead).
void BlockTerminationSignals();
// Waits until SIGINT or SIGTERM arrives; returns the signal number.
int WaitForTerminationSignal();

}  // namespace portico
