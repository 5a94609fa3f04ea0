#pragma once
// The one entity validator: run by the Admin API before writing, by the CP before publishing a
// snapshot and by the DP before applying one (KONG-REFERENCE.md §2.2 rules for services/routes).
// Pure functions, thread-safe.
#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/config/config_set.h"
#include "common/config/field_errors.h"

namespace portico {

// Field-level and entity-level checks of one entity; empty result = valid. Does not check
// references (route.service_id existing) nor uniqueness: those need the whole set.
// Every string must be UTF-8 (CheckUtf8Fields, utf8_fields.h): that check runs first, and when a
// string fails it, no other error that could echo its bytes is reported (see validate.cc).
FieldErrors ValidateServiceFields(const config::v1::Service& service);
FieldErrors ValidateRouteFields(const config::v1::Route& route);
// A plugin's rules: a bundled plugin name, protocols, and its config against the plugin's schema
// (errors under "config."); the config need not be normalized.
FieldErrors ValidatePluginFields(const config::v1::Plugin& plugin);
FieldErrors ValidateConsumerFields(const config::v1::Consumer& consumer);
FieldErrors ValidateKeyAuthCredentialFields(const config::v1::KeyAuthCredential& credential);
FieldErrors ValidateBasicAuthCredentialFields(const config::v1::BasicAuthCredential& credential);
FieldErrors ValidateAclFields(const config::v1::Acl& acl);
// Kong's jwt_secrets rules; the algorithm must be one Portico verifies, and an RS/ES one needs a
// PEM public key OpenSSL parses (jwt_algorithms.h).
FieldErrors ValidateJwtSecretFields(const config::v1::JwtSecret& secret);
// Kong's upstreams rules (a hostname name, one_of lists, slots, header/cookie names, the
// healthchecks record, then the hash_on/hash_fallback entity checks) and targets rules (host[:port]
// or ip[:port] already in Kong's stored form, see FormatTarget in upstreams.h; weight 0..65535).
FieldErrors ValidateUpstreamFields(const config::v1::Upstream& upstream);
FieldErrors ValidateTargetFields(const config::v1::Target& target);
// Kong's certificates rules: cert and key PEM that parse ("invalid certificate: <reason>", "invalid
// key: <reason>", OpenSSL's reason only: never any of the key), the key matching the certificate;
// cert_alt and key_alt both or neither, matching each other, of another key type than cert (RSA
// vs ECDSA). With `now` (Unix seconds; the Admin API's writes), a certificate whose notAfter is
// before `now` is refused too ("certificate expired, ..." at cert or cert_alt). Sets and snapshots
// are validated without `now`: a stored certificate that expires later does not block a config.
FieldErrors ValidateCertificateFields(const config::v1::Certificate& certificate,
                                      std::optional<int64_t> now = std::nullopt);
// Kong's snis rules: `name` a wildcard host (one '*' as its first or last character, no IP, no
// port), lowercase (the Admin API lowercases it); `certificate` required.
FieldErrors ValidateSniFields(const config::v1::Sni& sni);
// Kong's ca_certificates rules: exactly one PEM certificate with the CA basic constraint, not
// expired at `now` when given (as above); `cert_digest`, when set, its SHA-256 (lowercase hex).
FieldErrors ValidateCaCertificateFields(const config::v1::CaCertificate& ca_certificate,
                                        std::optional<int64_t> now = std::nullopt);
// Kong's wildcard_host typedef (snis names, certificates' snis input): "" when `name` is one.
std::string WildcardHostError(absl::string_view name);
// Sets a CA certificate's cert_digest from its cert (left as it is when the cert does not parse:
// the rules report it), and lowercases an SNI's name.
void NormalizeCaCertificate(config::v1::CaCertificate* ca_certificate);
void NormalizeSni(config::v1::Sni* sni);

// Completes an upstream's healthchecks with Kong's defaults (errors under "healthchecks", the
// record left as it was), and puts a target in Kong's stored form ("10.0.0.1" -> "10.0.0.1:8000";
// left as it was when it does not parse, for the rules to report).
void NormalizeUpstream(config::v1::Upstream* upstream, FieldErrors* errors);
void NormalizeTarget(config::v1::Target* target);
// Replaces a plugin's config with its normalized form (defaults filled, common/plugins); errors
// (unknown plugin, bad config) go to `errors` and leave the config as it was.
void NormalizePlugin(config::v1::Plugin* plugin, FieldErrors* errors);

// What every kind's field validation is built on (new kinds call it from their descriptor's
// `validate`, entity_descriptor.h): CheckUtf8Fields first, then `rules`, keeping only the rule
// errors that cannot echo ill-formed bytes (see validate.cc).
FieldErrors ValidateEntityUtf8First(const google::protobuf::Message& entity,
                                    FieldErrors (*rules)(const google::protobuf::Message&));

// InvalidArgument "service <id>: schema violation (...)" when invalid.
absl::Status ValidateService(const config::v1::Service& service);
absl::Status ValidateRoute(const config::v1::Route& route);

// Every entity valid, ids are UUIDs and unique per kind, names unique per kind, every
// route.service_id references a service of the set, every target's upstream is in the set and no
// upstream has the same target twice; every SNI's certificate, every service's and upstream's
// client_certificate and every service's ca_certificates are in the set, SNI names and CA
// digests are unique. The message names the kind and id at fault (never key material).
//
// `only_changed`: the config differs from one that already passed this check only in these
// entities (a delta's upserts); the own rules of the others are not run again. Ids, uniqueness
// and references are checked over the whole set, except where `only_changed` also lists every
// delete (ListsDeletes): then, for services and routes whose list is sorted by id (a DP's
// decoded config), only the changed entities are checked against the rest, and the others'
// references only when an entity of a kind they reference was deleted. Null: every entity is
// checked.
class ChangedEntities;
absl::Status ValidateConfigSet(const ConfigSet& config, const ChangedEntities* only_changed = nullptr);

// Entities by (kind, id), kind as the snapshot names it ("services", "routes", "plugins",
// "keyauth_credentials", ...).
class ChangedEntities {
 public:
  void Add(absl::string_view kind, absl::string_view id);
  bool Contains(absl::string_view kind, absl::string_view id) const;  // no allocation
  // The ids of `kind`, or null when none of that kind changed (one lookup for a whole kind).
  const absl::flat_hash_set<std::string>* IdsOf(absl::string_view kind) const;
  size_t size() const { return size_; }
  // A delete of the entity `id` of `kind`.
  void AddDeleted(absl::string_view kind, absl::string_view id);
  // The deleted ids of `kind`, or null when none of that kind was deleted.
  const absl::flat_hash_set<std::string>* DeletedIdsOf(absl::string_view kind) const;
  // Says that every upsert and every delete of the change is listed (a DP's delta), which lets
  // ValidateConfigSet check services and routes by their changes alone.
  void MarkListsDeletes() { lists_deletes_ = true; }
  bool ListsDeletes() const { return lists_deletes_; }
  bool AnyDeleted(absl::string_view kind) const { return deleted_by_kind_.contains(kind); }

