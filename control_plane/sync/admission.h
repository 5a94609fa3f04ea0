#pragma once
// Admission control for new DP streams (SYNC-PROTOCOL.md §5.5): a token bucket that turns a
// reconnect storm into an orderly ramp. Pure logic over injected time points, so it is unit
// tested without sleeping. Not thread-safe: the SyncServer calls it under its mutex.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace portico::cp {

class AdmissionBucket {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `rate_per_s` tokens are added per second up to `burst`; the bucket starts full.
  // rate_per_s <= 0 disables admission control (every stream is admitted).
  AdmissionBucket(double rate_per_s, double burst, TimePoint now)
      : rate_(rate_per_s), burst_(std::max(1.0, burst)), tokens_(burst_), last_(now), next_slot_(now) {}

  // Takes one token. On refusal returns false and sets *retry_after_s to the whole number of
  // seconds (>= 1, <= max_retry_s) after which this caller should retry. Each refusal reserves
  // the next free refill slot, so N refused callers are told to come back spread over N / rate
  // seconds instead of all at once.
  bool TryAdmit(TimePoint now, uint32_t* retry_after_s, uint32_t max_retry_s = 60) {
    if (rate_ <= 0) return true;
    Refill(now);
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return true;
    }
    next_slot_ = std::max(next_slot_, now) + ToDuration(1.0 / rate_);
    double wait_s = std::chrono::duration<double>(next_slot_ - now).count();
    *retry_after_s = static_cast<uint32_t>(std::clamp(std::ceil(wait_s), 1.0, double(max_retry_s)));
    return false;
  }

  double tokens(TimePoint now) {
    Refill(now);
    return tokens_;
  }

 private:
  static std::chrono::steady_clock::duration ToDuration(double seconds) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(seconds));
  }
  void Refill(TimePoint now) {
    if (now <= last_) return;
    tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
    last_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  TimePoint last_;
  TimePoint next_slot_;  // end of the last refill slot promised to a refused caller
};

}  // namespace portico::cp
