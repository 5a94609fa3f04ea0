#pragma once
// What the CP knows about each data plane, as shown by GET /clustering/data-planes.
// Produced by control_plane/sync, read by control_plane/admin. No gRPC types here.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace portico {

struct DataPlaneStatus {
  std::string id;              // node id (= identity in its client certificate)
  std::string hostname;
  std::string ip;              // peer address seen by the CP
  std::string version;         // DP build version
  std::string config_hash;     // hex of the hash it serves; "" if none
  uint64_t config_version = 0; // version it serves (0 = none)
  int64_t last_seen = 0;       // seconds since epoch
  std::string sync_status;     // Kong vocabulary: "normal", "unknown", "kong_version_incompatible", ...
  // "connected_synced", "syncing", "stale" (no ACK within the ACK timeout), "nacked",
  // "disconnected", "incompatible", "refused".
  std::string state;
  std::string last_error;      // last NACK reason or refusal, "" if none
  std::map<std::string, std::string> labels;
  int64_t cert_expiry = 0;     // notAfter of its client certificate, seconds since epoch
  // How far behind the latest published version it is: versions (latest - served in the same
  // epoch; latest if it serves another epoch or nothing) and seconds (now - commit time of the
  // oldest change it lacks; 0 when it serves the latest).
  uint64_t lag_versions = 0;
  int64_t lag_seconds = 0;
  int64_t connected_since = 0; // start of the current stream (seconds since epoch); 0 if none
  uint64_t nack_count = 0;     // NACKs received from this node since the CP started
};

class DataPlaneStatusSource {
 public:
  virtual ~DataPlaneStatusSource() = default;
  // Thread-safe snapshot of every DP known since start, sorted by id.
  virtual std::vector<DataPlaneStatus> ListDataPlanes() const = 0;
};

}  // namespace portico
