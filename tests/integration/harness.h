#pragma once
// Test harness for integration tests: real portico-cp / portico-dp processes on loopback,
// certificates generated per run, a real upstream, raw HTTP over sockets.
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/temp_dir.h"

namespace portico::testing {

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
using test_support::TempDir;  // tests/common/temp_dir.h

// A free TCP port on 127.0.0.1, outside the kernel's ephemeral range (see harness.cc).
uint16_t PickFreePort();

// A child process whose stdout+stderr go to a log file. Killed with SIGKILL on destruction.
class Process {
 public:
  Process(std::string name, std::vector<std::string> argv, std::string log_file,
          std::map<std::string, std::string> extra_env = {});
  ~Process();
  pid_t pid() const { return pid_; }
  bool Running();
  void Signal(int sig);
  // Sends sig and waits up to `timeout` for exit; SIGKILL after that. Returns the wait status.
  int Stop(int sig = 15, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::string Log() const;

 private:
  std::string name_;
  std::string log_file_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

struct HttpResult {
  bool ok = false;             // a complete response was read
  std::string error;           // why not
  int status = 0;
  std::map<std::string, std::string> headers;  // lowercase names; last wins
  std::string body;
  bool closed = false;         // the server closed the connection after this response
};

// Sends raw bytes to 127.0.0.1:port on a new connection and reads one response
// (Content-Length, chunked, or until close). Bounded by `timeout`.
HttpResult RawHttp(uint16_t port, const std::string& request,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10));
// Convenience: builds a request with Host, optional JSON body, Connection: close.
HttpResult Http(uint16_t port, const std::string& method, const std::string& target,
                const std::string& body = "", const std::string& content_type = "application/json",
                const std::vector<std::pair<std::string, std::string>>& headers = {});

// Polls `predicate` every 50 ms until it returns true or `timeout` passes.
bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout);

// A real HTTP/1.1 upstream on 127.0.0.1 (port 0 = ephemeral) (thread per connection, keep-alive). Every response is
// JSON describing what it received: {"method","target","headers":{lowercase name: value},
// "body_len","body" (bodies up to 4 KiB, invalid UTF-8 replaced),"connection_id"}; plus header
// "X-Upstream: <name>".
class EchoUpstream {
 public:
  explicit EchoUpstream(std::string name = "echo", uint16_t port = 0);
  // On another loopback address (`ip`, e.g. "127.0.0.2" or "::1"): DNS tests tell upstreams apart
  // by address.
  EchoUpstream(std::string name, uint16_t port, const std::string& ip);
  ~EchoUpstream();
  uint16_t port() const { return port_; }
  int connections_accepted() const { return accepted_.load(); }
  int requests_served() const { return served_.load(); }
  // Every later response waits this long before it is sent (a slow backend).
  void set_response_delay_ms(int ms) { delay_ms_ = ms; }

 private:
  void AcceptLoop();
  void Serve(int fd, int connection_id);
  std::string name_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> served_{0};
  std::atomic<int> delay_ms_{0};
  std::thread acceptor_;
  // One thread per connection; finished ones are joined by the acceptor at its next accept, so
  // connection churn (a proxy's pool closing and opening connections) does not pile them up.
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::list<Worker> workers_;  // the acceptor thread's (the destructor's once it stopped)
  std::mutex mu_;
  std::vector<int> conn_fds_;  // open connections; guarded by mu_
};

}  // namespace portico::testing
