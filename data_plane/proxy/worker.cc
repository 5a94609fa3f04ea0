#include "data_plane/proxy/worker.h"

#include <sys/socket.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "data_plane/pipeline/loop_state.h"
#include "data_plane/proxy/exchange.h"
#include "data_plane/proxy/http1_client_connection.h"
#include "data_plane/proxy/http2_upstream_pool.h"
#include "data_plane/proxy/upstream_connection.h"

namespace portico::dp {

// libuv trampolines for the worker's own handles.
struct Worker::Uv {
  static Worker* Self(uv_handle_t* h) { return static_cast<Worker*>(h->data); }
  static void Wake(uv_async_t* h) { Self(reinterpret_cast<uv_handle_t*>(h))->OnWake(); }
  static void Acceptable(uv_poll_t* p, int status, int) {
    Listener* listener = static_cast<Listener*>(p->data);
    listener->worker->OnAcceptable(*listener, status);
  }
  static void AcceptRetry(uv_timer_t* t) { Self(reinterpret_cast<uv_handle_t*>(t))->OnAcceptRetry(); }
  static void DrainGoAway(uv_timer_t* t) { Self(reinterpret_cast<uv_handle_t*>(t))->OnDrainGoAway(); }
  static void Reap(uv_check_t* h) { Self(reinterpret_cast<uv_handle_t*>(h))->DrainGraveyard(); }
  static void Sweep(uv_timer_t* h) { Self(reinterpret_cast<uv_handle_t*>(h))->OnSweep(); }
  static void Closed(uv_handle_t*) {}  // the worker's handles are members: nothing to free
  static void CloseAny(uv_handle_t* h, void*) {
    if (!uv_is_closing(h)) uv_close(h, Closed);
  }
};

Worker::Worker(int index, const ProxyOptions& options)
    : index_(index),
      options_(options),
      read_buffer_(new char[kReadBufferBytes]),
      http2_upstreams_(std::make_unique<Http2UpstreamPool>(*this)) {}

Worker::~Worker() {
  // Run() (or a failed Init()) closed the loop. Free what is left while the deadline lists,
  // pools and counters the connections touch on destruction still exist.
  clients_.clear();
  dead_clients_.clear();
  upstreams_.clear();
  dead_upstreams_.clear();
  http2_upstreams_.reset();
  for (auto& [key, session] : upstream_tls_sessions_) SSL_SESSION_free(session);
}

absl::Status Worker::Init(int listen_fd, uint16_t port, int tls_listen_fd, uint16_t tls_port,
                          const ServerTlsContext* tls) {
  port_ = port;
  tls_port_ = tls_port;
  tls_context_ = tls;
  listeners_[kCleartextListener].fd = listen_fd;
  listeners_[kTlsListener].fd = tls_listen_fd;
  listeners_[kTlsListener].tls = true;
  for (Listener& listener : listeners_) listener.worker = this;
  auto close_listen_fds = [this] {
    for (Listener& listener : listeners_) {
      if (listener.fd >= 0) ::close(listener.fd);  // (a poll handle, if any, is closing and does not own it)
      listener.fd = -1;
    }
  };
  if (tls_listen_fd >= 0) {
    if (tls == nullptr) {
      close_listen_fds();
      return absl::InvalidArgumentError("a TLS listener needs a TLS context");
    }
    plain_buffer_.reset(new char[kReadBufferBytes]);
  }
  if (int rc = uv_loop_init(&loop_); rc != 0) {
    close_listen_fds();
    return absl::InternalError(absl::StrCat("uv_loop_init: ", uv_strerror(rc)));
  }
  loop_initialised_ = true;
  absl::StatusOr<std::unique_ptr<Resolver>> resolver = Resolver::Create(&loop_, options_.dns);
  if (!resolver.ok()) {
    close_listen_fds();
    uv_loop_close(&loop_);
    loop_initialised_ = false;
    return resolver.status();
  }
  resolver_ = *std::move(resolver);
  uv_timer_init(&loop_, &accept_retry_);
  accept_retry_.data = this;
  uv_timer_init(&loop_, &drain_goaway_);
  drain_goaway_.data = this;
  uv_async_init(&loop_, &wake_, Uv::Wake);
  wake_.data = this;
  uv_check_init(&loop_, &reaper_);
  reaper_.data = this;
  uv_check_start(&reaper_, Uv::Reap);
  uv_unref(reinterpret_cast<uv_handle_t*>(&reaper_));
  uv_timer_init(&loop_, &sweeper_);
  sweeper_.data = this;
  uv_timer_start(&sweeper_, Uv::Sweep, kDeadlineSweepMs, kDeadlineSweepMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&sweeper_));

