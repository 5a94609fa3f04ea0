#pragma once
// The portico_cp_* sync metrics (docs/sync.md "CP metrics"), registered once per SyncServer and
// written by the snapshot builder and the DP sessions. The metric objects are thread-safe.
#include <vector>

namespace portico {
class Registry;  // common/metrics/metrics.h
class Counter;
class Gauge;
class Histogram;
}  // namespace portico

namespace portico::cp {
namespace metrics {
}  // namespace metrics

// Why the store's current version could not be published (ConfigBuildStatus::reason); the label
// values of portico_cp_config_build_failing.
inline constexpr const char* kBuildFailureReasons[] = {"corrupt_rows", "invalid_config", "build_error", "read_error"};

struct SyncMetrics {
  explicit SyncMetrics(Registry& registry);

  Counter* builds;
  Histogram* build_seconds;
  Gauge* bytes_raw;
  Gauge* bytes_gzip;
  Counter* push_ack;
  Counter* push_nack;
  Counter* push_up_to_date;
  Counter* push_sent;
  Counter* deltas_sent;  // pushes that were deltas (also counted in push_sent)
  Histogram* convergence;
  Gauge* connected;
  Gauge* config_version;
  Counter* admission_rejects;
  Gauge* store_version;
  Gauge* corrupt_rows;
  std::vector<Gauge*> build_failing;  // one per kBuildFailureReasons entry
};

}  // namespace portico::cp
