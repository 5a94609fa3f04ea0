#include "control_plane/store/version_watcher.h"

#include <utility>

#include "common/base/log.h"
#include "control_plane/store/store.h"

namespace portico::cp {

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
  // A version newer than what the builder read, seen at the previous tick. A write through the
  // Admin API is read by the builder within its debounce (well under one interval), so a version
  // still unread one tick later was written elsewhere.
  uint64_t unread = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, absl::ToChronoMilliseconds(interval_), [this] { return stopping_; })) {
    lock.unlock();
    const uint64_t version = store_.CurrentVersion();  // 0 when it cannot be read: nothing to do
    const uint64_t read = last_read_();
    bool notify = false;
    if (version <= read || version <= notified_version_) {
      unread = 0;
    } else if (unread != 0 && read < unread) {
      notify = true;
      notified_version_ = version;
      unread = 0;
      PORTICO_LOG(kInfo, "cp", "config version ", version,
                  " is in the store but was not read for a snapshot within a tick (written by another "
                  "process, such as portico-cp config import); building its snapshot");
      on_change_();
    } else {
      unread = version;
    }
    lock.lock();
    if (notify) ++noticed_;
  }
}

}  // namespace portico::cp