  const int rc = options_.accept_at_start ? StartListening() : 0;
  if (options_.accept_at_start && rc == 0) listen_state_.store(ListenState::kListening, std::memory_order_release);
  if (rc != 0) {
    uv_walk(&loop_, Uv::CloseAny, nullptr);
    close_listen_fds();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    loop_initialised_ = false;
    return absl::InternalError(absl::StrCat("listen: ", uv_strerror(rc)));
  }
  return absl::OkStatus();
}

int Worker::StartListening() {
  int rc = 0;
  for (Listener& listener : listeners_) {
    if (listener.fd < 0 || listener.polling || rc != 0) continue;
    rc = ::listen(listener.fd, 511) == 0 ? 0 : uv_translate_sys_error(errno);
    if (rc == 0) rc = uv_poll_init_socket(&loop_, &listener.poll, listener.fd);
    if (rc == 0) {
      listener.polling = true;
      listener.poll.data = &listener;
      rc = uv_poll_start(&listener.poll, UV_READABLE, Uv::Acceptable);
    }
  }
  return rc;
}

void Worker::RequestAccepting() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_requested_ || drain_requested_ || accept_requested_) return;
  accept_requested_ = true;
  uv_async_send(&wake_);
}

void Worker::Run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Everything was closed by BeginShutdown(); close stragglers defensively and finish.
  CloseLoopStates(&loop_);
  uv_walk(&loop_, Uv::CloseAny, nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  DrainGraveyard();
  if (int rc = uv_loop_close(&loop_); rc != 0) {
    PORTICO_LOG(kError, "proxy", "worker ", index_, ": uv_loop_close: ", uv_strerror(rc));
  }
  loop_initialised_ = false;
}

void Worker::Publish(std::shared_ptr<const RuntimeConfig> config) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_requested_) return;
    pending_config_ = std::move(config);
    has_pending_config_.store(true, std::memory_order_release);
    uv_async_send(&wake_);  // under mu_: the handle is closed only after stop_requested_
  }
}

void Worker::RequestStop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_requested_) return;
  stop_requested_ = true;
  uv_async_send(&wake_);
}

const std::shared_ptr<const RuntimeConfig>& Worker::CurrentConfig() {
  if (has_pending_config_.load(std::memory_order_acquire)) {
    bool swapped = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pending_config_ != nullptr) {
        config_ = std::move(pending_config_);
        swapped = true;
      }
      pending_config_ = nullptr;
      has_pending_config_.store(false, std::memory_order_relaxed);
    }
    // Warm the cache: the names the new config uses are looked up now (and kept fresh). Outside
    // mu_: starting queries must not hold up Publish on the sync thread.
    if (swapped && resolver_ != nullptr) resolver_->SetConfigNames(config_->dns_names());
  }
  return config_;
}

void Worker::RequestDrain() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_requested_ || drain_requested_) return;
  drain_requested_ = true;
  uv_async_send(&wake_);
}

void Worker::OnWake() {
  CurrentConfig();
  bool stop = false;
  bool drain = false;
  bool accept = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop = stop_requested_;
    drain = drain_requested_;
    accept = accept_requested_;
  }
  if (stop) {
    BeginShutdown();
  } else if (drain) {
    BeginDrain();
  } else if (accept && !shutting_down_ && !draining_) {
    if (const int rc = StartListening(); rc != 0) {
      listen_state_.store(ListenState::kFailed, std::memory_order_release);
      PORTICO_LOG(kError, "proxy", "worker ", index_, ": listen on the proxy port failed: ", uv_strerror(rc),
                  "; this data plane does not accept on it and /status/ready stays 503");
    } else {
      listen_state_.store(ListenState::kListening, std::memory_order_release);
    }
  }
}

void Worker::CloseListeners() {
  for (Listener& listener : listeners_) {
    if (listener.polling) uv_close(reinterpret_cast<uv_handle_t*>(&listener.poll), Uv::Closed);  // stops polling now
    listener.polling = false;
    // With net.ipv4.tcp_migrate_req=1 the kernel moves the connections still in this socket's
    // accept queue to another listener of its SO_REUSEPORT group (a replacement DP); without it
    // they are reset.
    if (listener.fd >= 0) ::close(listener.fd);
    listener.fd = -1;
  }
  uv_timer_stop(&accept_retry_);
}

