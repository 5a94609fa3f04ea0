#pragma once
// Fixed-window request counters shared by every worker of a data plane, without locks: a fixed
// open-addressing table of {key, window|count} atomic slots. A key is a 64-bit hash of what is
// counted (route, service, identifier) with the period in its low 3 bits; the count restarts when
// the window changes. When the probed slots are all taken by live keys, the request is not
// counted (`Hit` returns nullopt) and the caller lets it through (fail open): counting is
// best-effort under memory pressure, never a reason to refuse or to allocate.
//
// One table serves every rate-limiting instance of the process (ProcessCounters: 2^18 slots,
// 4 MiB, whatever the number of instances; instances put their plugin id into their keys), and
// it outlives config snapshots, so a config change does not reset the limits (as Kong's shared
// dictionary does not).
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace portico::dp::plugins {

class WindowCounters {
 public:
  explicit WindowCounters(size_t slots_log2 = 16);

  // The count in the current window `window` for `key`, before this request (Peek) or after
  // adding one (Add). nullopt: the table has no room for `key` now.
  std::optional<uint32_t> Peek(uint64_t key, uint64_t window) const;
  std::optional<uint32_t> Add(uint64_t key, uint64_t window);

  size_t slots() const { return slots_.size(); }

 private:
  struct Slot {
    std::atomic<uint64_t> key{0};
    std::atomic<uint64_t> window_count{0};  // window << 24 | count
  };
  // The slot holding `key`, claiming an empty or expired one when `claim`; null if none.
  Slot* Find(uint64_t key, uint64_t window, bool claim) const;

  mutable std::vector<Slot> slots_;
  const uint64_t mask_;
};

// The process-wide table (created on first use, never freed).
WindowCounters& ProcessCounters();

}  // namespace portico::dp::plugins
