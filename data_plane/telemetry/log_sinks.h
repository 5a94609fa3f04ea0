#pragma once
// The process's log sinks that outlive config snapshots, and their metrics: the batch senders of
// http-log plugins (one per distinct plugin config, shared by the snapshots that use it), plus
// the Prometheus series of every log writer and sender. The LogWriters (log_writer.h) are the
// file side.
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "common/metrics/metrics.h"
#include "data_plane/telemetry/batch_sender.h"
#include "data_plane/telemetry/log_writer.h"

namespace portico::dp {

// Worker slots of every writer and sender created from now on (the DP's --workers).
void SetLogProducers(int producers);

// Thread-safe (a mutex taken when snapshots compile or publish, never per request).
class BatchSenders {
 public:
  static BatchSenders& Global();
  // The sender for `key` (e.g. the plugin's normalized config), started with `options` on first
  // use (options.producers is set here). Shared by every holder of the pointer.
  absl::StatusOr<std::shared_ptr<BatchSender>> Get(const std::string& key, BatchSenderOptions options);
  // Stops and forgets the senders nothing else holds any more (no compiled config uses them):
  // called after a config is published. Their counters stay in the totals.
  void Prune();
  void StopAll();
  // Totals over every sender this process had.
  BatchSenderStats Totals() const;
  size_t size() const;
  void set_producers(int producers);

 private:
  mutable std::mutex mu_;
  int producers_ = 1;
  std::map<std::string, std::shared_ptr<BatchSender>> senders_;
  BatchSenderStats retired_;  // counters of pruned senders
};

// Registers the log metrics (docs/operations.md "Access logs"): portico_access_log_* for the
// --access-log writer (`access_log` may be null: off), portico_log_lines_* over every log writer
// (--access-log and file-log), portico_http_log_* over every http-log sender.
void RegisterLogMetrics(Registry* registry, const LogWriter* access_log);

}  // namespace portico::dp
