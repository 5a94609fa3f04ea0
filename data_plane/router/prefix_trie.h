#pragma once
// A compressed (radix) trie over a sorted list of byte-string keys, built once and then read-only.
// It stores no values: a node that ends one or more keys carries the range [begin, end) of their
// positions in the sorted key list, so the caller keeps its values in an array in the same order
// (for the router: one bucket's path entries, contiguous in memory).
//
// Layout: one array of fixed-size nodes (the children of a node are adjacent), one array with the
// first byte of every node (a child is found with memchr over the parent's children), and one
// string with every edge label. A lookup walks at most text.size() bytes whatever the number of
// keys, touches no heap other than these three arrays, and never allocates.
#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace portico::dp {

class PrefixTrie {
 public:
  // An empty trie (no key, not even the empty one).
  PrefixTrie() = default;
  // `sorted_keys` must be sorted by bytes as unsigned (std::string / string_view operator<);
  // equal keys are allowed and share one range. The three arrays live in one block allocated from
  // `memory` (for example an arena shared by everything one request touches).
  PrefixTrie(absl::Span<const absl::string_view> sorted_keys, std::pmr::memory_resource* memory);
  PrefixTrie(PrefixTrie&& other) noexcept { *this = std::move(other); }
  PrefixTrie& operator=(PrefixTrie&& other) noexcept;
  ~PrefixTrie();

  // Calls visit(uint32_t begin, uint32_t end) once per stored key that is a prefix of `text`
  // (the empty key counts), shortest first; [begin, end) are the positions of that key.
  template <typename Visit>
  void ForEachPrefixOf(absl::string_view text, Visit&& visit) const {
    if (node_count_ == 0) return;
    uint32_t index = 0;
    size_t position = 0;
    while (true) {
      const Node& node = nodes_[index];
      if (node.keys_begin != node.keys_end) visit(node.keys_begin, node.keys_end);
      if (position == text.size() || node.child_count == 0) return;
      const uint32_t child_index = FindChild(node, text[position]);
      if (child_index == kNoChild) return;
      index = child_index;
      const Node& child = nodes_[index];
      if (text.size() - position < child.label_size ||
          !BytesEqual(labels_ + child.label_begin, text.data() + position, child.label_size)) {
        return;
      }
      position += child.label_size;
    }
  }

  size_t node_count() const { return node_count_; }
  // Bytes held by the three arrays.
  size_t memory_bytes() const { return block_bytes_; }

 private:
  struct Node {
    uint32_t label_begin = 0;  // edge label from the parent, in labels_ (empty for the root)
    uint32_t label_size = 0;
    uint32_t first_child = 0;  // children are nodes_[first_child, first_child + child_count)
    uint32_t keys_begin = 0;   // positions of the keys ending here
    uint32_t keys_end = 0;
    uint32_t child_count = 0;
  };

  static constexpr uint32_t kNoChild = UINT32_MAX;

  // Labels and fan-outs are mostly short: a plain loop beats a libc call there.
  static bool BytesEqual(const char* a, const char* b, size_t size) {
    if (size > 16) return std::memcmp(a, b, size) == 0;
    for (size_t i = 0; i < size; ++i) {
      if (a[i] != b[i]) return false;
    }
    return true;
  }
  uint32_t FindChild(const Node& node, char byte) const {
    const char* first = first_bytes_ + node.first_child;
    if (node.child_count > 16) {
      const void* hit = std::memchr(first, byte, node.child_count);
      return hit == nullptr ? kNoChild
                            : node.first_child + static_cast<uint32_t>(static_cast<const char*>(hit) - first);
    }
    for (uint32_t i = 0; i < node.child_count; ++i) {
      if (first[i] == byte) return node.first_child + i;
    }
    return kNoChild;
  }
  void Release();

  // One block: node_count_ Nodes, then node_count_ first bytes, then the labels.
  const Node* nodes_ = nullptr;        // nodes_[0] is the root
  const char* first_bytes_ = nullptr;  // first_bytes_[i]: first byte of nodes_[i]'s label
  const char* labels_ = nullptr;
  uint32_t node_count_ = 0;
  size_t block_bytes_ = 0;
  std::pmr::memory_resource* memory_ = nullptr;
};

}  // namespace portico::dp
