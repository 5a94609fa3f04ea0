#pragma once
// One proxy worker: a thread that owns one uv_loop_t, its SO_REUSEPORT listeners (cleartext, and
// TLS when enabled), its client
// connections, its upstream connections and their keep-alive pool. Nothing here is shared with
// other workers except what Publish()/RequestStop() hand over (under mu_, never on the request
// path: requests read the config through CurrentConfig(), which takes the lock only when a new
// config is pending).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <uv.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/base/free_list.h"
#include "common/http/http1_codec.h"
#include "data_plane/balancer/destinations.h"
#include "data_plane/balancer/upstream_tls.h"
#include "data_plane/dns/resolver.h"
#include "data_plane/proxy/exchange.h"
#include "data_plane/proxy/proxy_options.h"
#include "data_plane/proxy/runtime_config.h"

namespace portico::dp {

class Exchange;
class Http1ClientConnection;
class Http2UpstreamPool;
class ServerTlsContext;
class UpstreamConnection;

// Flow-control thresholds shared by both directions.
inline constexpr size_t kHighWaterBytes = 256 * 1024;
inline constexpr size_t kLowWaterBytes = 64 * 1024;
inline constexpr size_t kReadBufferBytes = 64 * 1024;
// Idle upstream connections kept per pool key per worker: well above the requests one worker has
// in flight to one target (an HTTP/2 client alone may run 128 streams), so a busy pool does not
// close and reopen connections.
inline constexpr size_t kMaxIdlePerKey = 512;
// Upstream TLS sessions kept per worker (one per pool key); past this the set starts over.
inline constexpr size_t kMaxUpstreamTlsSessions = 1024;
inline constexpr int64_t kUpstreamIdleTimeoutMs = 60 * 1000;
inline constexpr int64_t kLingerTimeoutMs = 2 * 1000;
// A drain sends HTTP/2 connections a GOAWAY notice, then the final GOAWAY this much later (a
// round trip's margin for streams the client opened meanwhile).
inline constexpr int64_t kDrainGoAwayDelayMs = 1000;
// Accepting pauses this long after accept4 failed for lack of descriptors or memory.
inline constexpr int64_t kAcceptRetryMs = 100;
// How often the worker checks client deadlines (idle and linger timeouts fire up to this late).
inline constexpr int64_t kDeadlineSweepMs = 250;
// Client misbehaviour (a protocol mismatch, a failed TLS handshake) is logged at most this many
// lines per second per worker; the lines left out are counted in the next one.
inline constexpr int kClientErrorLogsPerSecond = 10;
// Request-scoped objects (exchanges, request head storage) kept for reuse per worker: keep-alive
// traffic with up to this many requests in flight on one worker allocates nothing per request.
inline constexpr size_t kMaxPooledRequestStates = 256;
// Upstream TLS: the decrypt buffer (one per worker, made with the first TLS connection) and the
// failure log rate. It must stay apart from the TLS listener's plain_buffer(): a client
// connection's read view points into that one while its callback starts an upstream exchange,
// and taking a pooled TLS connection (PeerSilent) reads into the upstream buffer right then.
inline constexpr size_t kUpstreamTlsPlainBytes = kReadBufferBytes + 16 * 1024;
inline constexpr int kUpstreamTlsLogBurst = 10;

// A client connection's place in one of the worker's deadline lists. All entries of a list share
// one timeout, so appending keeps each list sorted by deadline; one per-worker timer expires them
// (no uv_timer_t per connection, no timer-heap update per request).
struct DeadlineNode {
  DeadlineNode* prev = nullptr;
  DeadlineNode* next = nullptr;
  uint64_t deadline_ms = 0;
  int list = -1;  // index into Worker's lists, -1 when in none
  Http1ClientConnection* owner = nullptr;
};
enum DeadlineList : int { kIdleDeadlines = 0, kLingerDeadlines = 1, kDeadlineListCount = 2 };

// Response bytes gathered for one client write (see Http1ClientConnection::QueueToClient). Shared by
// the worker's connections: pieces are queued and flushed within one callback of one connection.
struct ClientOutput {
  struct Piece {
    const char* borrowed = nullptr;  // nullptr: `offset` indexes `owned`
    size_t offset = 0;
    size_t size = 0;
  };
  static constexpr size_t kMaxPieces = 16;
  Http1ClientConnection* owner = nullptr;  // whose pieces these are (when count > 0)
  std::string owned;                  // copied bytes of the pieces
  Piece pieces[kMaxPieces];
  size_t count = 0;
};

class Worker {
 public:
  Worker(int index, const ProxyOptions& options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Sets up the loop around already bound listening sockets (takes ownership of both fds):
  // `listen_fd` for cleartext HTTP on `port`, and `tls_listen_fd` (-1: none) for TLS on
  // `tls_port` with `tls` (outlives the worker). Called before the thread starts.
  absl::Status Init(int listen_fd, uint16_t port, int tls_listen_fd = -1, uint16_t tls_port = 0,
                    const ServerTlsContext* tls = nullptr);
  // Thread body: runs the loop until RequestStop() has closed everything.
  void Run();

  // Any thread.
  void Publish(std::shared_ptr<const RuntimeConfig> config);
  void RequestStop();
  // Starts listening on sockets Init() left bound only (ProxyOptions::accept_at_start false).
  // Idempotent.
  void RequestAccepting();
  // Whether the listeners accept: not yet (accept_at_start false, before RequestAccepting()
  // took effect), yes, or listen() failed (logged). Any thread.
  enum class ListenState : int { kNotYet, kListening, kFailed };
  ListenState listen_state() const { return listen_state_.load(std::memory_order_acquire); }
  // Graceful drain (docs/operations.md "Graceful drain"): the worker closes its listeners, closes
  // idle keep-alive connections, and lets the others finish their requests (HTTP/1.1 responses
  // then carry `Connection: close`, HTTP/2 connections get GOAWAY). Idempotent; RequestStop()
  // still closes whatever is left.
  void RequestDrain();
  // After RequestDrain(): the worker has begun draining and has no client connection left
  // (WebSocket tunnels count until the stop cuts them). Any thread.
  bool drained() const { return drained_.load(std::memory_order_acquire); }
  // Client connections open when the drain began, and (after Run() returned) those the stop
  // closed. Any thread; meaningful once drained() or after the thread ended.
  int64_t connections_at_drain() const { return connections_at_drain_.load(std::memory_order_relaxed); }
  int64_t connections_cut() const { return connections_cut_.load(std::memory_order_relaxed); }
  uint64_t requests_total() const { return requests_total_.load(std::memory_order_relaxed); }

  // Loop thread only, below.
  uv_loop_t* loop() { return &loop_; }
  const ProxyOptions& options() const { return options_; }
  // The worker drains: the current responses are the connections' last (a flag check per
  // response, nothing else on the request path).
  bool draining() const { return draining_; }
  // Draining: OnDrainGoAway runs at loop time `due_ms` or later (a connection that switched to
  // HTTP/2 after the drain began, its GOAWAY notice sent).
  void ScheduleDrainGoAway(uint64_t due_ms);
  uint16_t port() const { return port_; }
  uint16_t tls_port() const { return tls_port_; }
  char* read_buffer() { return read_buffer_.get(); }
  // TLS connections: the listener's context, and the buffer they decrypt into (one per loop,
  // kReadBufferBytes, like the read buffer: reads are consumed synchronously).
  const ServerTlsContext* tls_context() const { return tls_context_; }
  char* plain_buffer() { return plain_buffer_.get(); }
  // A line about a misbehaving client may be logged now (kClientErrorLogsPerSecond); when true,
  // `*suppressed` is how many were left out since the last one allowed.
  bool AllowClientErrorLog(uint64_t* suppressed);
  void CountRequest() { requests_total_.fetch_add(1, std::memory_order_relaxed); }
  // The newest published config (nullptr before the first Publish).
  const std::shared_ptr<const RuntimeConfig>& CurrentConfig();
  // The worker's DNS resolver (set by Init).
  Resolver* resolver() { return resolver_.get(); }

  // Upstream connections: a pooled idle one for `key`, or nullptr.
  UpstreamConnection* AcquireIdle(const std::string& key);
  // Puts an idle connection in the pool; false when the pool for its key is full.
  bool AddIdle(UpstreamConnection* connection);
  void RemoveIdle(UpstreamConnection* connection);
  // The pool key of a connection to `target`: the target's own key for cleartext (`tls` null),
  // else "target|context key|SNI" (a connection is reused only with the same TLS identity). The
  // reference is valid until the next call (a per-worker buffer: no allocation once grown).
  const std::string& UpstreamPoolKey(const dp::Target& target, const dp::UpstreamTlsContext* tls,
                                     absl::string_view server_name);
  // A new connection towards the target under `pool_key` (UpstreamPoolKey), already connecting;
  // over TLS with `tls` (SNI `server_name`, offering the last session kept for the key) when not
  // null. Errors: connect failure.
  absl::StatusOr<UpstreamConnection*> ConnectUpstream(const dp::Target& target, const std::string& pool_key,
                                                      const dp::UpstreamTlsContext* tls = nullptr,
                                                      absl::string_view server_name = {});
  // Upstream TLS sessions: the last one per pool key (takes the reference), offered on the
  // next new connection with that key.
  void KeepUpstreamTlsSession(const std::string& pool_key, SSL_SESSION* session);
  // Upstream TLS failure log lines: at most kUpstreamTlsLogBurst per second per worker.
  bool AllowUpstreamTlsLog();
  // The session kept for `pool_key` if it can be resumed, else null (borrowed).
  SSL_SESSION* UpstreamTlsSession(const std::string& pool_key);
  // The buffer upstream TLS connections decrypt into (kUpstreamTlsPlainBytes; made on first use).
  char* upstream_tls_plain_buffer();
  // Upstream HTTP/2 connections (services grpc/grpcs).
  Http2UpstreamPool& http2_upstreams() { return *http2_upstreams_; }

  // Called from the last close callback of a connection: frees it after the current iteration.
  void Destroy(Http1ClientConnection* connection);
  void Destroy(UpstreamConnection* connection);

  // Client timeouts: (re)places `node` at the end of `list` with deadline now + timeout.
  void ArmDeadline(DeadlineNode* node, DeadlineList list);
  void DisarmDeadline(DeadlineNode* node);

  // Request-scoped state shared by the worker's client connections.
  FreeList<Exchange>& exchange_pool() { return exchange_pool_; }
  FreeList<Http1HeadStorage>& head_pool() { return head_pool_; }
  ClientOutput& client_output() { return client_output_; }
  // A counter for round-robin picks (each worker its own: no shared mutable state).
  int index() const { return index_; }
  uint64_t NextCursor() { return cursor_++; }
  uint64_t NextConnectionSerial() { return ++connection_serial_; }
  // Client connections currently holding request state (exchange or head storage).
  // The worker thread is the only writer: a plain load and store, no locked instruction.
  void CountRequestState(int delta) {
    request_states_held_.store(request_states_held_.load(std::memory_order_relaxed) + delta,
                               std::memory_order_relaxed);
  }
  int64_t request_states_held() const { return request_states_held_.load(std::memory_order_relaxed); }
  // WebSocket tunnels (tunnel.h): open now, and opened since start. Written on the loop only.
  void CountWebSocketTunnel(int delta) {
    websocket_tunnels_open_.store(websocket_tunnels_open_.load(std::memory_order_relaxed) + delta,
                                  std::memory_order_relaxed);
    if (delta > 0) {
      websocket_tunnels_opened_.store(websocket_tunnels_opened_.load(std::memory_order_relaxed) + 1,
                                      std::memory_order_relaxed);
    }
  }
  // Client connections accepted since start, and open now (Kong's nginx_connections_total).
  // Written on the loop only (plain load and store).
  uint64_t connections_accepted() const { return connections_accepted_.load(std::memory_order_relaxed); }
  int64_t connections_active() const { return connections_active_.load(std::memory_order_relaxed); }
  int64_t websocket_tunnels_open() const { return websocket_tunnels_open_.load(std::memory_order_relaxed); }
  uint64_t websocket_tunnels_opened() const { return websocket_tunnels_opened_.load(std::memory_order_relaxed); }

  // Counters for tests.
  size_t idle_upstream_count() const;
  size_t idle_upstream_keys() const { return idle_.size(); }

 private:
  struct Uv;
  // One listening socket, polled and accepted by hand (see OnAcceptable).
  struct Listener {
    Worker* worker = nullptr;
    bool tls = false;
    int fd = -1;
    bool polling = false;  // poll initialised (closed by BeginShutdown)
    uv_poll_t poll;
  };
  enum ListenerIndex : int { kCleartextListener = 0, kTlsListener = 1, kListenerCount = 2 };
  void OnWake();
  void OnAcceptable(Listener& listener, int status);
  void PauseAccepting();
  void OnAcceptRetry();
  void BeginShutdown();
  void BeginDrain();
  // listen() and poll the listeners not polled yet; a libuv error code, 0 when done.
  int StartListening();
  void CloseListeners();
  // Draining and no client left: tell the ProxyServer (drained()).
  void CheckDrained();
  void OnDrainGoAway();
  void DrainGraveyard();
  void OnSweep();

  const int index_;
  const ProxyOptions options_;
  uint16_t port_ = 0;
  uint16_t tls_port_ = 0;
  const ServerTlsContext* tls_context_ = nullptr;
  uv_loop_t loop_;
  // The listeners are polled and accepted by hand (one accept4 per readiness event, which also
  // returns the peer address): libuv's own accept loop calls accept4 until EAGAIN and discards
  // the address, costing an extra accept4 and a getpeername per connection.
  Listener listeners_[kListenerCount];
  uv_timer_t accept_retry_;  // re-enables accepting after EMFILE/ENFILE
  uv_timer_t drain_goaway_;  // the final GOAWAY of a drain (kDrainGoAwayDelayMs)
  uv_async_t wake_;
  uv_check_t reaper_;
  uv_timer_t sweeper_;  // expires client deadlines every kDeadlineSweepMs
  bool loop_initialised_ = false;
  bool shutting_down_ = false;
  bool draining_ = false;
  std::unique_ptr<char[]> read_buffer_;
  std::unique_ptr<char[]> plain_buffer_;  // TLS listener only
  uint64_t client_log_second_ = 0;        // uv_now / 1000 of the current log window
  int client_logs_in_second_ = 0;
  uint64_t client_logs_suppressed_ = 0;

  std::mutex mu_;
  std::shared_ptr<const RuntimeConfig> pending_config_;  // guarded by mu_
  bool stop_requested_ = false;                           // guarded by mu_
  bool drain_requested_ = false;                          // guarded by mu_
  bool accept_requested_ = false;                         // guarded by mu_
  std::atomic<bool> drained_{false};
  std::atomic<ListenState> listen_state_{ListenState::kNotYet};
  std::atomic<int64_t> connections_at_drain_{0};
  std::atomic<int64_t> connections_cut_{0};
  std::atomic<bool> has_pending_config_{false};

  std::shared_ptr<const RuntimeConfig> config_;
  std::unique_ptr<Resolver> resolver_;  // closed by BeginShutdown, freed with the worker
  std::atomic<uint64_t> requests_total_{0};
  std::atomic<uint64_t> connections_accepted_{0};
  std::atomic<int64_t> connections_active_{0};

  absl::flat_hash_map<Http1ClientConnection*, std::unique_ptr<Http1ClientConnection>> clients_;
  absl::flat_hash_map<UpstreamConnection*, std::unique_ptr<UpstreamConnection>> upstreams_;
  absl::flat_hash_map<std::string, std::vector<UpstreamConnection*>> idle_;
  // Upstream TLS (loop thread): see UpstreamPoolKey, KeepUpstreamTlsSession, AllowUpstreamTlsLog.
  std::string upstream_pool_key_;
  std::unique_ptr<char[]> upstream_tls_plain_;
  absl::flat_hash_map<std::string, SSL_SESSION*> upstream_tls_sessions_;
  uint64_t upstream_tls_log_second_ = 0;
  int upstream_tls_log_count_ = 0;
  std::vector<std::unique_ptr<Http1ClientConnection>> dead_clients_;
  std::vector<std::unique_ptr<UpstreamConnection>> dead_upstreams_;
  std::unique_ptr<Http2UpstreamPool> http2_upstreams_;

  struct DeadlineListHead {
    DeadlineNode* first = nullptr;
    DeadlineNode* last = nullptr;
  };
  DeadlineListHead deadlines_[kDeadlineListCount];
  FreeList<Exchange> exchange_pool_{kMaxPooledRequestStates};
  FreeList<Http1HeadStorage> head_pool_{kMaxPooledRequestStates};
  ClientOutput client_output_;
  uint64_t cursor_ = 0;
  uint64_t connection_serial_ = 0;
  std::atomic<int64_t> request_states_held_{0};
  std::atomic<int64_t> websocket_tunnels_open_{0};
  std::atomic<uint64_t> websocket_tunnels_opened_{0};
};

}  // namespace portico::dp
