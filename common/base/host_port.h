#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace portico {

struct HostPort {
  std::string host;  // IPv6 without brackets
  uint16_t port = 0;
};

// Parses "host:port", "[v6]:port". Port 0 is allowed (ephemeral).
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);

// A Host header or a route host split into name and optional port: "name", "name:port", "[v6]",
// "[v6]:port". `name` keeps an IPv6 literal's brackets. Without a valid decimal port (1 to 5
// digits, at most 65535; a single colon outside brackets) the whole text is the name.
struct HostAndPort {
  absl::string_view name;
  std::optional<uint16_t> port;
};
HostAndPort SplitHostHeader(absl::string_view text);

}  // namespace portico
