#pragma once
// The data plane's HTTP/1.1 proxy: N worker threads, each with its own libuv loop and its own
// SO_REUSEPORT listener on the same address, plus one on the TLS address when options.tls is
// enabled. See docs/proxy.md and docs/tls.md.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "data_plane/proxy/deferred_release.h"
#include "data_plane/proxy/proxy_options.h"
#include "data_plane/proxy/runtime_config.h"

namespace portico::dp {

class ServerTlsContext;
class Worker;

class ProxyServer {
 public:
  // Binds the listeners and starts the worker threads. Fails when an address cannot be bound or
  // the TLS listener's default certificate does not load. Until the first Publish() every request
  // gets 404 "no Route matched with those values".
  static absl::StatusOr<std::unique_ptr<ProxyServer>> Start(ProxyOptions options);

  // The actual listening port (options.port may be 0).
  uint16_t port() const { return port_; }
  // The TLS listener's actual port; 0 when it is off.
  uint16_t tls_port() const { return tls_port_; }
  // The TLS listener's context (null when it is off).
  const ServerTlsContext* tls_context() const { return tls_.get(); }
  // Its worker threads: what RuntimeConfig::Compile's worker_slots must cover.
  int workers() const { return static_cast<int>(workers_.size()); }

  // Thread-safe. Hands `config` to every worker (uv_async_send). Requests whose head completes
  // after Publish() returns use it; requests already in flight finish on the config they pinned.
  // The config it replaces is freed on a release thread once no worker or request uses it
  // (DeferredRelease), never on a worker.
  // REQUIRES: config->worker_slots() >= workers() (checked: a config with too few is refused and
  // logged, and the workers keep the one they have).
  void Publish(std::shared_ptr<const RuntimeConfig> config);
  // Called on the release thread after replaced configs were freed (e.g. to prune the log
  // senders only they used). Thread-safe.
  void SetOnConfigReleased(std::function<void()> on_released) { release_.SetOnReleased(std::move(on_released)); }
  // Frees `object` on the same release thread once nothing else holds it (e.g. the sync
  // client's previous config). Thread-safe.
  void Release(std::shared_ptr<const void> object) { release_.Retire(std::move(object)); }

  // Requests whose head was parsed (or that failed to parse), summed over workers (relaxed).
  // Not concurrent with Stop(); after Stop() it returns the final count.
  uint64_t requests_total() const;

  // Client connections currently holding request-scoped state (a request in progress, or
  // unparsed bytes); idle keep-alive connections hold none. Relaxed, for tests. Not concurrent
  // with Stop().
  int64_t request_states_held() const;

  // Client connections (HTTP/1 and HTTP/2, cleartext and TLS) accepted since start and open now,
  // summed over workers (relaxed; for the DP's /metrics). After Stop(): the final count accepted.
  uint64_t connections_accepted() const;
  int64_t connections_active() const;

  // WebSocket tunnels open now, and opened since start, summed over workers (relaxed; for the
  // DP's /metrics). After Stop(): 0 open, and the final count opened.
  int64_t websocket_connections() const;
  uint64_t websocket_connections_opened() const;

  // With options.accept_at_start false: the listeners start accepting now. Thread-safe,
  // idempotent, cheap after the first call (one relaxed load).
  void StartAccepting();

  // Graceful drain, thread-safe and idempotent: every worker closes its listeners (cleartext and
  // TLS; with net.ipv4.tcp_migrate_req=1 their accept queues move to another DP sharing the
  // port), closes idle keep-alive connections, sends GOAWAY on HTTP/2 connections, and answers
  // the requests in progress with `Connection: close`. Stop() ends it; drained() says when
  // nothing is left to wait for.
  void BeginDrain();
  // After BeginDrain(): every worker has no client connection left. Not concurrent with Stop().
  bool drained() const;
  // Every worker's listeners accept (at Start(), or once StartAccepting() took effect on every
  // worker loop). Not concurrent with Stop().
  bool listening() const;
  // A worker's listen() failed after StartAccepting() (logged): that never recovers.
  bool listen_failed() const;

  // What a drain found (BeginDrain() to Stop()), summed over the workers.
  struct DrainCounts {
    int64_t open_at_drain = 0;  // client connections open when the drain began
    int64_t cut_at_stop = 0;    // connections still open when Stop() closed them
  };
  // Meaningful after Stop().
  DrainCounts drain_counts() const { return drain_counts_; }

  // Closes the listeners and every connection, joins the threads. Idempotent; not concurrent
  // with itself.
  void Stop();
  ~ProxyServer();

  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

 private:
  ProxyServer() = default;

  // Declared first: destroyed last, after the workers (joined by Stop()) dropped their configs.
  DeferredRelease release_;
  uint16_t port_ = 0;
  uint16_t tls_port_ = 0;
  std::unique_ptr<ServerTlsContext> tls_;  // outlives the workers (declared before them)
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::mutex stop_mu_;
  bool stopped_ = false;
  std::shared_ptr<const RuntimeConfig> published_;  // guarded by stop_mu_; retired by the next Publish
  uint64_t requests_at_stop_ = 0;
  uint64_t websocket_connections_at_stop_ = 0;
  uint64_t connections_accepted_at_stop_ = 0;
  DrainCounts drain_counts_;
  std::atomic<bool> accepting_{false};
};

}  // namespace portico::dp

