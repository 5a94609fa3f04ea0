#pragma once
// Plain http:// URLs of log and trace collectors (http-log's http_endpoint): parsed the same way
// by the CP's schema (so the Admin API refuses what a DP could not send to) and by the DP's
// sender.
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace portico {

struct HttpUrl {
  std::string host;          // without brackets for IPv6
  uint16_t port = 80;
  std::string target = "/";  // path and query
  std::string host_header;   // host[:port] as the Host header carries it
};

// http://host[:port][/path][?query]. Refused, with a message that says why: https and other
// schemes, no host, user info (user:password@), a port outside 1..65535, a fragment ('#'), a
// space or control character anywhere.
absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url);

}  // namespace portico
