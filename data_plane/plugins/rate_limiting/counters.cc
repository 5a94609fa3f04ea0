#include "data_plane/plugins/rate_limiting/counters.h"


namespace portico::dp::plugins {
namespace {

constexpr int kProbes = 8;
constexpr uint64_t kCountBits = 24;
constexpr uint64_t kCountMask = (uint64_t{1} << kCountBits) - 1;
constexpr uint64_t kWindowMask = (uint64_t{1} << (64 - kCountBits)) - 1;

}  // namespace

WindowCounters::WindowCounters(size_t slots_log2) : slots_(size_t{1} << slots_log2), mask_((uint64_t{1} << slots_log2) - 1) {}

WindowCounters::Slot* WindowCounters::Find(uint64_t key, uint64_t window, bool claim) const {
  if (key == 0) key = 1;
  const uint64_t w = window & kWindowMask;
  for (int i = 0; i < kProbes; ++i) {
    Slot& slot = slots_[(key + static_cast<uint64_t>(i)) & mask_];
    uint64_t current = slot.key.load(std::memory_order_acquire);
    if (current == key) return &slot;
    if (!claim) continue;
    // Empty, or a key whose window has passed (a different key of the same period class only).
    const bool expired = current != 0 && (current & 7) == (key & 7) &&
                         (slot.window_count.load(std::memory_order_relaxed) >> kCountBits) < w;
    if (current == 0 || expired) {
      if (slot.key.compare_exchange_strong(current, key, std::memory_order_acq_rel)) {
        slot.window_count.store(w << kCountBits, std::memory_order_release);
        return &slot;
      }
      if (current == key) return &slot;  // another worker claimed it for the same key
    }
  }
  return nullptr;
}

std::optional<uint32_t> WindowCounters::Peek(uint64_t key, uint64_t window) const {
  Slot* slot = Find(key, window, false);
  if (slot == nullptr) return 0;  // never counted: zero so far
  const uint64_t wc = slot->window_count.load(std::memory_order_acquire);
  if ((wc >> kCountBits) != (window & kWindowMask)) return 0;
  return static_cast<uint32_t>(wc & kCountMask);
}

std::optional<uint32_t> WindowCounters::Add(uint64_t key, uint64_t window) {
  Slot* slot = Find(key, window, true);
  if (slot == nullptr) return std::nullopt;
  const uint64_t w = window & kWindowMask;
  uint64_t old = slot->window_count.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    const uint64_t count = (old >> kCountBits) == w ? (old & kCountMask) : 0;
    next = (w << kCountBits) | (count < kCountMask ? count + 1 : count);
  } while (!slot->window_count.compare_exchange_weak(old, next, std::memory_order_acq_rel));
  return static_cast<uint32_t>(next & kCountMask);
}

WindowCounters& ProcessCounters() {
  static WindowCounters* const counters = new WindowCounters(18);
  return *counters;
}

}  // namespace portico::dp::plugins
