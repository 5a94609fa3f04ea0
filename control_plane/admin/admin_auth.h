#pragma once
// Admin API authentication (beyond Kong OSS, docs/tls.md "Admin API security"): a bearer token
// read from a file, and the rule that refuses an Admin listener off loopback without
// authentication. Client certificates are checked by the TLS listener itself (HttpServer with a
// TLS context that requires them); nothing here sees them.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/http/message.h"

namespace portico::cp {

// The Admin API token, kept only as its SHA-256 digest. Thread-safe (immutable).
class AdminToken {
 public:
  // Reads the token from `path`: one trailing "\n" or "\r\n" is stripped; an empty token, or one
  // with whitespace or control characters inside, is refused (the message names the file, never
  // its content).
  static absl::StatusOr<AdminToken> FromFile(const std::string& path);
  // The same rules for a token given directly (tests).
  static absl::StatusOr<AdminToken> FromText(absl::string_view token, absl::string_view source);

  // True when `authorization` (the Authorization header's value) is "Bearer <token>" (scheme
  // case-insensitive, one space) and the token matches. The comparison takes the same time
  // whatever the presented token is: both sides are SHA-256 digests compared with CRYPTO_memcmp.
  bool Accepts(absl::string_view authorization) const;

  // nullopt when the request carries the token in exactly one Authorization header; otherwise
  // the 401 to send: {"message":"Unauthorized"} with WWW-Authenticate: Bearer (plus
  // error="invalid_token" when a bearer token was presented and refused, RFC 6750 §3.1).
  std::optional<HttpResponse> Check(const HttpRequest& request) const;

 private:
  AdminToken() = default;
  uint8_t digest_[32] = {};
};

// One Admin API listener as configured: the flag that set it and its host.
struct AdminListener {
  std::string flag;  // "admin-listen", "admin-ssl-listen"
  std::string host;  // IP literal (brackets allowed) or "localhost"
  bool tls = false;
};

// True for 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 and "localhost".
bool IsLoopbackHost(absl::string_view host);

// The start-up rule: a listener off loopback needs authentication. A token protects every
// listener; client certificates (`--admin-client-ca`) protect only the TLS one, so a cleartext
// listener off loopback needs the token. FailedPrecondition naming the flag and what to set.
absl::Status CheckAdminListenersSecured(const std::vector<AdminListener>& listeners, bool has_token,
                                        bool has_client_ca);

}  // namespace portico::cp
