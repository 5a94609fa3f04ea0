#pragma once
// The hosts file (/etc/hosts format): "address name [aliases...]", '#' starts a comment. Parsed by
// us because c-ares 1.18 cannot be pointed at another file than the system's.
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace portico::dp {

// Lowercase name -> its addresses (numeric, in file order, without duplicates). Lines whose first
// field is not an IPv4/IPv6 address are skipped, as are zone-scoped addresses (fe80::1%eth0).
using HostsTable = absl::flat_hash_map<std::string, std::vector<std::string>>;
HostsTable ParseHosts(absl::string_view text);

}  // namespace portico::dp
