#pragma once
// Loopback helpers for the proxy tests: a blocking upstream server on its own threads that
// records what it receives, a raw HTTP client, and config builders. Everything is bounded by
// socket timeouts and stopped by the destructors.
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

namespace portico::proxy::testing {

struct ReceivedRequest {
  std::string method;
  std::string target;
  std::string version;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool chunked = false;
  int connection_index = 0;  // 0-based accept order at the upstream

  // First value of a header (case-insensitive); "<absent>" when missing.
  std::string Header(const std::string& name) const;
  size_t HeaderCount(const std::string& name) const;
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

struct ClientResponse {
  bool ok = false;          // a complete response was read
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool chunked = false;
  std::string Header(const std::string& name) const;
  bool HasHeader(const std::string& name) const;
};

class RawClient {
 public:
  explicit RawClient(uint16_t port, int timeout_ms = 5000);
  ~RawClient();
  bool connected() const { return fd_ >= 0; }
  bool Send(const std::string& data);
  // Reads one response (Content-Length, chunked, or until close).
  ClientResponse ReadResponse(bool head_request = false);
  // True when the peer closed (EOF or reset) within the timeout, with nothing else to read.
  bool WaitClosed();
  // True only when the peer closed cleanly (FIN, not a reset) within the timeout, with nothing
  // else to read.
  bool WaitCleanEof();
  // After the peer closed: true when its socket is gone (a byte sent to it is answered with a
  // RST, so a second send fails), false when it still reads (e.g. a lingering close).
  bool PeerSocketGone();
  void ShutdownWrite();

 private:
  bool Fill();  // reads more into buffer_; false on EOF/error/timeout
  int fd_ = -1;
  std::string buffer_;
};

// One service + one route; ids are fixed UUIDs derived from `n`.
config::v1::Service MakeService(int n, const std::string& host, uint16_t port, const std::string& path = "");
config::v1::Route MakeRoute(int n, const std::vector<std::string>& paths, const std::string& service_id,
                            bool strip_path = true);
std::string Uuid(int n);

}  // namespace portico::proxy::testing
