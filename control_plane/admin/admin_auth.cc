#include "control_plane/admin/admin_auth.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/base/sha256.h"

namespace portico::cp {
namespace {

void Digest(absl::string_view text, uint8_t out[Sha256::kDigestBytes]) {
  Sha256 sha;
  sha.Update(text);
  sha.Final(out);
}

HttpResponse Unauthorized(bool invalid_token) {
  HttpResponse response = HttpResponse::Json(401, R"({"message":"Unauthorized"})");
  response.headers.emplace_back("WWW-Authenticate",
                                invalid_token ? R"(Bearer error="invalid_token")" : "Bearer");
  return response;
}

std::string StripBrackets(absl::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::string(host);
}

}  // namespace

absl::StatusOr<AdminToken> AdminToken::FromText(absl::string_view token, absl::string_view source) {
  if (absl::EndsWith(token, "\n")) token.remove_suffix(1);
  if (absl::EndsWith(token, "\r")) token.remove_suffix(1);
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, " is empty: write the Admin API token into it"));
  }
  for (char c : token) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": the token contains whitespace or a control character (one line, no spaces)"));
    }
  }
  AdminToken out;
  Digest(token, out.digest_);
  return out;
}

absl::StatusOr<AdminToken> AdminToken::FromFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("--admin-token-file: ", text.status().message()));
  }
  return FromText(*text, absl::StrCat("--admin-token-file ", path));
}

bool AdminToken::Accepts(absl::string_view authorization) const {
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return false;
  }
  uint8_t presented[Sha256::kDigestBytes];
  Digest(authorization.substr(kScheme.size()), presented);
  return CRYPTO_memcmp(presented, digest_, sizeof(digest_)) == 0;
}

std::optional<HttpResponse> AdminToken::Check(const HttpRequest& request) const {
  if (request.HeaderCount("authorization") != 1) return Unauthorized(false);
  const std::string& value = *request.Header("authorization");
  if (Accepts(value)) return std::nullopt;
  const bool bearer = value.size() >= 6 && absl::EqualsIgnoreCase(absl::string_view(value).substr(0, 6), "bearer");
  return Unauthorized(bearer);
}

bool IsLoopbackHost(absl::string_view host_in) {
  const std::string host = StripBrackets(host_in);
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  unsigned char v4[4];
  if (inet_pton(AF_INET, host.c_str(), v4) == 1) return v4[0] == 127;
  unsigned char v6[16];
  if (inet_pton(AF_INET6, host.c_str(), v6) == 1) {
    static constexpr unsigned char kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static constexpr unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(v6, kLoopback, 16) == 0) return true;
    return std::memcmp(v6, kMappedPrefix, 12) == 0 && v6[12] == 127;
  }
  return false;  // a name other than localhost may resolve anywhere
}

absl::Status CheckAdminListenersSecured(const std::vector<AdminListener>& listeners, bool has_token,
                                        bool has_client_ca) {
  for (const AdminListener& listener : listeners) {
    if (IsLoopbackHost(listener.host) || has_token) continue;
    if (listener.tls && has_client_ca) continue;
    return absl::FailedPreconditionError(absl::StrCat(
        "--", listener.flag, " listens on ", listener.host,
        ", which is not a loopback address, and the Admin API has no authentication: set --admin-token-file",
        listener.tls ? " or --admin-client-ca" : " (--admin-client-ca protects only --admin-ssl-listen)",
        ", or listen on 127.0.0.1"));
  }
  return absl::OkStatus();
}

}  // namespace portico::cp
