#pragma once
// A batching HTTP sender with a bounded queue, for log and trace exporters (http-log; OTLP/HTTP).
// Worker threads Enqueue entries (already encoded, e.g. one JSON object) into their own bounded
// RecordRing: no lock, no allocation once warm, a full ring drops and counts. The sender's own
// thread (one libuv loop per sender) drains the rings into its queue, and sends batches:
//  - a batch is up to max_batch_size entries, sent when that many are queued or when the oldest
//    has waited max_coalescing_delay_ms; `encode_batch` turns the entries into one request body;
//  - one batch is in flight at a time (Kong's concurrency_limit 1);
//  - a batch that fails (connect error, timeout, an answer above max_delivered_status) is retried after
//    initial_retry_delay_ms, doubling up to max_retry_delay_ms, until max_retry_time_ms has passed
//    since its first try: then it is dropped and its entries counted as failed;
//  - the queue holds at most max_entries entries and max_bytes bytes (0: no byte bound): when a
//    new entry does not fit, the oldest are dropped and counted (Kong's queue drops the oldest).
// Memory is bounded by the rings, the queue bounds and one batch.
//
// The HTTP/1.1 client is TcpTransport + Http1Codec (the codebase's own transport and codec): one
// connection per batch (Connection: close), plain http only (https URLs are refused by Start).
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/base/http_url.h"

namespace portico::dp {

// The endpoint's URL: portico::ParseHttpUrl (common/base/http_url.h), shared with the CP's schema.
using ::portico::HttpUrl;
using ::portico::ParseHttpUrl;

struct BatchSenderOptions {
  std::string name;  // for logs: "http-log http://collector:8080/logs"
  std::string url;
  std::string method = "POST";
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // added to every request
  int64_t timeout_ms = 10000;  // connect + send + answer, per try
  // Answers from 200 to this status are deliveries (2xx by default; http-log: 399, as Kong);
  // anything else is retried.
  int max_delivered_status = 299;
  size_t max_batch_size = 1;
  int64_t max_coalescing_delay_ms = 1000;
  size_t max_entries = 10000;
  size_t max_bytes = 0;  // 0: no byte bound
  int64_t max_retry_time_ms = 60000;
  int64_t initial_retry_delay_ms = 10;
  int64_t max_retry_delay_ms = 60000;
  int producers = 1;             // worker slots of Enqueue
  size_t ring_bytes = 1 << 20;   // per producer
  // The body of one request for a batch (entries in queue order). Default: a JSON array of the
  // entries (each assumed to be JSON text).
  std::function<std::string(absl::Span<const std::string>)> encode_batch;
};

struct BatchSenderStats {
  uint64_t enqueued = 0;         // entries taken into the queue
  uint64_t sent = 0;             // entries delivered (see max_delivered_status)
  uint64_t batches_sent = 0;
  uint64_t dropped = 0;          // entries dropped: a full ring or queue (never tried)
  uint64_t failed = 0;           // entries dropped after their batch's retries ran out
  uint64_t retries = 0;          // tries after the first, over all batches
  uint64_t queued = 0;           // entries waiting now (including the batch in flight)
};

class BatchSender {
 public:
  // Checks the URL and starts the sender's thread.
  static absl::StatusOr<std::unique_ptr<BatchSender>> Start(BatchSenderOptions options);
  ~BatchSender();  // Stop()
  BatchSender(const BatchSender&) = delete;
  BatchSender& operator=(const BatchSender&) = delete;

  // Worker `producer`'s thread only (one thread per index). False when dropped (full ring,
  // `producer` out of range, or stopped).
  bool Enqueue(int producer, absl::string_view entry);
  BatchSenderStats stats() const;
  // Stops the thread; entries not yet delivered are counted as dropped. Idempotent.
  void Stop();
  const BatchSenderOptions& options() const;

  struct Impl;

 private:
  explicit BatchSender(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::dp
