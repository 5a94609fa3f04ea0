#pragma once
// ip-restriction: the client address against `deny` then `allow` (IPv4 and IPv6 addresses and
// CIDR blocks; an IPv4-mapped IPv6 client counts as its IPv4 address). A denied client, or one not
// in a non-empty `allow`, gets `status` (403) with `message` ("IP address not allowed: <ip>").
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

// A set of address blocks, matched without allocation.
class IpBlockSet {
 public:
  // False (and nothing added) when `text` is not an address or CIDR block.
  bool Add(absl::string_view text);
  bool Contains(absl::string_view address) const;  // false for text that is not an address
  bool empty() const { return blocks_.empty(); }

 private:
  struct Block {
    uint8_t bytes[16];  // IPv4 as ::ffff:a.b.c.d
    int prefix_bits;    // of the 128
  };
  std::vector<Block> blocks_;
};

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileIpRestriction(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