void Worker::BeginDrain() {
  if (draining_ || shutting_down_) return;
  draining_ = true;
  CloseListeners();
  connections_at_drain_.store(static_cast<int64_t>(clients_.size()), std::memory_order_relaxed);
  std::vector<Http1ClientConnection*> clients;
  clients.reserve(clients_.size());
  for (auto& [raw, owned] : clients_) clients.push_back(raw);
  for (Http1ClientConnection* c : clients) c->OnWorkerDrain();  // may close (not free) some
  uv_timer_start(&drain_goaway_, Uv::DrainGoAway, kDrainGoAwayDelayMs, 0);
  CheckDrained();
}

void Worker::OnDrainGoAway() {
  std::vector<Http1ClientConnection*> clients;
  for (auto& [raw, owned] : clients_) {
    if (raw->state() == Http1ClientConnection::State::kHttp2) clients.push_back(raw);
  }
  const uint64_t now = uv_now(&loop_);
  uint64_t next_due = 0;
  for (Http1ClientConnection* c : clients) {
    const uint64_t due = c->OnDrainGoAway(now);
    if (due != 0 && (next_due == 0 || due < next_due)) next_due = due;
  }
  if (next_due != 0) uv_timer_start(&drain_goaway_, Uv::DrainGoAway, next_due - now, 0);
}

void Worker::ScheduleDrainGoAway(uint64_t due_ms) {
  if (shutting_down_ || !draining_) return;
  // An armed timer fires no later than due_ms (every due time is the notice plus the same
  // delay) and re-arms for what is still to come.
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&drain_goaway_)) != 0) return;
  const uint64_t now = uv_now(&loop_);
  uv_timer_start(&drain_goaway_, Uv::DrainGoAway, due_ms > now ? due_ms - now : 0, 0);
}

void Worker::CheckDrained() {
  if (draining_ && clients_.empty()) drained_.store(true, std::memory_order_release);
}

namespace {

// accept(2): errors of one pending connection (the next accept may succeed), to be treated like
// EAGAIN; anything else concerns the listener or the process.
bool IsPerConnectionAcceptError(int error) {
  switch (error) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

}  // namespace

void Worker::PauseAccepting() {
  // The listeners are level-triggered: without a pause a persistent error would spin the loop.
  for (Listener& listener : listeners_) {
    if (listener.polling) uv_poll_stop(&listener.poll);
  }
  uv_timer_start(&accept_retry_, Uv::AcceptRetry, kAcceptRetryMs, 0);
}

bool Worker::AllowClientErrorLog(uint64_t* suppressed) {
  const uint64_t second = uv_now(&loop_) / 1000;
  if (second != client_log_second_) {
    client_log_second_ = second;
    client_logs_in_second_ = 0;
  }
  if (client_logs_in_second_ >= kClientErrorLogsPerSecond) {
    ++client_logs_suppressed_;
    return false;
  }
  ++client_logs_in_second_;
  *suppressed = client_logs_suppressed_;
  client_logs_suppressed_ = 0;
  return true;
}

void Worker::OnAcceptable(Listener& listener, int status) {
  if (shutting_down_ || draining_) return;
  if (status < 0) {
    // libuv stops a poll handle that reports an error: try again after a pause.
    PORTICO_LOG(kWarn, "proxy", "listener poll: ", uv_strerror(status), "; accepting again in ",
                kAcceptRetryMs, " ms");
    PauseAccepting();
    return;
  }
  // One connection per readiness event (as nginx without multi_accept): the listener is
  // level-triggered, so the next loop iteration reports it again while connections are pending.
  sockaddr_storage peer{};
  socklen_t peer_length = sizeof(peer);
  const int fd = ::accept4(listener.fd, reinterpret_cast<sockaddr*>(&peer), &peer_length, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (IsPerConnectionAcceptError(error)) return;
    // Out of descriptors or memory, or a broken listener: pause instead of spinning.
    PORTICO_LOG(kWarn, "proxy", "accept: ", uv_strerror(uv_translate_sys_error(error)), "; accepting again in ",
                kAcceptRetryMs, " ms");
    PauseAccepting();
    return;
  }
  auto owned = std::make_unique<Http1ClientConnection>(*this);
  Http1ClientConnection* connection = owned.get();
  clients_.emplace(connection, std::move(owned));
  connections_accepted_.store(connections_accepted_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  connections_active_.store(static_cast<int64_t>(clients_.size()), std::memory_order_relaxed);
  if (absl::Status s = connection->Accept(fd, reinterpret_cast<const sockaddr*>(&peer), listener.tls); !s.ok()) {
    PORTICO_LOG(kWarn, "proxy", "accept: ", s.message());
    connection->Close();
  }
}

void Worker::OnAcceptRetry() {
  if (shutting_down_ || draining_) return;
  for (Listener& listener : listeners_) {
    if (listener.polling) uv_poll_start(&listener.poll, UV_READABLE, Uv::Acceptable);
  }
}

void Worker::BeginShutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  CloseListeners();
  connections_cut_.store(static_cast<int64_t>(clients_.size()), std::memory_order_relaxed);
  uv_close(reinterpret_cast<uv_handle_t*>(&accept_retry_), Uv::Closed);
  uv_timer_stop(&drain_goaway_);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_goaway_), Uv::Closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&wake_), Uv::Closed);
  uv_check_stop(&reaper_);
  uv_close(reinterpret_cast<uv_handle_t*>(&reaper_), Uv::Closed);
  uv_timer_stop(&sweeper_);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweeper_), Uv::Closed);
  std::vector<Http1ClientConnection*> clients;
  for (auto& [raw, owned] : clients_) clients.push_back(raw);
  for (Http1ClientConnection* c : clients) c->Close();
  std::vector<UpstreamConnection*> upstreams;
  for (auto& [raw, owned] : upstreams_) upstreams.push_back(raw);
  for (UpstreamConnection* u : upstreams) u->Close();
  idle_.clear();
  http2_upstreams_->CloseAll();
  // After the clients: their suspended requests are cancelled before the steps' connections close.
  CloseLoopStates(&loop_);
  if (resolver_ != nullptr) resolver_->Close();
}

