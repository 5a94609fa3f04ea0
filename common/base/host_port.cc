#include "common/base/host_port.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace portico {

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text) {
  HostPort out;
  absl::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == absl::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("invalid address '", text, "': want [v6]:port"));
    }
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(absl::StrCat("invalid address '", text, "': want host:port"));
    }
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("invalid port in '", text, "'"));
  }
  out.port = static_cast<uint16_t>(port);
  return out;
}

HostAndPort SplitHostHeader(absl::string_view text) {
  HostAndPort out;
  out.name = text;
  size_t colon = absl::string_view::npos;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close != absl::string_view::npos && close + 1 < text.size() && text[close + 1] == ':') colon = close + 1;
  } else {
    colon = text.find(':');
    if (colon != absl::string_view::npos && text.rfind(':') != colon) colon = absl::string_view::npos;
  }
  if (colon == absl::string_view::npos) return out;
  const absl::string_view digits = text.substr(colon + 1);
  if (digits.empty() || digits.size() > 5 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return out;
  }
  uint32_t value = 0;
  for (char c : digits) value = value * 10 + static_cast<uint32_t>(c - '0');
  if (value > 65535) return out;
  out.name = text.substr(0, colon);
  out.port = static_cast<uint16_t>(value);
  return out;
}

}  // namespace portico
