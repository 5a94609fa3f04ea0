#include "data_plane/telemetry/log_sinks.h"

#include <vector>

namespace portico::dp {
namespace {

void Add(BatchSenderStats& total, const BatchSenderStats& s) {
  total.enqueued += s.enqueued;
  total.sent += s.sent;
  total.batches_sent += s.batches_sent;
  total.dropped += s.dropped;
  total.failed += s.failed;
  total.retries += s.retries;
  total.queued += s.queued;
}

}  // namespace

void SetLogProducers(int producers) {
  LogWriters::Global().set_producers(producers);
  BatchSenders::Global().set_producers(producers);
}

BatchSenders& BatchSenders::Global() {
  static BatchSenders* senders = new BatchSenders();  // never destroyed: workers may log until exit
  return *senders;
}

void BatchSenders::set_producers(int producers) {
  std::lock_guard<std::mutex> lock(mu_);
  producers_ = producers < 1 ? 1 : producers;
}

absl::StatusOr<std::shared_ptr<BatchSender>> BatchSenders::Get(const std::string& key, BatchSenderOptions options) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = senders_.find(key); it != senders_.end()) return it->second;
  options.producers = producers_;
  absl::StatusOr<std::unique_ptr<BatchSender>> sender = BatchSender::Start(std::move(options));
  if (!sender.ok()) return sender.status();
  std::shared_ptr<BatchSender> shared(std::move(*sender));
  senders_.emplace(key, shared);
  return shared;
}

void BatchSenders::Prune() {
  std::vector<std::shared_ptr<BatchSender>> unused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = senders_.begin(); it != senders_.end();) {
      if (it->second.use_count() == 1) {
        unused.push_back(std::move(it->second));
        it = senders_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& sender : unused) {
    sender->Stop();  // outside the lock: joins the sender's thread
    BatchSenderStats s = sender->stats();
    s.queued = 0;
    std::lock_guard<std::mutex> lock(mu_);
    Add(retired_, s);
  }
}

void BatchSenders::StopAll() {
  std::vector<std::shared_ptr<BatchSender>> senders;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, sender] : senders_) senders.push_back(sender);
  }
  for (auto& sender : senders) sender->Stop();  // outside the lock: a /metrics scrape takes it
}

BatchSenderStats BatchSenders::Totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  BatchSenderStats total = retired_;
  for (const auto& [key, sender] : senders_) Add(total, sender->stats());
  return total;
}

size_t BatchSenders::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return senders_.size();
}

void RegisterLogMetrics(Registry* registry, const LogWriter* access_log) {
  if (access_log != nullptr) {
    registry->AddCallbackCounter("portico_access_log_lines_total", "Access log lines written (--access-log)",
                                 [access_log] { return static_cast<double>(access_log->written()); });
    registry->AddCallbackCounter(
        "portico_access_log_dropped_total",
        "Access log lines dropped (--access-log): a worker's ring was full (the disk was slow) or the file "
        "could not be written",
        [access_log] { return static_cast<double>(access_log->dropped()); });
  }
  registry->AddCallbackCounter("portico_log_lines_total", "Log lines written by every log writer (--access-log, file-log)",
                               [] { return static_cast<double>(LogWriters::Global().WrittenTotal()); });
  registry->AddCallbackCounter("portico_log_lines_dropped_total",
                               "Log lines dropped by every log writer (--access-log, file-log)",
                               [] { return static_cast<double>(LogWriters::Global().DroppedTotal()); });
  registry->AddCallbackCounter("portico_http_log_entries_sent_total", "http-log entries delivered (an answer below 400, as Kong)",
                               [] { return static_cast<double>(BatchSenders::Global().Totals().sent); });
  registry->AddCallbackCounter(
      "portico_http_log_entries_dropped_total",
      "http-log entries dropped without being sent: a worker's ring or the queue (max_entries, max_bytes) was full",
      [] { return static_cast<double>(BatchSenders::Global().Totals().dropped); });
  registry->AddCallbackCounter("portico_http_log_entries_failed_total",
                               "http-log entries dropped after their batch's retries ran out (max_retry_time)",
                               [] { return static_cast<double>(BatchSenders::Global().Totals().failed); });
  registry->AddCallbackCounter("portico_http_log_retries_total", "http-log batch tries after the first",
                               [] { return static_cast<double>(BatchSenders::Global().Totals().retries); });
  registry->AddCallbackGauge("portico_http_log_queued_entries", "http-log entries waiting to be sent",
                             [] { return static_cast<double>(BatchSenders::Global().Totals().queued); });
}

}  // namespace portico::dp
