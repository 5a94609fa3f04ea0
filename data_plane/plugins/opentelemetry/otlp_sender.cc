#include "data_plane/plugins/opentelemetry/otlp_sender.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "data_plane/telemetry/batch_sender.h"

namespace portico::dp::plugins {
namespace {

// The process's senders by target key. Touched when a worker meets a target for the first time
// (its SpanBatcher is made), never per request.
struct Senders {
  std::mutex mu;
  int workers = 1;
  std::map<std::string, std::shared_ptr<BatchSender>> by_key;
};
Senders& AllSenders() {
  static Senders* const senders = new Senders();  // never destroyed: workers may outlive exit paths
  return *senders;
}

class TelemetryOtlpSender final : public OtlpBatchSender {
 public:
  TelemetryOtlpSender(std::shared_ptr<BatchSender> sender, int producer)
      : sender_(std::move(sender)), producer_(producer) {}
  bool Send(absl::string_view body, size_t span_count) override { return sender_->Enqueue(producer_, body); }
  void Close() override { delete this; }

 private:
  std::shared_ptr<BatchSender> sender_;
  const int producer_;
};

int64_t Ms(double seconds) { return static_cast<int64_t>(std::max(0.0, seconds) * 1000.0); }

std::unique_ptr<OtlpBatchSender> MakeSender(uv_loop_t* loop, int worker_index, const OtlpExportTarget& target) {
  Senders& senders = AllSenders();
  std::lock_guard<std::mutex> lock(senders.mu);
  const std::string key = target.Key();
  auto it = senders.by_key.find(key);
  if (it == senders.by_key.end()) {
    BatchSenderOptions options;
    options.name = absl::StrCat("opentelemetry ", target.url);
    options.url = target.url;
    options.headers = target.headers;
    options.timeout_ms = target.connect_timeout_ms + target.send_timeout_ms + target.read_timeout_ms;
    options.max_batch_size = 1;  // an entry is already a whole batch (a request body)
    options.max_coalescing_delay_ms = 0;
    options.max_entries = static_cast<size_t>(std::max<int64_t>(1, target.max_entries / target.max_batch_size));
    options.max_retry_time_ms = Ms(target.max_retry_time_s);
    options.initial_retry_delay_ms = std::max<int64_t>(1, Ms(target.initial_retry_delay_s));
    options.max_retry_delay_ms = std::max<int64_t>(1, Ms(target.max_retry_delay_s));
    options.producers = senders.workers;
    options.encode_batch = [](absl::Span<const std::string> entries) {
      return entries.empty() ? std::string() : entries.front();
    };
    absl::StatusOr<std::unique_ptr<BatchSender>> started = BatchSender::Start(std::move(options));
    if (!started.ok()) {
      PORTICO_LOG(kWarn, "opentelemetry", "cannot export to ", target.url, ": ", started.status().message());
      return nullptr;
    }
    it = senders.by_key.emplace(key, std::shared_ptr<BatchSender>(*std::move(started))).first;
  }
  return std::make_unique<TelemetryOtlpSender>(it->second, worker_index);
}

}  // namespace

void InstallOtlpSenders(int workers) {
  {
    Senders& senders = AllSenders();
    std::lock_guard<std::mutex> lock(senders.mu);
    senders.workers = std::max(1, workers);
  }
  SetOtlpBatchSenderFactory(&MakeSender);
}

OtlpSenderTotals OtlpSenderStats() {
  Senders& senders = AllSenders();
  std::lock_guard<std::mutex> lock(senders.mu);
  OtlpSenderTotals totals;
  for (const auto& [key, sender] : senders.by_key) {
    const BatchSenderStats stats = sender->stats();
    totals.batches_delivered += stats.batches_sent;
    totals.batches_lost += stats.dropped + stats.failed;
  }
  return totals;
}

void StopOtlpSenders() {
  Senders& senders = AllSenders();
  std::lock_guard<std::mutex> lock(senders.mu);
  for (auto& [key, sender] : senders.by_key) sender->Stop();
}

}  // namespace portico::dp::plugins
