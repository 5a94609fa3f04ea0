#include "data_plane/plugins/cors/cors.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "re2/re2.h"

namespace portico::dp::plugins {
namespace {

// An origin as Kong's normalize_origin reads it (LuaSocket's url.parse): [scheme:][//[userinfo@]
// host[:port]]; `has_host` false when there is no authority or it names no host.
struct OriginParts {
  bool has_host = false;
  bool has_scheme = false;
  bool has_port = false;
  absl::string_view scheme, host, port;
};

OriginParts ParseOrigin(absl::string_view origin) {
  OriginParts parts;
  absl::string_view rest = origin.substr(0, origin.find('#'));
  if (!rest.empty() && absl::ascii_isalnum(rest[0])) {
    size_t i = 1;
    while (i < rest.size() && (absl::ascii_isalnum(rest[i]) || rest[i] == '+' || rest[i] == '-' || rest[i] == '.')) ++i;
    if (i < rest.size() && rest[i] == ':') {
      parts.has_scheme = true;
      parts.scheme = rest.substr(0, i);
      rest.remove_prefix(i + 1);
    }
  }
  if (rest.substr(0, 2) != "//") return parts;
  absl::string_view authority = rest.substr(2);
  authority = authority.substr(0, authority.find('/'));
  if (const size_t at = authority.find('@'); at != absl::string_view::npos) authority.remove_prefix(at + 1);
  if (const size_t colon = authority.rfind(':');
      colon != absl::string_view::npos && authority.find(']', colon) == absl::string_view::npos) {
    parts.has_port = true;
    parts.port = authority.substr(colon + 1);
    authority = authority.substr(0, colon);
  }
  parts.has_host = !authority.empty();
  parts.host = authority;  // an IPv6 literal keeps its brackets (LuaSocket drops them)
  return parts;
}

// Kong's normalized `domain` of an origin: scheme://host[:port] without the scheme's default
// port, or the origin as given when it names no host. Replaces `out`'s content.
void NormalizedDomain(absl::string_view origin, const OriginParts& parts, std::string* out) {
  if (!parts.has_host) {
    out->assign(origin.data(), origin.size());
    return;
  }
  out->clear();
  if (parts.has_scheme) absl::StrAppend(out, parts.scheme, "://");
  out->append(parts.host.data(), parts.host.size());
  const bool default_port = (parts.scheme == "http" && parts.port == "80") ||
                            (parts.scheme == "https" && parts.port == "443");
  if (parts.has_port && !default_port) absl::StrAppend(out, ":", parts.port);
}

// Kong's test for a configured origin that is not a regex.
bool IsPlainOrigin(absl::string_view origin) {
  return !origin.empty() &&
         origin.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.:/-") ==
             absl::string_view::npos;
}

struct AllowedOrigin {
  std::string domain;                 // a plain origin, normalized
  std::unique_ptr<const re2::RE2> regex;  // or a regex, anchored at both ends when matched
  bool by_host = false;               // the regex has no ':': it is matched against the host only
};

constexpr absl::string_view kAllowOrigin = "Access-Control-Allow-Origin";
constexpr absl::string_view kAllowCredentials = "Access-Control-Allow-Credentials";
constexpr absl::string_view kExposeHeaders = "Access-Control-Expose-Headers";

class Cors final : public PluginHandler {
 public:
  enum class Mode {
    kAll,     // no origins, or only "*"
    kSingle,  // one plain origin: sent as configured whatever the request's Origin
    kList,    // the request's Origin is looked up
  };

  StepStatus Access(RequestContext& request) const override {
    const MessageHead& head = *request.head;
    const std::string* origin = head.Find("origin");
    if (head.method == "OPTIONS" && origin != nullptr && head.Find("access-control-request-method") != nullptr) {
      return preflight_continue_ ? StepStatus::kContinue : Preflight(request, *origin);
    }
    // Kong's header_filter: on the response, whoever makes it.
    if (origin == nullptr && !allow_origin_absent_) return StepStatus::kContinue;
    AllowOrigin(request, origin, /*response_phase=*/true);
    if (has_exposed_headers_) {
      request.response_headers_removed.push_back("access-control-expose-headers");
      request.response_headers.Add(kExposeHeaders, exposed_headers_);
    }
    return StepStatus::kContinue;
  }

  Mode mode_ = Mode::kAll;
  std::string single_origin_;
  std::vector<AllowedOrigin> origins_;
  bool list_has_star_ = false;  // Kong allows every Origin once it reaches a "*" in a list
  bool has_headers_ = false;
  std::string headers_;  // joined with ','
  std::string methods_;
  bool has_exposed_headers_ = false;
  std::string exposed_headers_;
  std::string max_age_;  // empty: not sent
  bool credentials_ = false;
  bool private_network_ = false;
  bool preflight_continue_ = false;
  bool allow_origin_absent_ = true;

 private:
  StepStatus Preflight(RequestContext& request, const std::string& origin) const {
    const MessageHead& head = *request.head;
    HeaderList& out = request.response_headers;
    AllowOrigin(request, &origin, /*response_phase=*/false);
    if (has_headers_) {
      out.Add("Access-Control-Allow-Headers", headers_);
    } else if (const std::string* asked = head.Find("access-control-request-headers")) {
      out.Add("Access-Control-Allow-Headers", *asked);
    }
    out.Add("Access-Control-Allow-Methods", methods_);
    if (!max_age_.empty()) out.Add("Access-Control-Max-Age", max_age_);
    if (private_network_) {
      const std::string* asked = head.Find("access-control-request-private-network");
      if (asked != nullptr && *asked == "true") out.Add("Access-Control-Allow-Private-Network", "true");
    }
    LocalResponse response;
    response.status = 200;
    request.Respond(response);
    return StepStatus::kStop;
  }

