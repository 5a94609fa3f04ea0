#include "proxy_test_util.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace portico::dp::testing {
namespace {

// The proxy tests run the proxy in this process: as in portico-dp (common/base/signals.cc), a
// write to a peer that left is EPIPE for the proxy, not a SIGPIPE that ends the test binary.
const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

}  // namespace

using test_support::SendAll;
using test_support::SocketReader;

std::string SimpleResponse(int status, const std::string& body, const std::string& extra_headers) {
  return absl::StrCat("HTTP/1.1 ", status, " X\r\nContent-Length: ", body.size(), "\r\n", extra_headers, "\r\n",
                      body);
}

// ---- TestUpstream ----------------------------------------------------------------------------

TestUpstream::TestUpstream(UpstreamHandler handler) : handler_(std::move(handler)) {
  listen_fd_ = test_support::ListenOnLoopback(0, 128, &port_);
  if (listen_fd_ < 0) {
    std::perror("test upstream bind/listen");
    std::abort();
  }
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

TestUpstream::~TestUpstream() { Stop(); }

void TestUpstream::Stop() {
  if (stop_.exchange(true)) return;
  accept_thread_.join();
  ::close(listen_fd_);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : connection_fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(connection_threads_);
  }
  for (std::thread& t : threads) t.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (int fd : connection_fds_) ::close(fd);
  connection_fds_.clear();
}

std::vector<ReceivedRequest> TestUpstream::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

void TestUpstream::AcceptLoop() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int index = accepted_.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    connection_fds_.push_back(fd);
    connection_threads_.emplace_back([this, fd, index] { Serve(fd, index); });
  }
}

void TestUpstream::Serve(int fd, int index) {
  SocketReader reader(fd, &stop_);
  auto sleep_ms = [&](int ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!stop_.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  while (!stop_.load()) {
    ReceivedRequest request;
    request.connection_index = index;
    if (!test_support::ReadRequest(reader, &request)) break;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(request);
    }
    UpstreamReply reply = handler_(request);
    if (reply.hang) {
      std::string ignored;
      reader.ReadToEof(&ignored);
      break;
    }
    if (reply.delay_ms > 0) sleep_ms(reply.delay_ms);
    if (!SendAll(fd, reply.raw)) break;
    bool failed = false;
    for (const std::string& piece : reply.pieces) {
      sleep_ms(reply.piece_delay_ms);
      if (!SendAll(fd, piece)) {
        failed = true;
        break;
      }
    }
    if (failed) break;
    if (reply.close_after) break;
  }
  ::shutdown(fd, SHUT_RDWR);
}

// ---- config builders -------------------------------------------------------------------------

std::string Uuid(int n) { return absl::StrFormat("00000000-0000-4000-8000-%012d", n); }

config::v1::Service MakeService(int n, const std::string& host, uint16_t port, const std::string& path) {
  config::v1::Service service;
  service.set_id(Uuid(n));
  service.set_name(absl::StrCat("service-", n));
  service.set_protocol("http");
  service.set_host(host);
  service.set_port(port);
  if (!path.empty()) service.set_path(path);
  service.set_retries(0);
  service.set_connect_timeout(5000);
  service.set_write_timeout(5000);
  service.set_read_timeout(5000);
  service.set_enabled(true);
  return service;
}

config::v1::Route MakeRoute(int n, const std::vector<std::string>& paths, const std::string& service_id,
                            bool strip_path) {
  config::v1::Route route;
  route.set_id(Uuid(n));
  route.set_name(absl::StrCat("route-", n));
  route.add_protocols("http");
  route.add_protocols("https");
  for (const std::string& path : paths) route.mutable_paths()->add_values(path);
  if (!service_id.empty()) route.set_service_id(service_id);
  route.set_strip_path(strip_path);
  route.set_path_handling("v0");
  return route;
}

}  // namespace portico::dp::testing
