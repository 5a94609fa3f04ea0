#pragma once
// Runs tasks one at a time on a thread of its own at a given nice value (the DP's config apply:
// validation and compile take the CPU the proxy workers leave). Only that thread is lowered: the
// caller (the sync client's thread, which also starts the heartbeat and watchdog threads) keeps
// its priority. Threads a task starts inherit the lowered value (Linux: a thread cannot raise it
// back without CAP_SYS_NICE).
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/status.h"

namespace portico::dp {

class NicedRunner {
 public:
  // `nice` 1-19 lowers the thread; 0 runs tasks at the caller's priority (still on the thread).
  explicit NicedRunner(int nice);
  ~NicedRunner();  // finishes the task in progress, then joins
  NicedRunner(const NicedRunner&) = delete;
  NicedRunner& operator=(const NicedRunner&) = delete;

  // Runs `task` on the thread and returns its status. Thread-safe; calls are serialized.
  absl::Status Run(const std::function<absl::Status()>& task);

 private:
  void Loop(int nice);

  std::mutex run_mu_;  // one Run at a time
  std::mutex mu_;
  std::condition_variable cv_;
  const std::function<absl::Status()>* task_ = nullptr;  // guarded by mu_
  absl::Status result_;                                 // guarded by mu_
  bool done_ = false;                                   // guarded by mu_
  bool stopping_ = false;                               // guarded by mu_
  std::thread thread_;
};

}  // namespace portico::dp
