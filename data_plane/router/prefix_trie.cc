#include "data_plane/router/prefix_trie.h"

#include <algorithm>
#include <new>

namespace portico::dp {
namespace {

struct BuildNode {
  absl::string_view label;
  uint32_t first_child = 0;
  uint32_t child_count = 0;
  uint32_t keys_begin = 0;
  uint32_t keys_end = 0;
};

size_t CommonPrefixLength(absl::string_view a, absl::string_view b) {
  const size_t limit = std::min(a.size(), b.size());
  size_t n = 0;
  while (n < limit && a[n] == b[n]) ++n;
  return n;
}

// Fills nodes[index], whose keys are sorted_keys[lo, hi), all sharing their first `depth` bytes.
// Children of one node are appended next to each other, so a node's children are contiguous.
// Recursion depth is bounded by the number of distinct key lengths on one path.
void BuildSubtree(absl::Span<const absl::string_view> keys, uint32_t index, size_t lo, size_t hi,
                  size_t depth, std::vector<BuildNode>& nodes) {
  size_t i = lo;
  while (i < hi && keys[i].size() == depth) ++i;  // sorted: keys equal to the prefix come first
  nodes[index].keys_begin = static_cast<uint32_t>(lo);
  nodes[index].keys_end = static_cast<uint32_t>(i);
  struct Group {
    size_t lo, hi, common;
  };
  std::vector<Group> groups;
  while (i < hi) {
    const char byte = keys[i][depth];
    size_t j = i + 1;
    while (j < hi && keys[j][depth] == byte) ++j;
    // Sorted keys: the common prefix of the first and last key is the group's common prefix.
    groups.push_back({i, j, CommonPrefixLength(keys[i], keys[j - 1])});
    i = j;
  }
  if (groups.empty()) return;
  const uint32_t first_child = static_cast<uint32_t>(nodes.size());
  nodes[index].first_child = first_child;
  nodes[index].child_count = static_cast<uint32_t>(groups.size());
  nodes.resize(nodes.size() + groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    const Group& group = groups[g];
    nodes[first_child + g].label = keys[group.lo].substr(depth, group.common - depth);
    BuildSubtree(keys, static_cast<uint32_t>(first_child + g), group.lo, group.hi, group.common, nodes);
  }
}

}  // namespace

PrefixTrie::PrefixTrie(absl::Span<const absl::string_view> sorted_keys, std::pmr::memory_resource* memory) {
  if (sorted_keys.empty()) return;
  std::vector<BuildNode> nodes(1);
  BuildSubtree(sorted_keys, 0, 0, sorted_keys.size(), 0, nodes);
  size_t label_bytes = 0;
  for (const BuildNode& node : nodes) label_bytes += node.label.size();
  block_bytes_ = nodes.size() * sizeof(Node) + nodes.size() + label_bytes;
  memory_ = memory;
  char* block = static_cast<char*>(memory->allocate(block_bytes_, alignof(Node)));
  Node* out_nodes = reinterpret_cast<Node*>(block);
  char* out_first_bytes = block + nodes.size() * sizeof(Node);
  char* out_labels = out_first_bytes + nodes.size();
  size_t label_offset = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const BuildNode& built = nodes[i];
    Node* node = new (&out_nodes[i]) Node;
    node->label_begin = static_cast<uint32_t>(label_offset);
    node->label_size = static_cast<uint32_t>(built.label.size());
    node->first_child = built.first_child;
    node->child_count = built.child_count;
    node->keys_begin = built.keys_begin;
    node->keys_end = built.keys_end;
    out_first_bytes[i] = built.label.empty() ? '\0' : built.label.front();
    if (!built.label.empty()) std::memcpy(out_labels + label_offset, built.label.data(), built.label.size());
    label_offset += built.label.size();
  }
  nodes_ = out_nodes;
  first_bytes_ = out_first_bytes;
  labels_ = out_labels;
  node_count_ = static_cast<uint32_t>(nodes.size());
}

PrefixTrie& PrefixTrie::operator=(PrefixTrie&& other) noexcept {
  if (this == &other) return *this;
  Release();
  nodes_ = std::exchange(other.nodes_, nullptr);
  first_bytes_ = std::exchange(other.first_bytes_, nullptr);
  labels_ = std::exchange(other.labels_, nullptr);
  node_count_ = std::exchange(other.node_count_, 0);
  block_bytes_ = std::exchange(other.block_bytes_, 0);
  memory_ = std::exchange(other.memory_, nullptr);
  return *this;
}

PrefixTrie::~PrefixTrie() { Release(); }

void PrefixTrie::Release() {
  if (memory_ != nullptr) memory_->deallocate(const_cast<Node*>(nodes_), block_bytes_, alignof(Node));
  nodes_ = nullptr;
  memory_ = nullptr;
  node_count_ = 0;
  block_bytes_ = 0;
}

}  // namespace portico::dp
