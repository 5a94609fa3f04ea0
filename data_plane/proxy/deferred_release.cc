#include "data_plane/proxy/deferred_release.h"

#include <algorithm>
#include <utility>

#include "common/base/log.h"
#include "common/base/thread_priority.h"

namespace portico::dp {

DeferredRelease::DeferredRelease(int nice, absl::Duration poll)
    : poll_(poll), thread_([this, nice] { Loop(nice); }) {}

DeferredRelease::~DeferredRelease() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void DeferredRelease::Retire(std::shared_ptr<const void> object) {
  if (object == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    retired_.push_back(std::move(object));
  }
  cv_.notify_all();
}

void DeferredRelease::SetOnReleased(std::function<void()> on_released) {
  std::lock_guard<std::mutex> lock(mu_);
  on_released_ = std::move(on_released);
}

size_t DeferredRelease::held() const {
  std::lock_guard<std::mutex> lock(mu_);
  return retired_.size();
}

size_t DeferredRelease::scans() const {
  std::lock_guard<std::mutex> lock(mu_);
  return scans_;
}

void DeferredRelease::Loop(int nice) {
  LowerThisThreadPriority(nice, "dp", "config release thread");
  std::unique_lock<std::mutex> lock(mu_);
  // A config a long-lived connection keeps alive is looked at less and less often (up to once a
  // second); a newly retired one, or one just freed, brings the poll back to `poll_`.
  const absl::Duration first_wait = std::max(poll_, absl::Milliseconds(1));
  absl::Duration wait = first_wait;
  size_t seen = 0;
  while (!stopping_) {
    if (retired_.empty()) {
      cv_.wait(lock, [this] { return stopping_ || !retired_.empty(); });
    } else {
      cv_.wait_for(lock, absl::ToChronoMilliseconds(wait), [&] { return stopping_ || retired_.size() > seen; });
    }
    ++scans_;
    const bool newly_retired = retired_.size() > seen;
    if (newly_retired) wait = first_wait;
    // use_count() == 1: only this list holds it, and nothing can take a new reference (there are
    // no weak pointers to configs), so it is ours to free.
    std::vector<std::shared_ptr<const void>> unused;
    for (size_t i = 0; i < retired_.size();) {
      if (retired_[i].use_count() == 1) {
        unused.push_back(std::move(retired_[i]));
        retired_[i] = std::move(retired_.back());
        retired_.pop_back();
      } else {
        ++i;
      }
    }
    seen = retired_.size();
    if (unused.empty()) {
      // A config just retired is usually still held by a worker for a moment: keep the short poll.
      if (!newly_retired) wait = std::min(wait * 2, std::max(first_wait, absl::Seconds(1)));
      continue;
    }
    wait = first_wait;
    std::function<void()> on_released = on_released_;
    lock.unlock();
    unused.clear();  // the frees, outside the lock
    if (on_released) on_released();
    lock.lock();
  }
}

}  // namespace portico::dp
