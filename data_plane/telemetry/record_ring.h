#pragma once
// A bounded single-producer/single-consumer ring of byte records (log lines, queue entries): one
// worker thread pushes, one consumer thread (a log writer, a batch sender) drains. Lock-free and
// allocation-free on both sides once constructed: the capacity is fixed, and a record that does
// not fit is refused (the producer drops and counts it; nothing waits, nothing grows).
//
// Layout: [uint32 length][bytes] records back to back in a power-of-two byte array, wrapping at
// its end. `head_` (producer) and `tail_` (consumer) are byte counters that only grow.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace portico::dp {

class RecordRing {
 public:
  // `capacity_bytes` is rounded up to a power of two (at least 64).
  explicit RecordRing(size_t capacity_bytes) {
    size_t capacity = 64;
    while (capacity < capacity_bytes) capacity <<= 1;
    capacity_ = capacity;
    data_ = std::make_unique_for_overwrite<char[]>(capacity_);  // not zero-filled: untouched pages cost nothing
  }
  RecordRing(const RecordRing&) = delete;
  RecordRing& operator=(const RecordRing&) = delete;

  // Producer thread only. False (and nothing changes but the drop count) when the record does not
  // fit in the free space now.
  bool TryPush(absl::string_view record) {
    const uint64_t head = head_.load(std::memory_order_relaxed);
    const uint64_t tail = tail_.load(std::memory_order_acquire);
    const size_t needed = sizeof(uint32_t) + record.size();
    if (record.size() > UINT32_MAX || needed > capacity_ - (head - tail)) {
      dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return false;
    }
    const uint32_t length = static_cast<uint32_t>(record.size());
    CopyIn(head, reinterpret_cast<const char*>(&length), sizeof(length));
    CopyIn(head + sizeof(length), record.data(), record.size());
    head_.store(head + needed, std::memory_order_release);
    return true;
  }

  // Consumer thread only. Calls `on_record(absl::string_view)` for each record present now, in
  // order, with a view into `scratch` (valid for the call), then frees their space. Returns how
  // many records it handed over.
  template <typename OnRecord>
  size_t Drain(std::string* scratch, OnRecord&& on_record) {
    const uint64_t head = head_.load(std::memory_order_acquire);
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    size_t records = 0;
    while (tail != head) {
      uint32_t length = 0;
      CopyOut(tail, reinterpret_cast<char*>(&length), sizeof(length));
      scratch->resize(length);
      CopyOut(tail + sizeof(length), scratch->data(), length);
      tail += sizeof(length) + length;
      on_record(absl::string_view(*scratch));
      ++records;
    }
    tail_.store(tail, std::memory_order_release);
    return records;
  }

  // Records refused because the ring was full (any thread; relaxed).
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  size_t capacity() const { return capacity_; }
  // Bytes in use now (any thread; a snapshot).
  size_t used() const {
    return static_cast<size_t>(head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire));
  }

 private:
  void CopyIn(uint64_t at, const char* from, size_t n) {
    const size_t offset = static_cast<size_t>(at & (capacity_ - 1));
    const size_t first = std::min(n, capacity_ - offset);
    std::memcpy(data_.get() + offset, from, first);
    std::memcpy(data_.get(), from + first, n - first);
  }
  void CopyOut(uint64_t at, char* to, size_t n) const {
    const size_t offset = static_cast<size_t>(at & (capacity_ - 1));
    const size_t first = std::min(n, capacity_ - offset);
    std::memcpy(to, data_.get() + offset, first);
    std::memcpy(to + first, data_.get(), n - first);
  }

  size_t capacity_ = 0;
  std::unique_ptr<char[]> data_;
  alignas(64) std::atomic<uint64_t> head_{0};  // written by the producer
  alignas(64) std::atomic<uint64_t> tail_{0};  // written by the consumer
  alignas(64) std::atomic<uint64_t> dropped_{0};  // written by the producer
};

}  // namespace portico::dp
