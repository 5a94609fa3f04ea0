#pragma once
// The control plane side of the CP <-> DP config stream (docs/sync.md, SYNC-PROTOCOL.md §5).
// Serves portico.sync.v1.ConfigSync over mutual TLS, builds one snapshot per config version
// (debounced) and pushes the latest one to every connected data plane. No gRPC types here.
//
// The parts: SnapshotBuilder (snapshot_builder.h: debounce, read, validate, build, publish,
// build-failure status), DpSession (dp_session.h: the gRPC reactor of one DP stream),
// DataPlaneTable (dp_status_table.h: what GET /clustering/data-planes shows), SyncHub
// (sync_hub.h: what the sessions share), AdmissionBucket and FullSendSlots. This class wires them
// to a gRPC server.
//
// Threading: the builder's thread, one timer thread (Hello/ACK/heartbeat timeouts), and gRPC's
// callback threads running one ServerBidiReactor per stream (no thread per stream; see
// docs/sync.md for why). All per-stream state is guarded by one mutex (the hub's) that is never
// held while building a snapshot. All public methods are thread-safe.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/config/config_set.h"
#include "control_plane/cluster_status.h"

namespace portico {
class Registry;  // common/metrics/metrics.h
struct BuiltSnapshot;
}  // namespace portico

namespace portico::cp {

class SyncTestHooks;

struct SyncServerOptions {
  std::string listen = "0.0.0.0:8005";   // host:port; port 0 picks a free port (see port())
  std::string cert_file, key_file, ca_file;  // CP server cert/key; cluster CA that signs DP certs
  std::string cp_id;                     // node id of this CP, sent in HelloReply
  // SnapshotBuilder::Options: coalescing of changes that keep coming, the longest wait, and the
  // wait of a change after `debounce_quiet` without any.
  absl::Duration debounce_quiet = absl::Milliseconds(50), debounce_max = absl::Milliseconds(500);
  absl::Duration debounce_first = absl::Milliseconds(10);
  absl::Duration heartbeat_interval = absl::Seconds(15);  // told to DPs; 3x silence = disconnected
  size_t chunk_bytes = size_t{1} << 20;  // snapshot chunk size, <= 3 MiB (gRPC limit is 4 MiB)
  // A stream that sends no Hello within this is closed (Goaway HELLO_TIMEOUT, DEADLINE_EXCEEDED).
  absl::Duration hello_timeout = absl::Seconds(10);
  // A connection that has not completed the TLS handshake and the HTTP/2 preface within this is
  // closed by gRPC (GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS; gRPC's own default is 120 s), so idle
  // or slow-loris TCP connections to the cluster port cost little.
  absl::Duration handshake_timeout = absl::Seconds(5);
  // No ACK/NACK within ack_timeout + ack_timeout_per_mib x compressed MiB -> state "stale"
  // (nothing is resent on the same stream; a later ACK still counts).
  absl::Duration ack_timeout = absl::Seconds(30), ack_timeout_per_mib = absl::Seconds(1);
  // New-stream admission: token bucket (rate per second, burst). Refused streams get
  // Goaway{OVERLOADED, retry_after_s} and RESOURCE_EXHAUSTED. rate <= 0 disables it.
  double admission_rate = 50, admission_burst = 100;
  // At most this many full snapshots are being written at once; the others wait their turn.
  int max_concurrent_full_sends = 32;
  // Where the portico_cp_* metrics go; null = a private registry (see metrics_text()).
  Registry* metrics = nullptr;
  // The store's change feed (SnapshotBuilder::Options::read_changes); unset: every build reads
  // the whole config.
  std::function<absl::StatusOr<StoredChanges>(uint64_t since)> read_changes;
};

// Counters for tests and the benchmark (the same figures are exported as metrics).
struct SyncServerStats {
  uint64_t admission_rejects = 0;
  uint64_t streams_live = 0;          // reactors not yet done (any phase)
  int full_sends_in_progress = 0;
  int full_sends_peak = 0;            // highest full_sends_in_progress seen
  uint64_t stale_transitions = 0;     // ACK timeouts
  uint64_t hello_timeouts = 0;
  uint64_t delta_sends = 0;           // pushes sent as a delta
};

class SyncServer : public DataPlaneStatusSource {
 public:
  // Builds the first snapshot (read_config error -> Start fails; an invalid config or a corrupt
  // row is logged, reported by BuildStatus() and the metrics, and not published), then listens.
  // `read_config` is called on the builder thread and must read the store in one transaction;
  // a result with corrupt rows is never published. `clock` must outlive the server.
  // `test_hooks` (fault injection, sync_test_hooks.h) is null in production; it must outlive the
  // server.
  static absl::StatusOr<std::unique_ptr<SyncServer>> Start(
      SyncServerOptions options, std::function<absl::StatusOr<StoredConfig>()> read_config,
      const Clock& clock, SyncTestHooks* test_hooks = nullptr);
  ~SyncServer() override;  // Stop()s

  uint16_t port() const;
  // Call after each committed Admin API write. Debounced (quiet/max); never blocks on sync.
  void NotifyConfigChanged();
  // Every DP seen since start (connected, refused, incompatible or disconnected), sorted by id.
  std::vector<DataPlaneStatus> ListDataPlanes() const override;
  // Whether the store's current version could be built and published (GET /status).
  ConfigBuildStatus BuildStatus() const override;
  // The latest target-health report of every connected DP that sends them (docs/sync.md).
  std::vector<DataPlaneTargetHealth> TargetHealth() const override;
  // Queues a HealthOverride on the stream of every connected DP (never waits for a DP); returns
  // the node ids it was queued for, sorted. Nothing is kept: a DP that connects later gets none.
  std::vector<std::string> SendHealthOverride(const TargetHealthOverride& command);
  // Prometheus text of portico_upstream_target_health{upstream,target,data_plane} for the
  // connected DPs' reports (HELP and TYPE lines included, also when there is no series).
  std::string TargetHealthMetricsText() const;
  // Latest published snapshot's version (empty before the first successful build).
  ConfigVersion latest() const;
  std::shared_ptr<const BuiltSnapshot> latest_snapshot() const;
  // Number of snapshots published since start (for tests and metrics).
  uint64_t snapshots_published() const;
  SyncServerStats stats() const;
  // Prometheus text of the registry the metrics were written to (options.metrics or private),
  // followed by TargetHealthMetricsText().
  std::string metrics_text() const;
  // Reads the cluster cert, key and CA bundle again from options' paths (SIGHUP). When they are
  // readable, parse and the key belongs to the cert, new TLS handshakes use them within
  // kCertificateRefreshSeconds; streams already established continue on their connections.
  // Otherwise the old material stays in use and the error says why (never with key material).
  absl::Status ReloadCertificates();
  // notAfter of the cluster certificate in use, Unix seconds
  // (portico_cluster_certificate_expiry_seconds).
  int64_t certificate_not_after() const;
  // `callback` (empty = none) is called whenever a DP's stream starts or ends or a node is
  // refused, with the server's lock held, on a gRPC or timer thread: it must only signal (never
  // block, never call this server).
  void SetOnDataPlanesChanged(std::function<void()> callback);
  // Sends Goaway{DRAINING} to every stream, closes them and stops the builder. Idempotent.
  void Stop();

  // gRPC's file watcher looks at the CP's private copies of the cluster files this often; a
  // reload is in use for new handshakes at most this long after ReloadCertificates returns.
  static constexpr int kCertificateRefreshSeconds = 1;

 private:
  class Impl;
  explicit SyncServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::cp
