#pragma once
// A real redis-server (Debian's package) for tests: on a free loopback port, persistence off
// (--save '' --appendonly no), its log in a temp dir, stopped by PID (SIGKILL) when destroyed.
// Missing redis-server is a test failure with a clear message, never a silent skip.
#include <cstdint>
#include <memory>
#include <string>

#include "tests/integration/harness.h"

namespace portico::testing {

class RedisServer {
 public:
  RedisServer();  // picks the port; starts nothing
  ~RedisServer();

  // Starts redis-server (again, on the same port after Kill) and waits until it answers PING.
  // False, with error(), when it is not installed or does not come up within 10 s.
  bool Start();
  // SIGKILL, reaped: Redis gone at once, as a crash.
  void Kill();
  bool running() const { return process_ != nullptr; }
  uint16_t port() const { return port_; }
  const std::string& error() const { return error_; }

  // One command in Redis's inline form ("GET key"); the raw reply ("$1\r\n3\r\n"), "" on failure.
  std::string Command(const std::string& inline_command) const;

 private:
  TempDir dir_;
  uint16_t port_ = 0;
  std::unique_ptr<Process> process_;
  std::string error_;
};

}  // namespace portico::testing
