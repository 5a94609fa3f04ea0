#pragma once
// Asynchronous log files: worker threads hand finished lines (each ending in '\n') to a LogWriter
// through one bounded RecordRing per worker; the writer's own thread drains the rings every
// millisecond while lines keep coming (every flush interval when idle) and writes what it found
// with one write() per batch. The request path never
// blocks, locks or allocates here: a line that does not fit in its worker's ring is dropped and
// counted (dropped()), so a slow or stuck disk costs at most the rings' memory. The writer logs
// drops at most once per 10 s.
//
// The destination is a file opened with O_APPEND|O_CREAT (mode 0640; a symlink is followed, as
// Kong's file-log does), or standard output ("stdout"). Reopen() (SIGUSR1, for logrotate) makes
// the thread close and reopen the file by its path before its next write. A file that cannot be
// (re)opened: the writer stays closed, its lines are dropped and counted, opening is retried at
// most once a second (and at once on Reopen()), and the error is logged at most once per 10 s.
// A write that stops mid-line (ENOSPC, EFBIG) counts the lines it did not finish as dropped and
// the next write starts with the missing '\n', so every line of the file stays whole.
//
// LogWriters is the process's set of writers, one per distinct destination, shared by the
// --access-log step and the file-log plugins of the snapshots that use it; Prune() stops the
// writers no snapshot holds any more.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data_plane/telemetry/record_ring.h"

namespace portico::dp {

struct LogWriterOptions {
  std::string destination;             // a file path, or "stdout"
  int producers = 1;                   // worker slots: Push(worker, ...) with worker < producers
  size_t ring_bytes = 1 << 20;         // per producer
  int flush_interval_ms = 20;          // the idle polling interval
};

class LogWriter {
 public:
  // Tries to open the destination once (open_status() says how it went) and starts the thread,
  // which keeps retrying while it is closed. Fails only for an empty destination.
  static absl::StatusOr<std::unique_ptr<LogWriter>> Start(LogWriterOptions options);
  ~LogWriter();  // Stop() without a deadline
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Worker `producer`'s thread only (one thread per producer index). False when dropped: the
  // ring is full, the line is longer than a ring, or `producer` is out of range.
  bool Push(int producer, absl::string_view line);
  // Any thread: reopen the file before the next write (no-op for stdout).
  void Reopen() { reopen_.store(true, std::memory_order_release); }
  // Any thread: write everything pushed so far, then return (tests, shutdown).
  void Flush();
  // Writes what is left, joins the thread, closes the file. Idempotent. With a deadline: a
  // thread still busy at `deadline` (a write blocked on a stalled pipe) is detached instead, the
  // file left open, and false returned; the writer must then never be destroyed.
  bool Stop(std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max());

  // The first open's result (Start): an error names the destination and says why.
  const absl::Status& open_status() const { return open_status_; }
  const std::string& destination() const { return options_.destination; }
  // Lines dropped: rings full, producer out of range, or no open file (any thread).
  uint64_t dropped() const;
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  uint64_t reopens() const { return reopens_.load(std::memory_order_relaxed); }

 private:
  explicit LogWriter(LogWriterOptions options);
  absl::Status Open();
  // Writer thread: (re)opens when asked or when closed (at most once a second), logging failures
  // at most once per 10 s.
  void EnsureOpen();
  void Run();
  // Drains every ring into batch_ and writes it; true when anything was drained.
  bool WriteOnce();

  LogWriterOptions options_;
  std::vector<std::unique_ptr<RecordRing>> rings_;
  int fd_ = -1;
  bool owns_fd_ = false;
  absl::Status open_status_;
  bool mid_line_ = false;                    // writer thread only: the file ends mid-line
  int64_t last_open_try_ms_ = 0;             // writer thread only
  int64_t last_open_error_report_ms_ = 0;    // writer thread only
  std::string batch_;    // writer thread only
  std::string scratch_;  // writer thread only
  std::atomic<bool> reopen_{false};
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> reopens_{0};
  std::atomic<uint64_t> lost_{0};            // drained but not written (no file, write error)
  std::atomic<uint64_t> out_of_range_{0};
  std::atomic<uint64_t> flush_requests_{0};  // Flush(): asked
  std::atomic<uint64_t> flushes_done_{0};    // the writer finished a pass started after the ask
  uint64_t dropped_reported_ = 0;            // writer thread only
  int64_t last_drop_report_ms_ = 0;          // writer thread only
  std::mutex mu_;  // the thread's wake-ups (stop, flush); never taken by Push
  std::condition_variable wake_;
  std::condition_variable flushed_;
  bool stop_ = false;
  bool finished_ = false;  // the thread left Run (under mu_)
  std::condition_variable finished_cv_;
  std::thread thread_;
};

// The process's log writers by destination. Thread-safe (a mutex: taken when a snapshot
// compiles, never per request).
class LogWriters {
 public:
  static LogWriters& Global();
  // Worker slots of writers created from now on (the DP's --workers; set before any Get).
  void set_producers(int producers);
  int producers() const;
  // The writer for `destination` ("stdout" or a path), started on first use; kept while a caller
  // holds it (see Prune). A file that cannot be opened still gets a writer, closed and retrying
  // (its open_status() says why). Fails only for an empty destination.
  absl::StatusOr<std::shared_ptr<LogWriter>> Get(const std::string& destination);
  void ReopenAll();
  // Stops the writers only this set holds (no compiled config uses them any more); their counts
  // stay in the totals. Call after publishing a config.
  void Prune();
  // Flushes and stops every writer (at exit), waiting for them until `deadline` at most (a writer
  // stuck on its destination is left behind). The mutex is not held while waiting.
  void StopAll(std::chrono::steady_clock::time_point deadline);
  size_t size() const;
  uint64_t DroppedTotal() const;
  uint64_t WrittenTotal() const;

 private:
  mutable std::mutex mu_;
  int producers_ = 1;
  std::map<std::string, std::shared_ptr<LogWriter>> writers_;
  uint64_t retired_written_ = 0;
  uint64_t retired_dropped_ = 0;
  std::vector<std::shared_ptr<LogWriter>> stuck_;  // stopped past a deadline: never destroyed
};

}  // namespace portico::dp
