#pragma once
// Reading a request's raw query (without '?') on the request path, without allocation: the
// plugins that look for an argument by name (key-auth, request-termination's trigger) and the
// balancer's hash_on query_arg.
#include <string>

#include "absl/strings/string_view.h"

namespace portico::dp {

// Calls fn(name, raw_value) for each '&'-separated argument, in order; `raw_value` is still
// percent-encoded and empty when the argument has no '='.
template <typename Fn>
void ForEachQueryArgument(absl::string_view query, Fn&& fn) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const absl::string_view pair = query.substr(0, amp);
    query = amp == absl::string_view::npos ? absl::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    fn(pair.substr(0, eq), eq == absl::string_view::npos ? absl::string_view() : pair.substr(eq + 1), pair);
  }
}

// Appends `text` percent-encoded as Kong's ngx.encode_args encodes names and values: letters,
// digits and "-._~" as they are, every other byte as %XX (uppercase).
void AppendEscaped(std::string* out, absl::string_view text);

// Percent-decodes (and '+' -> ' ') `in` into `out`, replacing its content and keeping its capacity.
void DecodeQueryValue(absl::string_view in, std::string* out);

}  // namespace portico::dp
