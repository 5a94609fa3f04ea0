#pragma once
// One proxy worker: a thread that owns one uv_loop_t, its SO_REUSEPORT listener, its client
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
#include "data_plane/proxy/proxy_server.h"
#include "data_plane/proxy/runtime_config.h"

namespace portico::proxy {

class ClientConnection;
class UpstreamConnection;

// Flow-control thresholds shared by both directions.
inline constexpr size_t kHighWaterBytes = 256 * 1024;
inline constexpr size_t kLowWaterBytes = 64 * 1024;
inline constexpr size_t kReadBufferBytes = 64 * 1024;
inline constexpr size_t kMaxIdlePerKey = 64;
inline constexpr int64_t kUpstreamIdleTimeoutMs = 60 * 1000;
inline constexpr int64_t kClientIdleTimeoutMs = 60 * 1000;
inline constexpr int64_t kLingerTimeoutMs = 2 * 1000;

class Worker {
 public:
  Worker(int index, const ProxyOptions& options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Sets up the loop around an already bound listening socket (takes ownership of `fd`).
  // Called before the thread starts.
  absl::Status Init(int listen_fd, uint16_t port);
  // Thread body: runs the loop until RequestStop() has closed everything.
  void Run();

  // Any thread.
  void Publish(std::shared_ptr<const RuntimeConfig> config);
  void RequestStop();
  uint64_t requests_total() const { return requests_total_.load(std::memory_order_relaxed); }

  // Loop thread only, below.
  uv_loop_t* loop() { return &loop_; }
  const ProxyOptions& options() const { return options_; }
  uint16_t port() const { return port_; }
  char* read_buffer() { return read_buffer_.get(); }
  void CountRequest() { requests_total_.fetch_add(1, std::memory_order_relaxed); }
  // The newest published config (nullptr before the first Publish).
  const std::shared_ptr<const RuntimeConfig>& CurrentConfig();

  // Upstream connections: a pooled idle one for `key`, or nullptr.
  UpstreamConnection* AcquireIdle(const std::string& key);
  // Puts an idle connection in the pool; false when the pool for its key is full.
  bool AddIdle(UpstreamConnection* connection);
  void RemoveIdle(UpstreamConnection* connection);
  // A new connection towards ip:port, already connecting. Errors: bad address or connect failure.
  absl::StatusOr<UpstreamConnection*> ConnectUpstream(const std::string& ip, uint16_t port);

  // Called from the last close callback of a connection: frees it after the current iteration.
  void Destroy(ClientConnection* connection);
  void Destroy(UpstreamConnection* connection);

  // Counters for tests.
  size_t idle_upstream_count() const;

 private:
  struct Uv;
  void OnWake();
  void OnNewConnection(int status);
  void BeginShutdown();
  void DrainGraveyard();

  const int index_;
  const ProxyOptions options_;
  uint16_t port_ = 0;
  uv_loop_t loop_;
  uv_tcp_t listener_;
  uv_async_t wake_;
  uv_check_t reaper_;
  bool loop_initialised_ = false;
  bool shutting_down_ = false;
  std::unique_ptr<char[]> read_buffer_;

  std::mutex mu_;
  std::shared_ptr<const RuntimeConfig> pending_config_;  // guarded by mu_
  bool stop_requested_ = false;                           // guarded by mu_
  std::atomic<bool> has_pending_config_{false};

  std::shared_ptr<const RuntimeConfig> config_;
  std::atomic<uint64_t> requests_total_{0};

  absl::flat_hash_map<ClientConnection*, std::unique_ptr<ClientConnection>> clients_;
  absl::flat_hash_map<UpstreamConnection*, std::unique_ptr<UpstreamConnection>> upstreams_;
  absl::flat_hash_map<std::string, std::vector<UpstreamConnection*>> idle_;
  std::vector<std::unique_ptr<ClientConnection>> dead_clients_;
  std::vector<std::unique_ptr<UpstreamConnection>> dead_upstreams_;
};

}  // namespace portico::proxy
