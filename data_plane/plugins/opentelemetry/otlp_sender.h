#pragma once
// The OTLP batch senders of a data plane: the telemetry BatchSender (data_plane/telemetry), one
// per export target for the whole process (a BatchSenders registry of their own) (its own thread; retries with backoff, bounded queue,
// drop counters), shared by every snapshot that names that target, so a config change loses no
// queued batch. Each worker hands it whole ExportTraceServiceRequest bodies through its own
// producer slot.
#include "data_plane/plugins/opentelemetry/span_export.h"

namespace portico::dp::plugins {

// Installs the factory (SetOtlpBatchSenderFactory) for `workers` proxy workers (worker_index
// 0..workers-1). Before the workers start.
void InstallOtlpSenders(int workers);
// The senders' figures summed (entries are batches here): delivered, and dropped or failed.
struct OtlpSenderTotals {
  uint64_t batches_delivered = 0;
  uint64_t batches_lost = 0;  // dropped (queue full) or failed (retries ran out)
};
OtlpSenderTotals OtlpSenderStats();
// Stops every sender (what is not delivered yet is dropped). After the workers stopped.
void StopOtlpSenders();

}  // namespace portico::dp::plugins
