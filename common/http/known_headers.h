#pragma once
// Header names with a meaning for HTTP/1 framing or for the proxy, recognised cheaply, and the
// hop-by-hop rule (RFC 9110 §7.6.1). Pure functions, thread-safe.
#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "common/http/http1_codec.h"

namespace portico {

// The header names the proxy and the servers treat specially, recognised with one switch on the length and at
// most a few case-insensitive compares (instead of comparing every header against every list).
enum class KnownHeader {
  kOther,
  // hop-by-hop
  kConnection, kKeepAlive, kProxyConnection, kTe, kTrailer, kTransferEncoding, kUpgrade,
  // rewritten or dropped by the proxy
  kHost, kExpect, kContentLength, kVia, kXRealIp, kXForwardedFor, kXForwardedProto, kXForwardedHost,
  kXForwardedPort, kXForwardedPrefix,
};
KnownHeader ClassifyHeader(absl::string_view name);

// True when the comma-separated list `value` (a Connection, Upgrade or TE value) holds `token`,
// in any case, blanks around items ignored.
bool ListHasToken(absl::string_view value, absl::string_view token);

// RFC 9113 §8.2.2's connection-specific fields, which HTTP/2 never carries: Connection,
// Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade (TE has its own rule).
bool IsConnectionSpecific(KnownHeader kind);

// A gRPC content type: application/grpc, or application/grpc+<codec> or ;<params> (not
// application/grpc-web, which is another protocol).
bool IsGrpcContentType(absl::string_view value);

// True for headers that apply to one hop only: Connection, Keep-Alive, Proxy-Connection, TE,
// Trailer, Transfer-Encoding, Upgrade, and any name listed in the message's Connection headers.
class HopByHopFilter {
 public:
  // REQUIRES: `head` outlives the filter (the listed names point into its values).
  explicit HopByHopFilter(const MessageHead& head);
  bool IsHopByHop(absl::string_view name) const { return IsHopByHop(name, ClassifyHeader(name)); }
  // With the name's classification already known.
  bool IsHopByHop(absl::string_view name, KnownHeader kind) const;

 private:
  absl::InlinedVector<absl::string_view, 4> listed_;  // names from Connection headers, as sent
};

}  // namespace portico
