#pragma once
#include <cstdint>
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

}  // namespace portico
