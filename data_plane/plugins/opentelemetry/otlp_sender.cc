#include "data_plane/plugins/opentelemetry/otlp_sender.h"

#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "data_plane/telemetry/batch_sender.h"
#include "data_plane/telemetry/log_sinks.h"

namespace portico::dp::plugins {
namespace {

// The process's OTLP senders by target key (apart from the http-log ones, so that each has its
// own counters). Touched when a config is compiled and after it is published, never per request.
BatchSenders& OtlpSenders() {
  static BatchSenders* const senders = new BatchSenders();  // never destroyed: workers may export until exit
  return *senders;
}

// Shares the telemetry sender: the registry prunes it once no TelemetryOtlpSender holds it.
class TelemetryOtlpSender final : public OtlpBatchSender {
 public:
  explicit TelemetryOtlpSender(std::shared_ptr<BatchSender> sender) : sender_(std::move(sender)) {}
  bool Send(int worker_index, absl::string_view body, size_t span_count) override {
    return sender_->Enqueue(worker_index, body);
  }

 private:
  std::shared_ptr<BatchSender> sender_;
};

int64_t Ms(double seconds) { return static_cast<int64_t>(std::max(0.0, seconds) * 1000.0); }

absl::StatusOr<std::shared_ptr<OtlpBatchSender>> MakeSender(const OtlpExportTarget& target) {
  BatchSenderOptions options;
  options.name = absl::StrCat("opentelemetry ", target.url);
  options.url = target.url;
  options.headers = target.headers;
  options.timeout_ms = target.connect_timeout_ms + target.send_timeout_ms + target.read_timeout_ms;
  options.max_batch_size = 1;  // an entry is already a whole batch (a request body)
  options.max_coalescing_delay_ms = 0;
  options.max_entries = static_cast<size_t>(std::max<int64_t>(1, target.max_entries / target.max_batch_size));
  options.max_bytes = target.max_bytes > 0 ? static_cast<size_t>(target.max_bytes) : kDefaultOtlpQueueBytes;
  options.max_retry_time_ms = Ms(target.max_retry_time_s);
  options.initial_retry_delay_ms = std::max<int64_t>(1, Ms(target.initial_retry_delay_s));
  options.max_retry_delay_ms = std::max<int64_t>(1, Ms(target.max_retry_delay_s));
  options.encode_batch = [](absl::Span<const std::string> entries) {
    return entries.empty() ? std::string() : entries.front();
  };
  absl::StatusOr<std::shared_ptr<BatchSender>> sender = OtlpSenders().Get(target.Key(), std::move(options));
  if (!sender.ok()) return sender.status();
  return std::shared_ptr<OtlpBatchSender>(std::make_shared<TelemetryOtlpSender>(*std::move(sender)));
}

}  // namespace

void InstallOtlpSenders(int workers) {
  OtlpSenders().set_producers(workers);
  SetOtlpBatchSenderFactory(&MakeSender);
}

OtlpSenderTotals OtlpSenderStats() {
  const BatchSenderStats stats = OtlpSenders().Totals();
  return {stats.batches_sent, stats.dropped + stats.failed};
}

void PruneOtlpSenders() { OtlpSenders().Prune(); }

size_t OtlpSenderCount() { return OtlpSenders().size(); }

void StopOtlpSenders() { OtlpSenders().StopAll(); }

}  // namespace portico::dp::plugins
