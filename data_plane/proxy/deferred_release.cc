#include "data_plane/proxy/deferred_release.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common/base/log.h"

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

void DeferredRelease::Loop(int nice) {
  if (nice > 0 && setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) != 0) {
    PORTICO_LOG(kWarn, "dp", "cannot lower the config release thread's priority: ", std::strerror(errno));
  }
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (retired_.empty()) {
      cv_.wait(lock, [this] { return stopping_ || !retired_.empty(); });
    } else {
      cv_.wait_for(lock, absl::ToChronoMilliseconds(poll_), [this] { return stopping_; });
    }
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
    if (unused.empty()) continue;
    std::function<void()> on_released = on_released_;
    lock.unlock();
    unused.clear();  // the frees, outside the lock
    if (on_released) on_released();
    lock.lock();
  }
}

}  // namespace portico::dp
