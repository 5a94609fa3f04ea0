#pragma once
// The control plane side of the CP <-> DP config stream (docs/sync.md, SYNC-PROTOCOL.md §5).
// Serves portico.sync.v1.ConfigSync over mutual TLS, builds one snapshot per config version
// (debounced) and pushes the latest one to every connected data plane. No gRPC types here.
//
// Threading: one builder thread; one gRPC handler thread plus one reader thread per stream
// (sync gRPC API, "a thread per stream"). All public methods are thread-safe.
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

struct BuiltSnapshot;

struct SyncServerOptions {
  std::string listen = "0.0.0.0:8005";   // host:port; port 0 picks a free port (see port())
  std::string cert_file, key_file, ca_file;  // CP server cert/key; cluster CA that signs DP certs
  std::string cp_id;                     // node id of this CP, sent in HelloReply
  absl::Duration debounce_quiet = absl::Milliseconds(50), debounce_max = absl::Milliseconds(500);
  absl::Duration heartbeat_interval = absl::Seconds(15);  // told to DPs; 3x silence = disconnected
  size_t chunk_bytes = size_t{1} << 20;  // snapshot chunk size, <= 3 MiB (gRPC limit is 4 MiB)
};

class SyncServer : public DataPlaneStatusSource {
 public:
  // Builds the first snapshot (read_config error -> Start fails; an invalid config is logged and
  // not published), then listens. `read_config` is called on the builder thread and must read
  // the store in one transaction. `clock` must outlive the server.
  static absl::StatusOr<std::unique_ptr<SyncServer>> Start(
      SyncServerOptions options, std::function<absl::StatusOr<StoredConfig>()> read_config,
      const Clock& clock);
  ~SyncServer() override;  // Stop()s

  uint16_t port() const;
  // Call after each committed Admin API write. Debounced (quiet/max); never blocks on sync.
  void NotifyConfigChanged();
  // Every DP seen since start (connected, refused, incompatible or disconnected), sorted by id.
  std::vector<DataPlaneStatus> ListDataPlanes() const override;
  // Latest published snapshot's version (empty before the first successful build).
  ConfigVersion latest() const;
  std::shared_ptr<const BuiltSnapshot> latest_snapshot() const;
  // Number of snapshots published since start (for tests and metrics).
  uint64_t snapshots_published() const;
  // Sends Goaway{DRAINING} to every stream, closes them and stops the builder. Idempotent.
  void Stop();

  class Impl;

 private:
  explicit SyncServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico
