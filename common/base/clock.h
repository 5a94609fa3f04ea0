#pragma once
#include <atomic>
#include <cstdint>

namespace portico {

// Wall clock in whole seconds, injectable so tests use a fake.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowSeconds() const = 0;
};

class RealClock final : public Clock {
 public:
  int64_t NowSeconds() const override;
  static const Clock& Get();
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now = 1700000000) : now_(now) {}
  int64_t NowSeconds() const override { return now_.load(); }
  void Advance(int64_t seconds) { now_ += seconds; }
  void Set(int64_t now) { now_ = now; }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace portico
