#include "data_plane/router/prefix_trie.h"

#include <algorithm>

namespace portico::router {
namespace {

bool ChildLess(const std::pair<char, uint32_t>& child, char first) {
  return static_cast<unsigned char>(child.first) < static_cast<unsigned char>(first);
}

}  // namespace

PrefixTrie::PrefixTrie() { nodes_.emplace_back(); }

uint32_t PrefixTrie::FindChild(const Node& node, char first) const {
  const auto it = std::lower_bound(node.children.begin(), node.children.end(), first, ChildLess);
  if (it == node.children.end() || it->first != first) return kNoNode;
  return it->second;
}

uint32_t PrefixTrie::AddNode(std::string label) {
  nodes_.emplace_back();
  nodes_.back().label = std::move(label);
  return static_cast<uint32_t>(nodes_.size() - 1);
}

void PrefixTrie::Insert(absl::string_view prefix, uint32_t value) {
  uint32_t node = 0;
  absl::string_view rest = prefix;
  while (!rest.empty()) {
    const char first = rest.front();
    auto& children = nodes_[node].children;
    auto slot = std::lower_bound(children.begin(), children.end(), first, ChildLess);
    if (slot == children.end() || slot->first != first) {
      const size_t slot_index = static_cast<size_t>(slot - children.begin());
      const uint32_t leaf = AddNode(std::string(rest));  // may reallocate nodes_
      auto& parent_children = nodes_[node].children;
      parent_children.insert(parent_children.begin() + static_cast<std::ptrdiff_t>(slot_index),
                             {first, leaf});
      nodes_[leaf].values.push_back(value);
      return;
    }
    const uint32_t child = slot->second;
    const std::string& label = nodes_[child].label;
    size_t common = 0;
    while (common < label.size() && common < rest.size() && label[common] == rest[common]) ++common;
    if (common == label.size()) {
      node = child;
      rest.remove_prefix(common);
      continue;
    }
    // Split the edge: parent -> middle (label[0, common)) -> child (label[common, end)).
    const size_t slot_index = static_cast<size_t>(slot - children.begin());
    std::string head = label.substr(0, common);
    const uint32_t middle = AddNode(std::move(head));  // may reallocate nodes_
    Node& child_node = nodes_[child];
    const char child_first = child_node.label[common];
    child_node.label.erase(0, common);
    nodes_[middle].children.push_back({child_first, child});
    nodes_[node].children[slot_index].second = middle;
    node = middle;
    rest.remove_prefix(common);
  }
  nodes_[node].values.push_back(value);
}

void PrefixTrie::Shrink() {
  nodes_.shrink_to_fit();
  for (Node& node : nodes_) {
    node.children.shrink_to_fit();
    node.values.shrink_to_fit();
    node.label.shrink_to_fit();
  }
}

}  // namespace portico::router