UpstreamConnection* Worker::AcquireIdle(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  std::vector<UpstreamConnection*>& list = it->second;
  while (!list.empty()) {
    UpstreamConnection* c = list.back();
    list.pop_back();
    if (c->state() != UpstreamConnection::State::kIdle) continue;
    // Bytes (or EOF) already waiting on an idle connection were sent for no request: a stray
    // response must never reach the next client, so such a connection is closed, not reused.
    if (!c->PeerSilent()) {
      c->Close();
      continue;
    }
    c->MarkTakenFromPool();
    return c;
  }
  idle_.erase(it);  // keys come and go (targets, TLS SNIs): the map stays bounded
  return nullptr;
}

bool Worker::AddIdle(UpstreamConnection* connection) {
  if (shutting_down_) return false;
  std::vector<UpstreamConnection*>& list = idle_[connection->pool_key()];
  if (list.size() >= kMaxIdlePerKey) return false;
  list.push_back(connection);
  return true;
}

void Worker::RemoveIdle(UpstreamConnection* connection) {
  auto it = idle_.find(connection->pool_key());
  if (it == idle_.end()) return;
  auto& list = it->second;
  // Not erased when empty here: AcquireIdle holds the list while it closes stale connections
  // (Close -> RemoveIdle). Empty lists go in AcquireIdle and Destroy.
  list.erase(std::remove(list.begin(), list.end(), connection), list.end());
}

size_t Worker::idle_upstream_count() const {
  size_t n = 0;
  for (const auto& [key, list] : idle_) n += list.size();
  return n;
}

const std::string& Worker::UpstreamPoolKey(const dp::Target& target, const dp::UpstreamTlsContext* tls,
                                           absl::string_view server_name) {
  if (tls == nullptr) return target.pool_key;
  upstream_pool_key_.clear();  // keeps its capacity
  absl::StrAppend(&upstream_pool_key_, target.pool_key, "|", tls->key(), "|", server_name);
  return upstream_pool_key_;
}

void Worker::KeepUpstreamTlsSession(const std::string& pool_key, SSL_SESSION* session) {
  // Bounded: pool keys include the SNI, which a preserve_host route takes from the client.
  if (upstream_tls_sessions_.size() >= kMaxUpstreamTlsSessions && !upstream_tls_sessions_.contains(pool_key)) {
    for (auto& [key, kept] : upstream_tls_sessions_) SSL_SESSION_free(kept);
    upstream_tls_sessions_.clear();
  }
  auto [it, inserted] = upstream_tls_sessions_.try_emplace(pool_key, session);
  if (!inserted) {
    SSL_SESSION_free(it->second);
    it->second = session;
  }
}

SSL_SESSION* Worker::UpstreamTlsSession(const std::string& pool_key) {
  auto kept = upstream_tls_sessions_.find(pool_key);
  return kept != upstream_tls_sessions_.end() && SSL_SESSION_is_resumable(kept->second) == 1 ? kept->second : nullptr;
}

