#pragma once
// Where the opentelemetry plugin's spans go: per worker loop, a SpanBatcher per export target
// collects encoded spans (bounded: max_entries pending, more are dropped and counted) and hands a
// batch (one ExportTraceServiceRequest body) to an OtlpBatchSender when max_batch_size spans are
// pending or max_coalescing_delay has passed since the first. The sender POSTs it to the
// endpoint; it is made by the factory installed with SetOtlpBatchSenderFactory (the DP's
// telemetry HTTP sender; tests install fakes).
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace portico::dp::plugins {

// What one export target is: where and how to POST, and how to batch. Compiled from the plugin's
// config; two plugin instances with equal targets share a batcher per worker.
struct OtlpExportTarget {
  std::string url;                                         // http://host[:port]/path
  std::vector<std::pair<std::string, std::string>> headers;  // config.headers, sorted by name
  int64_t connect_timeout_ms = 1000;
  int64_t send_timeout_ms = 5000;
  int64_t read_timeout_ms = 5000;
  // config.queue
  int64_t max_batch_size = 200;
  double max_coalescing_delay_s = 1;
  int64_t max_entries = 10000;
  double max_retry_time_s = 60;
  double initial_retry_delay_s = 0.01;
  double max_retry_delay_s = 60;
  std::string resource_json;  // the encoded `resource` of every batch
  // Identifies the target (every field above): the batcher's key.
  std::string Key() const;
};

// Sends batches for one target from one worker loop. Called on that loop's thread only.
class OtlpBatchSender {
 public:
  virtual ~OtlpBatchSender() = default;
  // Takes (copies) one request body (Content-Type: application/json). False: not taken (the
  // sender's own bounded queue is full); the caller counts the batch's spans as dropped.
  virtual bool Send(absl::string_view body, size_t span_count) = 0;
  // The loop is stopping: stop timers and connections; the sender deletes itself once closed.
  virtual void Close() = 0;
};

using OtlpBatchSenderFactory = std::unique_ptr<OtlpBatchSender> (*)(uv_loop_t* loop, int worker_index,
                                                                     const OtlpExportTarget& target);
// Installed once before the workers start (or by a test). Without one, batches are dropped and
// counted.
void SetOtlpBatchSenderFactory(OtlpBatchSenderFactory factory);

// Counters of every worker (relaxed atomics, each written by one worker).
struct SpanExportCounters {
  std::atomic<uint64_t> spans_queued{0};
  std::atomic<uint64_t> spans_dropped{0};  // the worker's pending batch was full, or the sender refused
  std::atomic<uint64_t> batches_sent{0};
};
SpanExportCounters& GlobalSpanExportCounters();

// One target's pending spans on one worker loop.
class SpanBatcher {
 public:
  SpanBatcher(uv_loop_t* loop, int worker_index, const OtlpExportTarget& target);
  // A batch is sent once its encoded spans reach this size, whatever max_batch_size says (it must
  // fit the sender's per-worker ring).
  static constexpr size_t kMaxBatchBytes = 256 * 1024;
  ~SpanBatcher();
  SpanBatcher(const SpanBatcher&) = delete;
  SpanBatcher& operator=(const SpanBatcher&) = delete;

  // Room for `spans` more spans: false means they are dropped (counted here).
  bool Reserve(size_t spans);
  // The buffer to append one encoded span to (after Reserve): a separator is written first.
  std::string& BeginSpan();
  // After the spans of one request were appended: sends a full batch, or arms the delay timer.
  void EndRequest();
  // Sends what is pending now (also the timer's action).
  void Flush();
  // Stops the timer and the sender; the batcher deletes itself once its handles are closed.
  void Close(std::unique_ptr<SpanBatcher> self);

  size_t pending_spans() const { return pending_count_; }

 private:
  static void OnTimer(uv_timer_t* timer);
  static void OnClosed(uv_handle_t* handle);

  uv_loop_t* loop_;
  OtlpExportTarget target_;
  std::unique_ptr<OtlpBatchSender> sender_;
  std::string pending_;  // encoded spans joined by commas
  std::string body_;     // the request body being handed over (capacity kept)
  size_t pending_count_ = 0;
  uv_timer_t timer_;
  bool timer_armed_ = false;
  std::unique_ptr<SpanBatcher> closing_self_;
};

// The calling loop's batcher for `target` (created on first use). The loop's thread.
SpanBatcher& FindSpanBatcher(uv_loop_t* loop, int worker_index, const OtlpExportTarget& target, absl::string_view key);

}  // namespace portico::dp::plugins
