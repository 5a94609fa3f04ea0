#include "data_plane/router/route_priority.h"

#include <algorithm>

namespace portico::dp {
namespace {

bool NonEmpty(bool has, int size) { return has && size > 0; }

}  // namespace

uint64_t RoutePriority(const config::v1::Route& route, absl::string_view path) {
  uint64_t field_kinds = 0;
  if (route.has_sources() && route.sources().values_size() > 0) ++field_kinds;
  if (route.has_destinations() && route.destinations().values_size() > 0) ++field_kinds;
  if (NonEmpty(route.has_methods(), route.methods().values_size())) ++field_kinds;
  const bool has_hosts = NonEmpty(route.has_hosts(), route.hosts().values_size());
  if (has_hosts) ++field_kinds;
  uint64_t header_count = route.has_headers() ? route.headers().values_size() : 0;
  if (header_count > 0) {
    ++field_kinds;
    header_count = std::min<uint64_t>(header_count, kMaxHeaderCount);
  }
  if (NonEmpty(route.has_snis(), route.snis().values_size())) ++field_kinds;
  if (NonEmpty(route.has_paths(), route.paths().values_size())) ++field_kinds;

  bool plain_host_only = has_hosts;
  for (const std::string& host : route.hosts().values()) {
    if (host.find('*') != std::string::npos) plain_host_only = false;
  }

  const bool regex = IsRegexPath(path);
  const uint64_t regex_priority =
      regex ? static_cast<uint64_t>(static_cast<uint32_t>(route.regex_priority())) : 0;
  const uint64_t path_length = regex ? 0 : (path.size() & 0x7FFFF);

  return (field_kinds << 61) | (plain_host_only ? kPlainHostOnlyBit : 0) | (header_count << 52) |
         (regex ? kRegexPathBit : 0) | (regex_priority << 19) | path_length;
}

}  // namespace portico::dp
