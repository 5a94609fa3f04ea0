#include "control_plane/sync/sync_metrics.h"

#include "common/metrics/metrics.h"

namespace portico::cp {

SyncMetrics::SyncMetrics(Registry& r)
    : builds(r.AddCounter("portico_cp_snapshot_builds_total", "Snapshots built (validated, serialized, hashed, gzipped)")),
      build_seconds(r.AddHistogram("portico_cp_snapshot_build_seconds",
                                   "Snapshot build time (export, validate, serialize, hash, gzip)",
                                   {.005, .01, .025, .05, .1, .25, .5, 1, 2, 5})),
      bytes_raw(r.AddGauge("portico_cp_snapshot_bytes", "Size of the latest snapshot", {{"encoding", "raw"}})),
      bytes_gzip(r.AddGauge("portico_cp_snapshot_bytes", "Size of the latest snapshot", {{"encoding", "gzip"}})),
      push_ack(r.AddCounter("portico_cp_sync_pushes_total", "Snapshot pushes by result", {{"result", "ack"}})),
      push_nack(r.AddCounter("portico_cp_sync_pushes_total", "Snapshot pushes by result", {{"result", "nack"}})),
      push_up_to_date(
          r.AddCounter("portico_cp_sync_pushes_total", "Snapshot pushes by result", {{"result", "up_to_date"}})),
      push_sent(r.AddCounter("portico_cp_sync_pushes_total", "Snapshot pushes by result", {{"result", "sent"}})),
      deltas_sent(r.AddCounter("portico_cp_deltas_sent_total",
                               "Pushes sent as a delta from the version the DP serves (also counted as sent)")),
      convergence(r.AddHistogram("portico_cp_sync_convergence_seconds",
                                 "Admin commit to DP ACK, per DP connected when the version was published",
                                 {.05, .1, .25, .5, 1, 2, 5, 10, 30})),
      connected(r.AddGauge("portico_cp_connected_data_planes", "Data planes with a live stream")),
      config_version(r.AddGauge("portico_cp_config_version", "Version of the latest published snapshot")),
      admission_rejects(
          r.AddCounter("portico_cp_admission_rejects_total", "New streams refused by the admission token bucket")),
      store_version(r.AddGauge("portico_cp_store_config_version",
                               "Config version of the store, as last read by the snapshot builder")),
      corrupt_rows(r.AddGauge("portico_cp_store_corrupt_rows",
                              "Store rows whose entity cannot be parsed, as of the last read (DELETE or PUT them)")) {
  for (const char* reason : kBuildFailureReasons) {
    build_failing.push_back(
        r.AddGauge("portico_cp_config_build_failing",
                   "1 when the store's current config version cannot be published, by reason (DPs keep the last one)",
                   {{"reason", reason}}));
  }
}

}  // namespace portico::cp
