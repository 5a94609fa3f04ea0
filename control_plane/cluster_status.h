#pragma once
// What the CP knows about each data plane, as shown by GET /clustering/data-planes, and about
// its own snapshot builds, as shown by GET /status. Produced by control_plane/sync, read by
// control_plane/admin. No gRPC or protobuf types here.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config/corrupt_row.h"

namespace portico::cp {

struct DataPlaneStatus {
  std::string id;              // node id (= identity in its client certificate)
  std::string hostname;
  std::string ip;              // peer address seen by the CP
  std::string version;         // DP build version
  std::string config_hash;     // hex of the hash it serves; "" if none
  uint64_t config_version = 0; // version it serves (0 = none)
  int64_t last_seen = 0;       // seconds since epoch
  std::string sync_status;     // Kong vocabulary: "normal", "unknown", "kong_version_incompatible", ...
  // One of (docs/admin-api.md "Data planes"):
  //   "connected_synced"  serves the store's current version;
  //   "syncing"           behind, and a snapshot is on its way (or queued for a send slot);
  //   "outdated"          behind, and nothing can be sent: the CP cannot build the store's
  //                       current version (corrupt row, invalid config); it keeps serving its
  //                       last snapshot until the config is repaired;
  //   "stale"             no ACK within the ACK timeout;
  //   "nacked"            rejected the latest published version (last_error says why);
  //   "disconnected", "incompatible" (build/protocol refused; or, with sync_status
  //   "plugin_set_incompatible", the config needs a plugin it cannot run and is not sent),
  //   "refused" (node id != cert).
  std::string state;
  std::string last_error;      // last NACK reason or refusal, "" if none
  std::map<std::string, std::string> labels;
  int64_t cert_expiry = 0;     // notAfter of its client certificate, seconds since epoch
  // How far behind the store's current version (as last read by the snapshot builder, published
  // or not) it is: versions (current - served in the same epoch; current if it serves another
  // epoch or nothing) and seconds (now - commit time of the oldest change it lacks, or the time
  // the CP started failing to build it when that is not known; 0 when it serves the current).
  uint64_t lag_versions = 0;
  int64_t lag_seconds = 0;
  int64_t connected_since = 0; // start of the current stream (seconds since epoch); 0 if none
  uint64_t nack_count = 0;     // NACKs received from this node since the CP started
  // The CP that holds (or last held) its stream: that CP's node id and hostname. Several CPs on
  // one database each record their DPs there, so any CP lists every DP.
  std::string control_plane_id;
  std::string control_plane_hostname;
};

// Whether the CP can publish the store's current config version (GET /status "config_build").
struct ConfigBuildStatus {
  bool known = false;              // false: no builder behind this source (nothing to show)
  uint64_t store_version = 0;      // newest version the builder read from the store
  bool published = false;          // a snapshot was published since the CP started
  uint64_t published_version = 0;  // its version (when `published`)
  // True when store_version could not be built: data planes stay on published_version (or on
  // what they serve) and are shown "outdated" until the config is repaired.
  bool failing = false;
  // Why, when failing: "corrupt_rows" (a row cannot be parsed), "invalid_config" (the validator
  // refused the set), "build_error" (serializing/compressing failed), "read_error" (the store
  // could not be read). Metric label values of portico_cp_config_build_failing.
  std::string reason;
  std::string error;               // human-readable, "" when not failing
  int64_t failing_since = 0;       // seconds since epoch when the current failure started
  // Corrupt rows seen by the last read of the store (at most 100 of them), and their count.
  std::vector<CorruptRow> corrupt_rows;
  uint64_t corrupt_row_count = 0;
};

// Target health as data planes report it in their heartbeats (docs/sync.md "Target health").
inline constexpr char kHealthHealthy[] = "HEALTHY";
inline constexpr char kHealthUnhealthy[] = "UNHEALTHY";
inline constexpr char kHealthDnsError[] = "DNS_ERROR";
inline constexpr char kHealthChecksOff[] = "HEALTHCHECKS_OFF";

// One target of one upstream, as one DP sees it.
struct TargetHealthEntry {
  std::string upstream_id;
  std::string upstream_name;
  std::string target;  // "host:port", the stored form
  std::string health;  // one of the kHealth* words
};

// The latest health report of one connected DP.
struct DataPlaneTargetHealth {
  std::string node_id;
  std::string hostname;
  int64_t reported_at = 0;  // Clock seconds of the last heartbeat that carried or confirmed it
  bool truncated = false;   // the DP had more entries than it could send
  std::shared_ptr<const std::vector<TargetHealthEntry>> targets;  // never null
};

// A manual override to send to every connected DP (POST /upstreams/{u}/targets/{t}/healthy).
struct TargetHealthOverride {
  std::string id;  // for the logs of both sides
  std::string upstream_id;
  std::string upstream_name;
  std::string target;
  bool healthy = true;
};

class DataPlaneStatusSource {
 public:
  virtual ~DataPlaneStatusSource() = default;
  // Thread-safe snapshot of every DP known since start, sorted by id.
  virtual std::vector<DataPlaneStatus> ListDataPlanes() const = 0;
  // Thread-safe; the default (a source without a builder) is `known = false`.
  virtual ConfigBuildStatus BuildStatus() const { return {}; }
  // Thread-safe: the latest target-health report of every connected DP that sends them, sorted
  // by node id (a DP that never reported, or whose stream is down, is not listed).
  virtual std::vector<DataPlaneTargetHealth> TargetHealth() const { return {}; }
};

}  // namespace portico::cp
