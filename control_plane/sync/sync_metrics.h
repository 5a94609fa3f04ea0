#pragma once
// The portico_cp_* sync metrics (docs/sync.md "CP metrics"), registered once per SyncServer and
// written by the snapshot builder and the DP sessions. The metric objects are thread-safe.
#include <vector>

namespace portico {
namespace metrics {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace metrics

// Why the store's current version could not be published (ConfigBuildStatus::reason); the label
// values of portico_cp_config_build_failing.
inline constexpr const char* kBuildFailureReasons[] = {"corrupt_rows", "invalid_config", "build_error", "read_error"};

struct SyncMetrics {
  explicit SyncMetrics(metrics::Registry& registry);

  metrics::Counter* builds;
  metrics::Histogram* build_seconds;
  metrics::Gauge* bytes_raw;
  metrics::Gauge* bytes_gzip;
  metrics::Counter* push_ack;
  metrics::Counter* push_nack;
  metrics::Counter* push_up_to_date;
  metrics::Counter* push_sent;
  metrics::Histogram* convergence;
  metrics::Gauge* connected;
  metrics::Gauge* config_version;
  metrics::Counter* admission_rejects;
  metrics::Gauge* store_version;
  metrics::Gauge* corrupt_rows;
  std::vector<metrics::Gauge*> build_failing;  // one per kBuildFailureReasons entry
};

}  // namespace portico
