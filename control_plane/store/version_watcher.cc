#include "control_plane/store/version_watcher.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/base/log.h"
#include "control_plane/store/store.h"

namespace portico::cp {
namespace {

// The longest WaitForChange call: Stop() waits at most about this long for the thread.
constexpr absl::Duration kFeedSlice = absl::Milliseconds(200);

}  // namespace

VersionWatcher::VersionWatcher(Store& store, absl::Duration interval, std::function<uint64_t()> last_read,
                               std::function<void()> on_change)
    : store_(store), interval_(interval), last_read_(std::move(last_read)), on_change_(std::move(on_change)) {
  thread_ = std::thread([this] { Loop(); });
}

VersionWatcher::~VersionWatcher() { Stop(); }

void VersionWatcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t VersionWatcher::changes_noticed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return noticed_;
}

void VersionWatcher::Loop() {
  // Polling (no feed): a version newer than what the builder read, seen at the previous tick. A
  // write through the Admin API is read by the builder within its debounce (well under one
  // interval), so a version still unread one tick later was written elsewhere.
  uint64_t unread = 0;
  // When the builder was last told (of notified_version_). Told and still behind one interval
  // later (its read failed): told again, at most once per interval.
  std::chrono::steady_clock::time_point notified_at{};  // set with notified_version_
  auto retry_due = [&] {
    return std::chrono::steady_clock::now() - notified_at >= absl::ToChronoNanoseconds(interval_);
  };
  auto tell = [&](uint64_t version) {
    notified_version_ = version;
    notified_at = std::chrono::steady_clock::now();
    unread = 0;
    on_change_();
  };
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    // Short slices keep Stop() prompt while the feed is up.
    const ChangeWait wait = store_.WaitForChange(std::min(interval_, kFeedSlice));
    bool notify = false;
    if (wait == ChangeWait::kNotified || wait == ChangeWait::kTimedOut) {
      // kNotified: another CP's (or this CP's) commit, told at once when the builder has not read
      // it. Either way, a version told of but still unread an interval later is told again.
      const bool retry = notified_version_ > last_read_() && retry_due();
      if (wait == ChangeWait::kNotified || retry) {
        // A retry counts from now even when the version cannot be read (no read per slice of a
        // database that is struggling).
        if (retry) notified_at = std::chrono::steady_clock::now();
        const uint64_t version = store_.CurrentVersion();
        if (version > last_read_() && (version > notified_version_ || retry)) {
          notify = true;
          PORTICO_LOG(kDebug, "cp", "config version ", version,
                      version > notified_version_ ? " committed (change feed)" : " still unread (retrying)",
                      "; building its snapshot");
          tell(version);
        }
      }
      lock.lock();
      if (notify) ++noticed_;
      continue;
    }
    lock.lock();
    // kNoFeed: one polling tick.
    if (cv_.wait_for(lock, absl::ToChronoMilliseconds(interval_), [this] { return stopping_; })) break;
    lock.unlock();
    const uint64_t version = store_.CurrentVersion();  // 0 when it cannot be read: nothing to do
    const uint64_t read = last_read_();
    if (version <= read) {
      unread = 0;
    } else if (version <= notified_version_) {
      if (retry_due()) {
        notify = true;
        PORTICO_LOG(kInfo, "cp", "config version ", version, " still unread; building its snapshot again");
        tell(version);
      }
    } else if (unread != 0 && read < unread) {
      notify = true;
      PORTICO_LOG(kInfo, "cp", "config version ", version,
                  " is in the store but was not read for a snapshot within a tick (written by another "
                  "process, such as portico-cp config import); building its snapshot");
      tell(version);
    } else {
      unread = version;
    }
    lock.lock();
    if (notify) ++noticed_;
  }
}

}  // namespace portico::cp