char* Worker::upstream_tls_plain_buffer() {
  if (upstream_tls_plain_ == nullptr) upstream_tls_plain_ = std::make_unique<char[]>(kUpstreamTlsPlainBytes);
  return upstream_tls_plain_.get();
}

bool Worker::AllowUpstreamTlsLog() {
  const uint64_t second = uv_now(&loop_) / 1000;
  if (second != upstream_tls_log_second_) {
    upstream_tls_log_second_ = second;
    upstream_tls_log_count_ = 0;
  }
  return ++upstream_tls_log_count_ <= kUpstreamTlsLogBurst;
}

absl::StatusOr<UpstreamConnection*> Worker::ConnectUpstream(const dp::Target& target, const std::string& pool_key,
                                                            const dp::UpstreamTlsContext* tls,
                                                            absl::string_view server_name) {
  // A DNS name is at most 253 bytes; a longer Host (preserve_host) cannot be an SNI.
  if (tls != nullptr && server_name.size() > 253) {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream TLS: the server name (", server_name.size(), " bytes) is too long for SNI"));
  }
  auto owned = std::make_unique<UpstreamConnection>(*this, pool_key, options_.max_header_bytes);
  UpstreamConnection* connection = owned.get();
  upstreams_.emplace(connection, std::move(owned));
  if (tls != nullptr) {
    SSL* ssl = tls->NewSsl(server_name, connection, UpstreamTlsSession(connection->pool_key()));
    if (ssl == nullptr) {
      connection->Close();
      return absl::ResourceExhaustedError("upstream TLS: cannot create a connection (out of memory)");
    }
    connection->UseTls(ssl, upstream_tls_plain_buffer(), kUpstreamTlsPlainBytes);
  }
  if (absl::Status s = connection->Connect(reinterpret_cast<const sockaddr*>(&target.address)); !s.ok()) {
    connection->Close();
    return s;
  }
  return connection;
}

void Worker::Destroy(Http1ClientConnection* connection) {
  auto it = clients_.find(connection);
  if (it == clients_.end()) return;
  dead_clients_.push_back(std::move(it->second));
  clients_.erase(it);
  connections_active_.store(static_cast<int64_t>(clients_.size()), std::memory_order_relaxed);
  if (draining_) CheckDrained();
}

void Worker::Destroy(UpstreamConnection* connection) {
  RemoveIdle(connection);
  if (auto idle = idle_.find(connection->pool_key()); idle != idle_.end() && idle->second.empty()) {
    idle_.erase(idle);
  }
  auto it = upstreams_.find(connection);
  if (it == upstreams_.end()) return;
  dead_upstreams_.push_back(std::move(it->second));
  upstreams_.erase(it);
}

void Worker::ArmDeadline(DeadlineNode* node, DeadlineList list) {
  DisarmDeadline(node);
  const int64_t timeout = list == kIdleDeadlines ? options_.client_timeout_ms : kLingerTimeoutMs;
  node->deadline_ms = uv_now(&loop_) + static_cast<uint64_t>(timeout);
  node->list = list;
  DeadlineListHead& head = deadlines_[list];
  node->prev = head.last;
  node->next = nullptr;
  if (head.last != nullptr) {
    head.last->next = node;
  } else {
    head.first = node;
  }
  head.last = node;
}

void Worker::DisarmDeadline(DeadlineNode* node) {
  if (node->list < 0) return;
  DeadlineListHead& head = deadlines_[node->list];
  if (node->prev != nullptr) {
    node->prev->next = node->next;
  } else {
    head.first = node->next;
  }
  if (node->next != nullptr) {
    node->next->prev = node->prev;
  } else {
    head.last = node->prev;
  }
  node->prev = node->next = nullptr;
  node->list = -1;
}

void Worker::OnSweep() {
  const uint64_t now = uv_now(&loop_);
  for (DeadlineListHead& head : deadlines_) {
    // Sorted by deadline; each expired node is disarmed before OnDeadline(), which closes the
    // connection or re-arms it (at the back), so the front moves on.
    while (head.first != nullptr && head.first->deadline_ms <= now) {
      DeadlineNode* node = head.first;
      DisarmDeadline(node);
      node->owner->OnDeadline();
    }
  }
}

void Worker::DrainGraveyard() {
  dead_clients_.clear();
  dead_upstreams_.clear();
  if (http2_upstreams_ != nullptr) http2_upstreams_->DrainGraveyard();
}

}  // namespace portico::dp
