#pragma once
// The OTLP batch senders of a data plane: the telemetry BatchSender (data_plane/telemetry), one
// per export target for the whole process (a BatchSenders registry of their own; its own thread,
// retries with backoff, a queue bounded in entries and bytes, drop counters), started when a
// config naming the target is compiled and shared by every snapshot that names it, so a config
// change loses no queued batch; stopped by PruneOtlpSenders once no compiled config names it.
// Each worker hands it whole ExportTraceServiceRequest bodies through its own producer slot.
#include "data_plane/plugins/opentelemetry/span_export.h"

namespace portico::dp::plugins {

// Installs the factory (SetOtlpBatchSenderFactory) for `workers` proxy workers (worker_index
// 0..workers-1). Before the workers start.
void InstallOtlpSenders(int workers);
// The sender queue's byte bound when queue.max_bytes is not set.
inline constexpr size_t kDefaultOtlpQueueBytes = 64u << 20;
// Stops and forgets the senders no compiled config uses any more: after a config is published.
void PruneOtlpSenders();
// Senders running now.
size_t OtlpSenderCount();
// The senders' figures summed (entries are batches here): delivered, and dropped or failed.
struct OtlpSenderTotals {
  uint64_t batches_delivered = 0;
  uint64_t batches_lost = 0;  // dropped (queue full) or failed (retries ran out)
};
OtlpSenderTotals OtlpSenderStats();
// Stops every sender (what is not delivered yet is dropped). After the workers stopped.
void StopOtlpSenders();

}  // namespace portico::dp::plugins