 private:
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> ids_by_kind_;
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> deleted_by_kind_;
  size_t size_ = 0;
  bool lists_deletes_ = false;
};

// Helpers shared with the Admin API.
bool IsValidHostname(absl::string_view host);  // DNS name or IP literal, no port
bool IsValidIpOrCidr(absl::string_view text);

// Kong's request path normalisation (kong/tools/uri.lua `normalize` with merge_slashes), shared by
// the route validator (plain paths must already be normalised) and the DP router (request paths
// are normalised before matching):
//   1. every %XX triplet (hex in any case) is decoded, except reserved characters
//      `!*'();:@&=+$,/?%#[]`, which stay encoded with uppercase hex (`%2f` -> `%2F`);
//   2. dot segments are removed (RFC 3986 5.2.4; a decoded `%2E` counts as a dot);
//   3. runs of `/` are merged into one.
// The result may contain bytes that are not valid in a request line (decoded space, UTF-8);
// the proxy re-escapes them when forwarding (dp::EscapeUpstreamPath).
std::string NormalizeUriPath(absl::string_view path);

// The RE2 pattern Kong's `traditional_compatible` router builds from a regex route path
// ("~" + regex): "^" + regex, with every "?<" rewritten to "?P<" (named groups). The "^" is
// prepended textually, exactly as Kong does, so a top-level alternation is only anchored in its
// first branch.
std::string RoutePathRegexPattern(absl::string_view tilde_path);

// The RE2 pattern of a "~*" header value: the rest of the value, lowercased (Kong lowercases the
// configured regex and matches it, unanchored, against the lowercased request header value).
std::string HeaderValueRegexPattern(absl::string_view tilde_star_value);

// Empty when `pattern` compiles with RE2 (default options, as the router uses them); otherwise
// RE2's error text.
std::string Re2CompileError(absl::string_view pattern);

}  // namespace portico
