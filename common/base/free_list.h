#pragma once
// A bounded free list of T: objects given back are kept (up to a limit) and handed out again, so
// that a steady workload allocates nothing. Thread-compatible: owned by one thread (a worker).
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace portico {

template <typename T>
class FreeList {
 public:
  explicit FreeList(size_t max_kept) : max_kept_(max_kept) { free_.reserve(max_kept); }
  // A kept object, or a new one.
  std::unique_ptr<T> Take() {
    if (free_.empty()) return std::make_unique<T>();
    std::unique_ptr<T> item = std::move(free_.back());
    free_.pop_back();
    return item;
  }
  // Keeps `item` when fewer than max_kept are kept; otherwise it is freed.
  void Give(std::unique_ptr<T> item) {
    if (item != nullptr && free_.size() < max_kept_) free_.push_back(std::move(item));
  }
  size_t size() const { return free_.size(); }

 private:
  size_t max_kept_;
  std::vector<std::unique_ptr<T>> free_;
};

}  // namespace portico
