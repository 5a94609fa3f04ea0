#pragma once
// Notices writes made to the datastore by someone else, and tells the snapshot builder
// (`on_change`) when the store's version is newer than `last_read()` (what the builder last read):
//  - with a change feed (Store::WaitForChange; PostgreSQL's LISTEN/NOTIFY), at once on each
//    notification: a write through another CP reaches this CP's builder immediately;
//  - without one (SQLite, or the feed is down), by polling every `interval`: a version still
//    unread one tick after it was first seen was written by another process (`portico-cp config
//    import` on the CP's own SQLite file).
// A version the builder was told of but has still not read one interval later (its read failed)
// is told again, at most once per interval, until it is read or a newer one is told.
// Writes through this CP's Admin API notify the builder themselves; for them the watcher sees
// nothing new, or notifies a builder that is already due to build (harmless: it debounces).
//
// One thread of its own, stopped (and joined, within one tick or 200 ms of feed wait) by Stop()
// or the destructor.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/time/time.h"

namespace portico::cp {

class Store;

class VersionWatcher {
 public:
  // `store` must outlive the watcher; the callbacks run on its thread.
  VersionWatcher(Store& store, absl::Duration interval, std::function<uint64_t()> last_read,
                 std::function<void()> on_change);
  ~VersionWatcher();
  VersionWatcher(const VersionWatcher&) = delete;
  VersionWatcher& operator=(const VersionWatcher&) = delete;

  void Stop();
  uint64_t changes_noticed() const;

 private:
  void Loop();

  Store& store_;
  const absl::Duration interval_;
  const std::function<uint64_t()> last_read_;
  const std::function<void()> on_change_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;   // guarded by mu_
  uint64_t noticed_ = 0;    // guarded by mu_
  uint64_t notified_version_ = 0;  // the watcher thread's
  std::thread thread_;
};

}  // namespace portico::cp
