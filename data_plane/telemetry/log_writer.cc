#include "data_plane/telemetry/log_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"

namespace portico::dp {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr int64_t kDropReportIntervalMs = 10000;

}  // namespace

LogWriter::LogWriter(LogWriterOptions options) : options_(std::move(options)) {
  if (options_.producers < 1) options_.producers = 1;
  for (int i = 0; i < options_.producers; ++i) rings_.push_back(std::make_unique<RecordRing>(options_.ring_bytes));
}

absl::StatusOr<std::unique_ptr<LogWriter>> LogWriter::Start(LogWriterOptions options) {
  if (options.destination.empty()) return absl::InvalidArgumentError("log destination is empty");
  std::unique_ptr<LogWriter> writer(new LogWriter(std::move(options)));
  writer->open_status_ = writer->Open();
  writer->last_open_try_ms_ = NowMs();
  if (!writer->open_status_.ok()) {
    PORTICO_LOG(kError, "log", writer->open_status_.message(), " (lines are dropped until it opens; retried every second)");
    writer->last_open_error_report_ms_ = NowMs();
  }
  writer->thread_ = std::thread([w = writer.get()] { w->Run(); });
  return writer;
}

LogWriter::~LogWriter() { Stop(); }

absl::Status LogWriter::Open() {
  mid_line_ = false;
  if (options_.destination == "stdout") {
    fd_ = STDOUT_FILENO;
    owns_fd_ = false;
    return absl::OkStatus();
  }
  owns_fd_ = true;
  const int fd = ::open(options_.destination.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot open log file ", options_.destination, ": ", strerror(errno)));
  }
  fd_ = fd;
  return absl::OkStatus();
}

void LogWriter::EnsureOpen() {
  const bool reopen = reopen_.exchange(false, std::memory_order_acq_rel);
  if (!owns_fd_) return;  // stdout
  if (reopen && fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (fd_ >= 0) return;
  const int64_t now = NowMs();
  if (!reopen && now - last_open_try_ms_ < 1000) return;
  last_open_try_ms_ = now;
  if (absl::Status s = Open(); !s.ok()) {
    if (now - last_open_error_report_ms_ >= kDropReportIntervalMs) {
      PORTICO_LOG(kError, "log", s.message(), " (lines are dropped until it opens)");
      last_open_error_report_ms_ = now;
    }
  } else if (reopen) {
    reopens_.fetch_add(1, std::memory_order_relaxed);
  } else {
    PORTICO_LOG(kInfo, "log", "opened ", options_.destination);
  }
}

bool LogWriter::Push(int producer, absl::string_view line) {
  if (producer < 0 || producer >= static_cast<int>(rings_.size())) {
    out_of_range_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return rings_[producer]->TryPush(line);
}

uint64_t LogWriter::dropped() const {
  uint64_t total = lost_.load(std::memory_order_relaxed) + out_of_range_.load(std::memory_order_relaxed);
  for (const auto& ring : rings_) total += ring->dropped();
  return total;
}

bool LogWriter::WriteOnce() {
  EnsureOpen();
  batch_.clear();
  if (mid_line_) batch_.push_back('\n');  // the last write stopped mid-line: end that line first
  const size_t prefix = batch_.size();
  uint64_t lines = 0;
  for (auto& ring : rings_) {
    lines += ring->Drain(&scratch_, [this](absl::string_view line) { batch_.append(line.data(), line.size()); });
  }
  if (lines == 0) return false;
  size_t done = 0;
  while (done < batch_.size() && fd_ >= 0) {
    const ssize_t n = ::write(fd_, batch_.data() + done, batch_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      PORTICO_LOG(kError, "log", "writing ", options_.destination, ": ", strerror(errno));
      break;
    }
    done += static_cast<size_t>(n);
  }
  // Only whole lines count as written; the file ends mid-line when the write stopped inside one.
  uint64_t whole = 0;
  if (done > prefix) {
    whole = static_cast<uint64_t>(std::count(batch_.begin() + prefix, batch_.begin() + done, '\n'));
    mid_line_ = batch_[done - 1] != '\n';
  } else if (done == prefix) {
    mid_line_ = false;
  }
  written_.fetch_add(whole, std::memory_order_relaxed);
  if (whole < lines) lost_.fetch_add(lines - whole, std::memory_order_relaxed);
  // A batch that grew large once should not pin its memory for good.
  if (batch_.capacity() > 4 * options_.ring_bytes) std::string().swap(batch_);
  return true;
}

void LogWriter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const uint64_t asked = flush_requests_.load(std::memory_order_acquire);
    const bool stopping = stop_;
    lock.unlock();
    bool busy = false;
    while (WriteOnce()) busy = true;
    const uint64_t dropped_now = dropped();
    if (dropped_now != dropped_reported_ && NowMs() - last_drop_report_ms_ >= kDropReportIntervalMs) {
      PORTICO_LOG(kWarn, "log", options_.destination, ": ", dropped_now - dropped_reported_,
                  " lines dropped (the writer could not keep up, or the file is not writable); ", dropped_now,
                  " in all");
      dropped_reported_ = dropped_now;
      last_drop_report_ms_ = NowMs();
    }
    lock.lock();
    flushes_done_.store(asked, std::memory_order_release);
    flushed_.notify_all();
    if (stopping) {
      finished_ = true;
      finished_cv_.notify_all();
      break;
    }
    // Under load the rings are drained every millisecond (a 1 MiB ring then carries about a
    // million short lines a second); idle, every flush interval.
    wake_.wait_for(lock, std::chrono::milliseconds(busy ? std::min(1, options_.flush_interval_ms) : options_.flush_interval_ms),
                   [&] { return stop_ || flush_requests_.load(std::memory_order_acquire) != asked; });
  }
}