  // Kong's configure_origin and configure_credentials. In the response phase Kong adds
  // `Vary: Origin` (once per call, so twice when both add it); on a preflight it sets it.
  void AllowOrigin(RequestContext& request, const std::string* origin, bool response_phase) const {
    absl::string_view allow;  // the Access-Control-Allow-Origin sent; empty: none (cleared)
    bool allow_all = false;
    int vary = 0;
    if (mode_ == Mode::kAll) {
      allow = "*";
      allow_all = true;
    } else {
      ++vary;
      if (mode_ == Mode::kSingle) {
        allow = single_origin_;
      } else if (origin != nullptr && list_has_star_) {
        allow = "*";
        allow_all = true;
      } else if (origin != nullptr) {
        allow = MatchOrigin(*origin, &request.response_text);  // scratch; copied by Add below
      }
    }
    bool allow_credentials = false;
    if (credentials_ && !allow_all) {
      allow_credentials = true;
    } else if (credentials_ && origin != nullptr) {
      ++vary;
      allow = *origin;  // credentials cannot go with "*": the Origin itself
      allow_credentials = true;
    }
    HeaderList& out = request.response_headers;
    for (int i = 0; i < (response_phase ? vary : std::min(vary, 1)); ++i) out.Add("Vary", "Origin");
    request.response_headers_removed.push_back("access-control-allow-origin");
    if (!allow.empty()) out.Add(kAllowOrigin, allow);
    if (allow_credentials) {
      request.response_headers_removed.push_back("access-control-allow-credentials");
      out.Add(kAllowCredentials, "true");
    }
  }

  // The normalized Origin when a configured origin matches it (built in `scratch`), else empty.
  absl::string_view MatchOrigin(absl::string_view origin, std::string* scratch) const {
    const OriginParts parts = ParseOrigin(origin);
    NormalizedDomain(origin, parts, scratch);
    const absl::string_view host = parts.has_host ? parts.host : origin;
    for (const AllowedOrigin& allowed : origins_) {
      bool found;
      if (allowed.regex != nullptr) {
        const absl::string_view subject = allowed.by_host ? host : absl::string_view(*scratch);
        found = allowed.regex->Match(re2::StringPiece(subject.data(), subject.size()), 0, subject.size(),
                                     re2::RE2::ANCHOR_START, nullptr, 0);
      } else {
        found = allowed.domain == *scratch;
      }
      if (found) return *scratch;
    }
    return {};
  }
};

std::string JoinStrings(const nlohmann::json& array) {
  std::vector<std::string> items;
  if (array.is_array()) {
    for (const nlohmann::json& item : array) items.push_back(item.get<std::string>());
  }
  return absl::StrJoin(items, ",");
}

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileCors(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  auto handler = std::make_unique<Cors>();
  const nlohmann::json& origins = config["origins"];
  const size_t n = origins.is_array() ? origins.size() : 0;
  if (n == 0 || (n == 1 && origins[0] == "*")) {
    handler->mode_ = Cors::Mode::kAll;
  } else if (n == 1 && IsPlainOrigin(origins[0].get<std::string>())) {
    handler->mode_ = Cors::Mode::kSingle;
    handler->single_origin_ = origins[0].get<std::string>();
  } else {
    handler->mode_ = Cors::Mode::kList;
    for (size_t i = 0; i < n; ++i) {
      const std::string entry = origins[i].get<std::string>();
      if (entry == "*") {
        handler->list_has_star_ = true;
        continue;
      }
      AllowedOrigin& allowed = handler->origins_.emplace_back();
      if (IsPlainOrigin(entry)) {
        NormalizedDomain(entry, ParseOrigin(entry), &allowed.domain);
        continue;
      }
      // As Kong: a leading '^' is dropped (the match is anchored at the start) and a '$' added.
      absl::string_view pattern = entry;
      if (pattern.front() == '^') pattern.remove_prefix(1);
      const std::string anchored = absl::StrCat(pattern, entry.back() == '$' ? "" : "$");
      auto regex = std::make_unique<const re2::RE2>(anchored, re2::RE2::Quiet);
      if (!regex->ok()) return absl::InvalidArgumentError(absl::StrCat("config.origins.", i + 1, ": '", entry,
                                                                       "' is not a valid regex"));
      allowed.regex = std::move(regex);
      allowed.by_host = entry.find(':') == std::string::npos;
    }
  }
  handler->has_headers_ = config["headers"].is_array() && !config["headers"].empty();
  handler->headers_ = JoinStrings(config["headers"]);
  handler->methods_ = config["methods"].is_array() ? JoinStrings(config["methods"])
                                                   : "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT";
  handler->has_exposed_headers_ = config["exposed_headers"].is_array() && !config["exposed_headers"].empty();
  handler->exposed_headers_ = JoinStrings(config["exposed_headers"]);
  if (const nlohmann::json& max_age = config["max_age"]; max_age.is_number()) {
    handler->max_age_ = max_age.dump();  // whole numbers are stored as integers
  }
  handler->credentials_ = config["credentials"].get<bool>();
  handler->private_network_ = config["private_network"].get<bool>();
  handler->preflight_continue_ = config["preflight_continue"].get<bool>();
  handler->allow_origin_absent_ = config["allow_origin_absent"].get<bool>();
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
