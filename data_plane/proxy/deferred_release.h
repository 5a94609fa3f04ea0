#pragma once
// Releases replaced configs on a thread of its own. A config of 100,000 routes takes tens of
// milliseconds to free (its ConfigSet's protobufs); whoever drops the last reference pays for it.
// Without this that is a worker adopting the next config (or finishing a request that pinned the
// old one), which stalls every request of that worker, or the sync client before its ACK.
// Retire() keeps one reference; the thread drops it once no other is left, at a lower priority.
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/time/time.h"

namespace portico::dp {

class DeferredRelease {
 public:
  // `nice` 1-19 lowers the thread (0: the caller's priority). `poll`: how often it looks at what
  // it holds after a retirement or a free; while nothing can be freed, the interval doubles up to
  // 1 s (a long-lived connection keeping an old config).
  explicit DeferredRelease(int nice = 10, absl::Duration poll = absl::Milliseconds(20));
  // Joins the thread, then drops what it still holds (on the caller's thread).
  ~DeferredRelease();
  DeferredRelease(const DeferredRelease&) = delete;
  DeferredRelease& operator=(const DeferredRelease&) = delete;

  // Thread-safe, cheap (a lock and a push). Null is ignored.
  void Retire(std::shared_ptr<const void> object);
  // Called on the release thread after it freed one or more objects (for example to prune what
  // only those used). Thread-safe.
  void SetOnReleased(std::function<void()> on_released);
  // Objects retired and not yet released (for tests).
  size_t held() const;
  // How many times the thread has looked at what it holds (for tests).
  size_t scans() const;

 private:
  void Loop(int nice);

  const absl::Duration poll_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<const void>> retired_;  // guarded by mu_
  bool stopping_ = false;                             // guarded by mu_
  size_t scans_ = 0;                                  // guarded by mu_
  std::function<void()> on_released_;                 // guarded by mu_
  std::thread thread_;
};

}  // namespace portico::dp
