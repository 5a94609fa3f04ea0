#pragma once
// Where the opentelemetry plugin's spans go: per worker loop, a SpanBatcher per export target
// collects encoded spans (bounded: max_entries pending, more are dropped and counted) and hands a
// batch (one ExportTraceServiceRequest body) to the target's OtlpBatchSender when max_batch_size
// spans are pending or max_coalescing_delay has passed since the first. The sender POSTs it to the
// endpoint; it is made when a config is compiled (MakeOtlpBatchSender, off the request path) by the
// factory installed with SetOtlpBatchSenderFactory (the DP's telemetry HTTP sender; tests install
// fakes), and owned by the compiled plugins that use it: a batcher only refers to it weakly, and is
// dropped once no compiled config holds its sender.
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
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
  int64_t max_bytes = 0;  // queue.max_bytes; 0: the sender's default byte bound
  std::string resource_json;  // the encoded `resource` of every batch
  // Identifies the target (every field above): the batcher's key.
  std::string Key() const;
};

// Sends the batches of one target for every worker (one per target, shared).
class OtlpBatchSender {
 public:
  virtual ~OtlpBatchSender() = default;
  // Worker `worker_index`'s thread only. Takes (copies) one request body (Content-Type:
  // application/json). False: not taken (the sender's own bounded queue is full); the caller
  // counts the batch's spans as dropped.
  virtual bool Send(int worker_index, absl::string_view body, size_t span_count) = 0;
};

using OtlpBatchSenderFactory = absl::StatusOr<std::shared_ptr<OtlpBatchSender>> (*)(const OtlpExportTarget& target);
// Installed once before the workers start (or by a test). Without one, batches are dropped and
// counted.
void SetOtlpBatchSenderFactory(OtlpBatchSenderFactory factory);
// The sender for `target` from the installed factory, at compile time. Null (no error) when no
// factory is installed; an error when the sender cannot start (e.g. no thread can be created).
absl::StatusOr<std::shared_ptr<OtlpBatchSender>> MakeOtlpBatchSender(const OtlpExportTarget& target);

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
  SpanBatcher(uv_loop_t* loop, int worker_index, std::weak_ptr<OtlpBatchSender> sender,
              const OtlpExportTarget& target);
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
  // The sender is gone (no compiled config uses this target any more).
  bool orphaned() const { return sender_.expired(); }
  // Stops the timer; the batcher deletes itself once its handles are closed.
  void Close(std::unique_ptr<SpanBatcher> self);

  size_t pending_spans() const { return pending_count_; }

 private:
  static void OnTimer(uv_timer_t* timer);
  static void OnClosed(uv_handle_t* handle);

  uv_loop_t* loop_;
  const int worker_index_;
  OtlpExportTarget target_;
  std::weak_ptr<OtlpBatchSender> sender_;
  std::string pending_;  // encoded spans joined by commas
  std::string body_;     // the request body being handed over (capacity kept)
  size_t pending_count_ = 0;
  uv_timer_t timer_;
  bool timer_armed_ = false;
  std::unique_ptr<SpanBatcher> closing_self_;
};

// The calling loop's batcher for `sender` (its target's), created on first use; creating one also
// closes the loop's batchers whose sender is gone. The loop's thread.
SpanBatcher& FindSpanBatcher(uv_loop_t* loop, int worker_index, const std::shared_ptr<OtlpBatchSender>& sender,
                             const OtlpExportTarget& target);
// The calling loop's batchers (for tests).
size_t SpanBatcherCount(uv_loop_t* loop);

}  // namespace portico::dp::plugins
