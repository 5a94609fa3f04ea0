#pragma once
// Fixed-window request counters shared by every worker of a data plane, without locks: a fixed
// open-addressing table of {key, window|count} atomic slots. A key is a 64-bit hash of what is
// counted (route, service, identifier) with the period in its low 3 bits; the count restarts when
// the window changes. When the probed slots are all taken by live keys, the request is not
// counted (`Hit` returns nullopt) and the caller lets it through (fail open): counting is
// best-effort under memory pressure, never a reason to refuse or to allocate.
//
// Counters outlive config snapshots: CountersFor(plugin id) returns the same table to each
// snapshot's instance of a plugin, so a config change does not reset the limits (as Kong's shared
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

// The counters of a plugin instance (by plugin id), created on first use. Not for the request
// path (takes a lock); the plugin's compile calls it.
std::shared_ptr<WindowCounters> CountersFor(const std::string& plugin_id);

}  // namespace portico::dp::plugins
