#pragma once
// What the proxy requires of a message head before it forwards anything (docs/proxy.md, "Request
// framing policy"). A request that fails is answered locally and nothing of it reaches an
// upstream; a response that fails becomes a 502. Pure functions: unit-tested and fuzzed.
//
// The codec (http1_codec.h) has already refused malformed syntax: bad tokens, control bytes in
// header values, obs-fold, bad chunk framing, duplicate Content-Length, Content-Length together
// with Transfer-Encoding. These checks need the whole head.
#include <string>

#include "absl/strings/string_view.h"
#include "common/http/http1_codec.h"

namespace portico {

// A request-target split into its parts. Origin-form "/p?q" or absolute-form "http://a/p?q".
struct RequestTarget {
  absl::string_view path;       // starts with '/'
  absl::string_view query;      // without '?'
  bool has_query = false;
  absl::string_view authority;  // absolute-form only (never empty there); empty for origin-form
};

// Splits and checks a request-target: origin-form or absolute-form with an "http" or "https"
// scheme (any case), an authority that is a valid host[:port] without userinfo, and no fragment
// ('#') anywhere (a fragment must never take part in routing). False when any of that fails.
bool ParseRequestTarget(absl::string_view target, RequestTarget* out);

// True for a Host header value (or absolute-form authority) made of an RFC 3986 host and an
// optional port: a reg-name of unreserved, sub-delims and %XX characters without empty labels
// (no ".."), or a bracketed IPv6 literal; then ":" and at most 5 digits. Empty is valid (RFC 9112
// §3.2 allows an empty Host); nothing else is (no '/', '@', '\', spaces or bytes >= 0x80).
bool IsValidHostValue(absl::string_view host);

struct RequestHeadCheck {
  int status = 0;               // 0: forwardable; else 400, 501 or 505
  const char* reason = "";      // why not, for the debug log
  RequestTarget target;
  // The host the request is for: the authority of an absolute-form target (it takes precedence
  // over Host, RFC 9112 §3.2.2), else the Host header; `has_host` false when there is neither.
  absl::string_view host;
  bool has_host = false;
  // `Expect: 100-continue` on HTTP/1.1 (the proxy answers it once the request may go upstream).
  bool expects_continue = false;
};

// The request rules (docs/proxy.md "Request framing policy"):
//   - HTTP/1.0 or HTTP/1.1 only (else 505);
//   - the target as ParseRequestTarget accepts it (else 400);
//   - HTTP/1.1: exactly one Host header; HTTP/1.0: at most one; its value IsValidHostValue
//     (else 400);
//   - Transfer-Encoding: not on HTTP/1.0 (400; RFC 9112 §6.1 calls such framing faulty), and
//     exactly "chunked" when present (any other coding or list: 501, as nginx);
//   - at most one Content-Length header line.
RequestHeadCheck CheckRequestHead(const MessageHead& head);

// The response rules: Transfer-Encoding, when present, is exactly "chunked" and the response is
// HTTP/1.1 (nginx answers 502 to anything else). False: answer 502, do not reuse the connection.
bool IsForwardableResponseHead(const MessageHead& head);

}  // namespace portico
