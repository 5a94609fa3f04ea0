#include "data_plane/proxy/proxy_server.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <uv.h>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "data_plane/proxy/worker.h"
#include "data_plane/tls/server_context.h"

namespace portico::dp {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// A bound (not yet listening) TCP socket with SO_REUSEPORT, or an error.
absl::StatusOr<int> BindReusePort(const sockaddr_storage& address) {
  const int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    absl::Status s = Errno("setsockopt");
    ::close(fd);
    return s;
  }
  const socklen_t length = address.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    absl::Status s = Errno("bind");
    ::close(fd);
    return s;
  }
  return fd;
}

void SetPort(sockaddr_storage* address, uint16_t port) {
  if (address->ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(address)->sin6_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in*>(address)->sin_port = htons(port);
  }
}

// One bound SO_REUSEPORT socket per worker on `host`:`port` (the first bind picks the port
// when it is 0, the others reuse it: the kernel spreads connections over the listeners).
struct BoundListeners {
  std::vector<int> fds;
  uint16_t port = 0;
};

absl::StatusOr<BoundListeners> BindListeners(const std::string& host, uint16_t port, int workers,
                                             absl::string_view what) {
  sockaddr_storage address{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&address)) != 0 &&
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&address)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " host is not an IP address: ", host));
  }
  BoundListeners bound{{}, port};
  for (int i = 0; i < workers; ++i) {
    absl::StatusOr<int> fd = BindReusePort(address);
    if (!fd.ok()) {
      for (int open_fd : bound.fds) ::close(open_fd);
      return absl::Status(fd.status().code(), absl::StrCat(what, ": ", fd.status().message()));
    }
    bound.fds.push_back(*fd);
    if (i == 0 && bound.port == 0) {
      sockaddr_storage local{};
      socklen_t length = sizeof(local);
      if (::getsockname(*fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) {
        absl::Status s = Errno("getsockname");
        for (int open_fd : bound.fds) ::close(open_fd);
        return s;
      }
      bound.port = ntohs(local.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&local)->sin6_port
                                                     : reinterpret_cast<sockaddr_in*>(&local)->sin_port);
      SetPort(&address, bound.port);
    }
  }
  return bound;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ProxyServer>> ProxyServer::Start(ProxyOptions options) {
  if (options.workers < 1) return absl::InvalidArgumentError("workers must be at least 1");
  if (options.max_header_bytes < 1024) return absl::InvalidArgumentError("max_header_bytes must be at least 1024");

  // The TLS context first: a bad default certificate fails the start before anything is bound.
  std::unique_ptr<ServerTlsContext> tls;
  if (options.tls.enabled) {
    absl::StatusOr<std::unique_ptr<ServerTlsContext>> created =
        ServerTlsContext::Create(options.tls.cert_file, options.tls.key_file, options.tls.ticket_rotation_seconds);
    if (!created.ok()) return created.status();
    tls = *std::move(created);
    tls->set_http2(options.http2);
  }
  absl::StatusOr<BoundListeners> cleartext = BindListeners(options.host, options.port, options.workers, "proxy listen");
  if (!cleartext.ok()) return cleartext.status();
  BoundListeners tls_listeners;
  if (tls != nullptr) {
    absl::StatusOr<BoundListeners> bound =
        BindListeners(options.tls.host, options.tls.port, options.workers, "proxy TLS listen");
    if (!bound.ok()) {
      for (int fd : cleartext->fds) ::close(fd);
      return bound.status();
    }
    tls_listeners = *std::move(bound);
  }

  std::unique_ptr<ProxyServer> server(new ProxyServer());
  server->port_ = cleartext->port;
  server->accepting_.store(options.accept_at_start);
  server->tls_port_ = tls != nullptr ? tls_listeners.port : 0;
  server->tls_ = std::move(tls);
  for (int i = 0; i < options.workers; ++i) {
    auto worker = std::make_unique<Worker>(i, options);
    const int tls_fd = server->tls_ != nullptr ? tls_listeners.fds[i] : -1;
    if (absl::Status s = worker->Init(cleartext->fds[i], cleartext->port, tls_fd, server->tls_port_, server->tls_.get());
        !s.ok()) {
      for (int j = i + 1; j < options.workers; ++j) {
        ::close(cleartext->fds[j]);
        if (server->tls_ != nullptr) ::close(tls_listeners.fds[j]);
      }
      server->Stop();
      return s;
    }
    Worker* raw = worker.get();
    server->workers_.push_back(std::move(worker));
    server->threads_.emplace_back([raw, i] {
      const std::string name = absl::StrCat("portico-w", i);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      raw->Run();
    });
  }
  return server;
}

