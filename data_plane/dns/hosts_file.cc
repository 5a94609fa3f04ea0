#include "data_plane/dns/hosts_file.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"

namespace portico::dp {

HostsTable ParseHosts(absl::string_view text) {
  HostsTable table;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t hash = line.find('#');
    if (hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.size() < 2) continue;
    const std::string ip(fields[0]);
    in_addr v4;
    in6_addr v6;
    if (inet_pton(AF_INET, ip.c_str(), &v4) != 1 && inet_pton(AF_INET6, ip.c_str(), &v6) != 1) continue;
    for (size_t i = 1; i < fields.size(); ++i) {
      std::string name = absl::AsciiStrToLower(fields[i]);
      if (!name.empty() && name.back() == '.') name.pop_back();
      if (name.empty()) continue;
      std::vector<std::string>& addresses = table[name];
      if (std::find(addresses.begin(), addresses.end(), ip) == addresses.end()) addresses.push_back(ip);
    }
  }
  return table;
}

}  // namespace portico::dp
