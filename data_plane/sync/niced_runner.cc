#include "data_plane/sync/niced_runner.h"


#include "common/base/log.h"
#include "common/base/thread_priority.h"

namespace portico::dp {

NicedRunner::NicedRunner(int nice) : thread_([this, nice] { Loop(nice); }) {}

NicedRunner::~NicedRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

absl::Status NicedRunner::Run(const std::function<absl::Status()>& task) {
  std::lock_guard<std::mutex> serial(run_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return absl::CancelledError("the apply thread is stopping");
  task_ = &task;
  done_ = false;
  cv_.notify_all();
  cv_.wait(lock, [&] { return done_; });
  return result_;
}

void NicedRunner::Loop(int nice) {
  LowerThisThreadPriority(nice, "dp", "config apply thread");
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || task_ != nullptr; });
    if (task_ == nullptr) return;  // stopping, nothing pending
    const std::function<absl::Status()>* task = task_;
    task_ = nullptr;
    lock.unlock();
    absl::Status result = (*task)();
    lock.lock();
    result_ = std::move(result);
    done_ = true;
    cv_.notify_all();
  }
}

}  // namespace portico::dp
