#pragma once
// Kong's upstream and target helpers shared by the entity rules (validate.cc), the descriptors
// (entities.cc) and, later, the DP balancer: Kong's host[:port] parser (kong/tools/utils.lua
// normalize_ip / format_host), the target form Kong stores, and the upstream `healthchecks`
// record (kong/db/schema/entities/upstreams.lua; KONG-REFERENCE.md §4.3). Pure functions,
// thread-safe.
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/field_errors.h"
#include "nlohmann/json.hpp"

namespace portico {

// What Kong's normalize_ip makes of "host[:port]": an IPv4 address (leading zeros dropped), an
// IPv6 address (bare, or in brackets when a port follows; expanded to eight lowercase 4-digit
// groups), or a name (letters, digits, '-', '.', '_'; no empty label but a trailing one, no label
// ending in '-'), and the port when one is given (0..65535).
struct KongAddress {
  enum class Type { kName, kIpv4, kIpv6 };
  Type type = Type::kName;
  std::string host;
  std::optional<int> port;
};

// InvalidArgument with Kong's text ("invalid hostname: x", "invalid ipv4 address: x",
// "invalid ipv6 address: x", "invalid port number") when `address` is none of the above.
absl::StatusOr<KongAddress> ParseKongAddress(absl::string_view address);

// Kong's stored form of a target: host:port with port 8000 when none is given, IPv6 expanded in
// brackets ("[0000:...:0001]:8000"). Nullopt when the target does not parse.
inline constexpr int kDefaultTargetPort = 8000;
std::optional<std::string> FormatTarget(absl::string_view target);

// Kong's field validators, as error texts ("" = valid):
// typedefs.path: starts with '/', no "//", RFC 3986 characters and well-formed %XX.
std::string KongPathError(absl::string_view path);
// typedefs.sni: a name, not an IP, without a port.
std::string KongSniError(absl::string_view sni);
// utils.validate_header_name / validate_cookie_name: A-Z, a-z, 0-9, '_' and '-'.
std::string KongHeaderNameError(absl::string_view name);
std::string KongCookieNameError(absl::string_view name);

// Kong's upstream `healthchecks` record: `record` (an object; null counts as {}) checked field by
// field (unknown fields, types, ranges, one_of lists; error paths relative to the record, e.g.
// "active.timeout"), every missing field filled with Kong's default. Idempotent. The result is
// meaningless when errors were added.
nlohmann::json NormalizeUpstreamHealthchecks(const nlohmann::json& record, FieldErrors* errors);

// Kong's is_upstream_using_healthcheck: whether a `healthchecks` record (normalized, or partial:
// a missing field counts as its default 0) turns any check on: an active `healthy.interval` or
// `unhealthy.interval`, or a passive `unhealthy` counter (`tcp_failures`, `timeouts`,
// `http_failures`) other than 0. When false, Kong reports every target HEALTHCHECKS_OFF.
bool UpstreamUsesHealthchecks(const nlohmann::json& record);

// The normalized record of `{}`: every default (as JSON text, for the descriptor's default).
const std::string& DefaultUpstreamHealthchecksJson();

// How a body's `healthchecks` object merges into the current one: records merge recursively
// (Kong merges nested records on PATCH), `active.headers` (a map) is replaced whole, and null
// resets a field to its default.
void MergeUpstreamHealthchecks(nlohmann::json* current, const nlohmann::json& patch);

// Kong's upstreams shorthand fields, applied to a request body before it is read: `algorithm`
// "least-connections" or "latency" resets `hash_on` (to "none"); then a `hash_on` other than
// "none" sets `algorithm` to "consistent-hashing", and "none" sets it to "round-robin". Values
// that are not strings are left for the field readers to refuse.
void RewriteUpstreamBody(nlohmann::json* body);

}  // namespace portico
