#pragma once
// Kong 3.x `traditional_compatible` route priority (KONG-REFERENCE.md §3.3), exposed for the router
// and its tests. Higher value = tried first. Bit layout (most significant first):
//   63..61  number of configured field kinds (sources, destinations, methods, hosts, headers, snis, paths)
//   60      route has hosts and none of them contains '*'
//   59..52  number of header names (capped at 255)
//   51      the path group is a regex path ("~...")
//   50..19  regex_priority (regex path groups only; taken as a 32-bit two's-complement pattern)
//   18..0   length of the plain path prefix (0 for no path / regex)
#include <cstdint>

#include "absl/strings/string_view.h"
#include "portico/config/v1/config.pb.h"

namespace portico::dp {

inline constexpr uint64_t kPlainHostOnlyBit = uint64_t{1} << 60;
inline constexpr uint64_t kRegexPathBit = uint64_t{1} << 51;
inline constexpr uint32_t kMaxHeaderCount = 255;

// True when a route path is a regex (Kong's "~" prefix).
inline bool IsRegexPath(absl::string_view path) { return !path.empty() && path[0] == '~'; }

// Priority of one path group of `route`. Kong splits a route with several paths into one matcher
// per group of equal-length plain paths (or per regex group); `path` is one member of that group,
// or empty when the route has no paths.
uint64_t RoutePriority(const config::v1::Route& route, absl::string_view path);

}  // namespace portico::dp