void ProxyServer::Publish(std::shared_ptr<const RuntimeConfig> config) {
  if (config != nullptr && config->worker_slots() < workers()) {
    PORTICO_LOG(kError, "proxy", "config compiled for ", config->worker_slots(), " workers, not ", workers(),
                ": not published");
    return;
  }
  std::lock_guard<std::mutex> lock(stop_mu_);
  for (auto& worker : workers_) worker->Publish(config);
  // Held until the next Publish, then by release_ until every worker and request let go of it.
  release_.Retire(std::exchange(published_, std::move(config)));
}

uint64_t ProxyServer::requests_total() const {
  uint64_t total = requests_at_stop_;
  for (const auto& worker : workers_) total += worker->requests_total();
  return total;
}

int64_t ProxyServer::request_states_held() const {
  int64_t total = 0;
  for (const auto& worker : workers_) total += worker->request_states_held();
  return total;
}

uint64_t ProxyServer::connections_accepted() const {
  uint64_t total = connections_accepted_at_stop_;
  for (const auto& worker : workers_) total += worker->connections_accepted();
  return total;
}

int64_t ProxyServer::connections_active() const {
  int64_t total = 0;
  for (const auto& worker : workers_) total += worker->connections_active();
  return total;
}

int64_t ProxyServer::websocket_connections() const {
  int64_t total = 0;
  for (const auto& worker : workers_) total += worker->websocket_tunnels_open();
  return total;
}

uint64_t ProxyServer::websocket_connections_opened() const {
  uint64_t total = websocket_connections_at_stop_;
  for (const auto& worker : workers_) total += worker->websocket_tunnels_opened();
  return total;
}

void ProxyServer::StartAccepting() {
  if (accepting_.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_ || accepting_.exchange(true)) return;
  for (auto& worker : workers_) worker->RequestAccepting();
}

void ProxyServer::BeginDrain() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_) return;
  for (auto& worker : workers_) worker->RequestDrain();
}

bool ProxyServer::listening() const {
  if (workers_.empty()) return false;  // stopped
  for (const auto& worker : workers_) {
    if (worker->listen_state() != Worker::ListenState::kListening) return false;
  }
  return true;
}

bool ProxyServer::listen_failed() const {
  for (const auto& worker : workers_) {
    if (worker->listen_state() == Worker::ListenState::kFailed) return true;
  }
  return false;
}

bool ProxyServer::drained() const {
  for (const auto& worker : workers_) {
    if (!worker->drained()) return false;
  }
  return true;
}

void ProxyServer::Stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  for (auto& worker : workers_) worker->RequestStop();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
  for (auto& worker : workers_) {
    drain_counts_.open_at_drain += worker->connections_at_drain();
    drain_counts_.cut_at_stop += worker->connections_cut();
  }
  for (auto& worker : workers_) requests_at_stop_ += worker->requests_total();
  for (auto& worker : workers_) websocket_connections_at_stop_ += worker->websocket_tunnels_opened();
  for (auto& worker : workers_) connections_accepted_at_stop_ += worker->connections_accepted();
  workers_.clear();
}

ProxyServer::~ProxyServer() { Stop(); }

}  // namespace portico::dp
