#pragma once
// The cap on full snapshots being written at once (SyncServerOptions::max_concurrent_full_sends):
// a session that wants to send takes a slot or waits in a FIFO queue; a returned slot goes to
// the first waiting session that still wants one. Pure logic; thread-compatible (the SyncServer
// calls it under its mutex).
#include <algorithm>
#include <cstdint>
#include <deque>

namespace portico::cp {

class FullSendSlots {
 public:
  explicit FullSendSlots(int capacity) : capacity_(capacity) {}

  // True: a slot is taken for `session`. False: it is queued (and later granted by Release).
  bool Acquire(uint64_t session) {
    if (in_progress_ < capacity_) {
      Take();
      return true;
    }
    waiters_.push_back(session);
    return false;
  }

  // Returns a slot, then hands free slots to queued sessions in order: for each one that
  // `wants(id)` still, a slot is taken and `grant(id)` called (which may Release it again).
  template <typename Wants, typename Grant>
  void Release(Wants wants, Grant grant) {
    --in_progress_;
    while (!waiters_.empty() && in_progress_ < capacity_) {
      const uint64_t id = waiters_.front();
      waiters_.pop_front();
      if (!wants(id)) continue;
      Take();
      grant(id);
    }
  }

  int in_progress() const { return in_progress_; }
  int peak() const { return peak_; }  // highest in_progress() seen

 private:
  void Take() {
    ++in_progress_;
    peak_ = std::max(peak_, in_progress_);
  }

  const int capacity_;
  int in_progress_ = 0;
  int peak_ = 0;
  std::deque<uint64_t> waiters_;
};

}  // namespace portico::cp
