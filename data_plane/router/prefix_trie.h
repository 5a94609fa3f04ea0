#pragma once
// A compressed (radix) trie of byte-string prefixes, each carrying a list of uint32_t values.
// Built once, then read-only: lookups are const, allocation-free and thread-safe. A lookup walks
// at most strlen(text) bytes whatever the number of prefixes stored.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace portico::router {

class PrefixTrie {
 public:
  PrefixTrie();

  // Adds `value` to the list of `prefix` (lists keep insertion order). Not thread-safe.
  void Insert(absl::string_view prefix, uint32_t value);

  // Calls visit(const std::vector<uint32_t>& values) once for every stored prefix of `text`
  // that has values, shortest prefix first. The empty prefix counts.
  template <typename Visit>
  void ForEachPrefixOf(absl::string_view text, Visit&& visit) const {
    uint32_t node = 0;
    size_t position = 0;
    while (true) {
      const Node& current = nodes_[node];
      if (!current.values.empty()) visit(current.values);
      if (position == text.size()) return;
      const uint32_t child = FindChild(current, text[position]);
      if (child == kNoNode) return;
      const std::string& label = nodes_[child].label;
      if (text.size() - position < label.size() ||
          text.compare(position, label.size(), label) != 0) {
        return;
      }
      position += label.size();
      node = child;
    }
  }

  // Releases spare capacity after the last Insert.
  void Shrink();
  size_t node_count() const { return nodes_.size(); }

 private:
  static constexpr uint32_t kNoNode = UINT32_MAX;
  struct Node {
    std::string label;                             // edge from the parent; empty for the root
    std::vector<std::pair<char, uint32_t>> children;  // sorted by first byte of the child label
    std::vector<uint32_t> values;
  };

  uint32_t FindChild(const Node& node, char first) const;
  uint32_t AddNode(std::string label);

  std::vector<Node> nodes_;  // nodes_[0] is the root
};

}  // namespace portico::router
