#pragma once
// Loopback helpers for the proxy tests: a blocking upstream server on its own threads that
// records what it receives, the raw HTTP client (tests/common/http_wire.h), and config builders.
// Everything is bounded by socket timeouts and stopped by the destructors.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/config/config_set.h"
#include "tests/common/http_wire.h"

namespace portico::dp::testing {

// Method, target, version, headers (Header() gives "<absent>" when missing), body, chunked.
struct ReceivedRequest : test_support::WireRequest {
  int connection_index = 0;  // 0-based accept order at the upstream
};

// What the upstream does with one request.
struct UpstreamReply {
  std::string raw;                 // bytes to write (full response, any framing)
  int delay_ms = 0;                // sleep before writing
  bool close_after = false;        // close the connection after writing
  bool hang = false;               // never answer; wait until the peer or Stop() closes
  // Written after `raw`, `pieces` apart by `piece_delay_ms` (slow streaming responses).
  std::vector<std::string> pieces;
  int piece_delay_ms = 0;
};

using UpstreamHandler = std::function<UpstreamReply(const ReceivedRequest&)>;

// "HTTP/1.1 200 OK" with Content-Length and the given body and extra header lines.
std::string SimpleResponse(int status, const std::string& body, const std::string& extra_headers = "");

class TestUpstream {
 public:
  explicit TestUpstream(UpstreamHandler handler);
  ~TestUpstream();
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  std::vector<ReceivedRequest> requests() const;
  void Stop();

 private:
  void AcceptLoop();
  void Serve(int fd, int index);

  UpstreamHandler handler_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> connection_threads_;
  std::vector<int> connection_fds_;
  std::vector<ReceivedRequest> requests_;
};

// A response as the client read it (ok, status, headers, body, chunked) and the client.
using ClientResponse = test_support::HttpReply;
using RawClient = test_support::RawHttpClient;

// One service + one route; ids are fixed UUIDs derived from `n`.
config::v1::Service MakeService(int n, const std::string& host, uint16_t port, const std::string& path = "");
config::v1::Route MakeRoute(int n, const std::vector<std::string>& paths, const std::string& service_id,
                            bool strip_path = true);
std::string Uuid(int n);

// Polls `predicate` every 5 ms until it holds or `timeout` passes; the last answer either way.
template <typename Predicate>
bool WaitFor(Predicate predicate, std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (predicate()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return predicate();
}

}  // namespace portico::dp::testing