void LogWriter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!thread_.joinable()) return;
  const uint64_t ticket = flush_requests_.fetch_add(1, std::memory_order_acq_rel) + 1;
  wake_.notify_all();
  flushed_.wait_for(lock, std::chrono::seconds(5),
                    [&] { return flushes_done_.load(std::memory_order_acquire) >= ticket || stop_; });
}

bool LogWriter::Stop(std::chrono::steady_clock::time_point deadline) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_) return true;
    stop_ = true;
    wake_.notify_all();
    if (thread_.joinable() && deadline != std::chrono::steady_clock::time_point::max() &&
        !finished_cv_.wait_until(lock, deadline, [this] { return finished_; })) {
      PORTICO_LOG(kWarn, "log", options_.destination, ": still writing at the stop deadline; left behind");
      thread_.detach();
      return false;
    }
  }
  if (thread_.joinable()) thread_.join();
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
  fd_ = -1;
  return true;
}

LogWriters& LogWriters::Global() {
  static LogWriters* writers = new LogWriters();  // never destroyed: workers may log until exit
  return *writers;
}

void LogWriters::set_producers(int producers) {
  std::lock_guard<std::mutex> lock(mu_);
  producers_ = producers < 1 ? 1 : producers;
}

int LogWriters::producers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return producers_;
}

absl::StatusOr<std::shared_ptr<LogWriter>> LogWriters::Get(const std::string& destination) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = writers_.find(destination); it != writers_.end()) return it->second;
  LogWriterOptions options;
  options.destination = destination;
  options.producers = producers_;
  absl::StatusOr<std::unique_ptr<LogWriter>> writer = LogWriter::Start(std::move(options));
  if (!writer.ok()) return writer.status();
  std::shared_ptr<LogWriter> shared(*std::move(writer));
  writers_.emplace(destination, shared);
  return shared;
}

void LogWriters::ReopenAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [destination, writer] : writers_) writer->Reopen();
}

void LogWriters::Prune() {
  std::vector<std::shared_ptr<LogWriter>> unused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = writers_.begin(); it != writers_.end();) {
      if (it->second.use_count() == 1) {
        unused.push_back(std::move(it->second));
        it = writers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Outside the lock (a /metrics scrape takes it); a writer stuck on its destination is left behind.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (auto& writer : unused) {
    const bool stopped = writer->Stop(deadline);
    std::lock_guard<std::mutex> lock(mu_);
    retired_written_ += writer->written();
    retired_dropped_ += writer->dropped();
    if (!stopped) stuck_.push_back(std::move(writer));
  }
}

void LogWriters::StopAll(std::chrono::steady_clock::time_point deadline) {
  std::vector<std::shared_ptr<LogWriter>> writers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [destination, writer] : writers_) writers.push_back(writer);
  }
  for (auto& writer : writers) {
    if (!writer->Stop(deadline)) {
      std::lock_guard<std::mutex> lock(mu_);
      stuck_.push_back(writer);
    }
  }
}

size_t LogWriters::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return writers_.size();
}

uint64_t LogWriters::DroppedTotal() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = retired_dropped_;
  for (const auto& [destination, writer] : writers_) total += writer->dropped();
  return total;
}

uint64_t LogWriters::WrittenTotal() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = retired_written_;
  for (const auto& [destination, writer] : writers_) total += writer->written();
  return total;
}

}  // namespace portico::dp
