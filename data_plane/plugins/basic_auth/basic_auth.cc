#include "data_plane/plugins/basic_auth/basic_auth.h"

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/sha256.h"
#include "common/config/basic_auth_password.h"
#include "data_plane/plugins/auth_consumer.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

using config::v1::Consumer;

struct Credential {
  const Consumer* consumer;
  absl::string_view id;
  absl::string_view username;
  std::string salt;    // 16 bytes
  std::string digest;  // 32 bytes: SHA-256(salt || password)
};

// "Basic <base64>" (Kong: optional leading spaces, "Basic" or "basic", optional spaces).
bool Base64Part(absl::string_view header, absl::string_view* out) {
  header = absl::StripLeadingAsciiWhitespace(header);
  if (header.size() < 5 || (header[0] != 'B' && header[0] != 'b') || header.substr(1, 4) != "asic") return false;
  header.remove_prefix(5);
  header = absl::StripAsciiWhitespace(header);
  if (header.empty()) return false;
  *out = header;
  return true;
}

bool ConstantTimeEqual(const uint8_t* a, absl::string_view b) {
  uint8_t diff = 0;
  for (size_t i = 0; i < b.size(); ++i) diff |= a[i] ^ static_cast<uint8_t>(b[i]);
  return diff == 0;
}

class BasicAuth final : public PluginHandler {
 public:
  StepStatus Access(RequestContext& request) const override {
    absl::string_view proxy_value, auth_value;
    bool has_proxy = false, has_auth = false;
    for (const auto& [name, value] : request.head->headers) {
      if (!has_proxy && absl::EqualsIgnoreCase(name, "proxy-authorization")) {
        has_proxy = true;
        proxy_value = value;
      } else if (!has_auth && absl::EqualsIgnoreCase(name, "authorization")) {
        has_auth = true;
        auth_value = value;
      }
    }
    if (!has_proxy && !has_auth) return Fail(request);
    // As Kong: a username found through Proxy-Authorization decides (its password must match);
    // otherwise Authorization is tried.
    const Credential* credential = nullptr;
    absl::string_view password;
    if (has_proxy) {
      credential = Find(proxy_value, request, &password);
      if (hide_credentials_) request.upstream_headers_removed.push_back("proxy-authorization");
    }
    if (credential == nullptr && has_auth) {
      credential = Find(auth_value, request, &password);
      if (hide_credentials_) request.upstream_headers_removed.push_back("authorization");
    }
    if (credential == nullptr || !PasswordMatches(*credential, password)) return Fail(request);
    SetAuthenticatedConsumer(request, *credential->consumer, credential->id, credential->username);
    return StepStatus::kContinue;
  }

  bool hide_credentials_ = false;
  std::string www_authenticate_;
  AnonymousConsumer anonymous_;
  absl::flat_hash_map<absl::string_view, Credential> by_username_;  // views of snapshot strings

 private:
  StepStatus Fail(RequestContext& request) const {
    return anonymous_.Fail(request, 401, "Unauthorized", www_authenticate_);
  }

  // The credential of the username in `header`, with the presented password (a view of
  // request.response_text, the decoding scratch); null when it does not parse or is unknown.
  const Credential* Find(absl::string_view header, RequestContext& request, absl::string_view* password) const {
    absl::string_view encoded;
    if (!Base64Part(header, &encoded)) return nullptr;
    std::string& decoded = request.response_text;
    if (!absl::Base64Unescape(encoded, &decoded)) return nullptr;
    const size_t colon = decoded.find(':');
    if (colon == std::string::npos || colon == 0) return nullptr;
    auto it = by_username_.find(absl::string_view(decoded).substr(0, colon));
    if (it == by_username_.end()) return nullptr;
    *password = absl::string_view(decoded).substr(colon + 1);
    return &it->second;
  }

  static bool PasswordMatches(const Credential& credential, absl::string_view password) {
    uint8_t digest[Sha256::kDigestBytes];
    Sha256 sha;
    sha.Update(credential.salt);
    sha.Update(password);
    sha.Final(digest);
    return ConstantTimeEqual(digest, credential.digest);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileBasicAuth(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  auto handler = std::make_unique<BasicAuth>();
  handler->hide_credentials_ = config["hide_credentials"].get<bool>();
  handler->www_authenticate_ = absl::StrCat(
      "Basic realm=\"", config["realm"].is_string() ? config["realm"].get<std::string>() : std::string("service"),
      "\"");
  handler->anonymous_ = AnonymousConsumer(config["anonymous"], context.snapshot);
  absl::flat_hash_map<absl::string_view, const Consumer*> consumers;
  for (const Consumer& c : context.snapshot.consumers) consumers.emplace(c.id(), &c);
  for (const config::v1::BasicAuthCredential& b : context.snapshot.basicauth_credentials) {
    auto consumer = consumers.find(b.consumer_id());
    if (consumer == consumers.end()) continue;  // the validator refuses such a snapshot
    Credential credential{consumer->second, b.id(), b.username(), {}, {}};
    if (!ParseHashedBasicAuthPassword(b.password(), &credential.salt, &credential.digest)) continue;  // validated
    handler->by_username_.emplace(b.username(), std::move(credential));
  }
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
