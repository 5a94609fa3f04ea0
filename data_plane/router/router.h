#pragma once
// Compiled, immutable request router built from one ConfigSet. Shared read-only by every worker.
// Kong 3.x `traditional_compatible` semantics (docs/router.md): hosts (exact, *.suffix, prefix.*,
// host:port), plain prefix paths, "~" regex paths (RE2), methods, headers (plain and "~*" regex
// values), Kong's 64-bit priority with ties broken by route id. Compiled into host buckets, each
// with a prefix trie and an RE2::Set, so a match costs about the same with 10 or 100,000 routes:
// whole (Build) for a full snapshot, or layered on the previous router (BuildOn) for a delta that
// changed only routes. Route `snis` are checked on TLS requests (exact names).
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/config_set.h"

namespace re2 {
class RE2;
}

namespace portico::dp {

struct RequestView {
  absl::string_view method;  // "GET"
  absl::string_view host;    // Host header as sent, may carry ":port", may be empty
  uint16_t port = 0;         // local port the request arrived on (for host:port rules)
  // Path without the query, already normalised with NormalizeRequestPath (the router matches it
  // as given).
  absl::string_view path;
  // Request headers as received (names in any case). May be null when there are none.
  const std::vector<std::pair<absl::string_view, absl::string_view>>* headers = nullptr;
  // The request came over TLS (protocol "https"), with this server name (SNI, lowercase, no
  // trailing dot; empty when the client sent none). A route with `snis` matches a TLS request
  // only when its SNI is one of them; on plain HTTP `snis` are ignored (Kong).
  bool tls = false;
  absl::string_view sni;
};

struct Match {
  const config::v1::Route* route = nullptr;
  const config::v1::Service* service = nullptr;  // null: the route has no (enabled) service
  // The part of the request path the route's path matched (for strip_path): the plain prefix,
  // or for a regex path the first N bytes where N is the length of the regex match (Kong strips
  // by length). Empty when the route matched without a path. Points into RequestView::path.
  absl::string_view matched_path;
  // The route's protocols do not include "http": on a plain-HTTP listener the proxy answers
  // with the route's https_redirect_status_code instead of proxying.
  // For a gRPC route (protocols grpc/grpcs): "grpcs" without "grpc".
  bool https_only = false;
  // The route's protocols are grpc and/or grpcs (GrpcRouteStep applies Kong's gRPC rules).
  bool grpc = false;
  // The route's protocols are ws/wss only: a request that is not a WebSocket upgrade gets 426
  // (an http/https route takes WebSocket upgrades too). `https_only` is set for a wss-only route.
  bool websocket_only = false;
  // A regex path matched: its pattern (capture groups as the route's path has them), run from
  // byte `path_regex_offset` of the path, anchored there when the offset is not 0. For Kong's
  // uri captures (consistent hashing's hash_on uri_capture); owned by the router.
  const re2::RE2* path_regex = nullptr;
  uint32_t path_regex_offset = 0;
};

// What changed between the config of a router and a newer one (Router::BuildOn).
struct RouteChanges {
  std::vector<absl::string_view> route_ids;  // routes upserted or deleted (any order)
  bool services_changed = false;              // any service upserted or deleted
};

class Router {
 public:
  // Keeps `config` alive for as long as the router lives; returned pointers point into it.
  static absl::StatusOr<std::unique_ptr<const Router>> Build(std::shared_ptr<const ConfigSet> config);

  // The router of `config`, which is `previous`'s config with `changes`, matching exactly as
  // Build(config) would. When only routes changed, and at most 64 since `previous`'s whole table
  // was built, it shares that table (skipping the changed routes) and compiles only the changed
  // routes apart: a one-route change at 100,000 routes costs a few ms instead of a whole build.
  // It checks that `config` is the table's config with those changes (counts and every other
  // route id) and builds the whole table otherwise. Neither router holds the other's config.
  static absl::StatusOr<std::unique_ptr<const Router>> BuildOn(const Router& previous,
                                                               std::shared_ptr<const ConfigSet> config,
                                                               const RouteChanges& changes);

  // Thread-safe (const). std::nullopt when no route matches.
  std::optional<Match> Find(const RequestView& request) const;

  // Number of routes compiled (routes of disabled services and stream routes are left out).
  size_t route_count() const;

  // Bytes the router mapped outside the heap (its arena's huge-page blocks), for memory figures.
  size_t mapped_bytes() const;

  // Made by BuildOn on an older whole table (not built whole).
  bool layered() const;

  ~Router();

 private:
  struct Impl;
  explicit Router(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Kong's v0 upstream path (KONG-REFERENCE.md §3.5): joins the service path (empty = null) with the
// request path, removing `matched_path` first when strip_path is true. No query string here.
std::string BuildUpstreamPath(absl::string_view service_path, absl::string_view request_path,
                              absl::string_view matched_path, bool strip_path);

// Kong's request path normalisation (common/config/validate.h NormalizeUriPath): decode %XX except
// reserved characters, remove dot segments, merge "//". Run by the proxy before Find. A '%' that
// starts no %XX triplet is first written as %25 (a literal percent sign), which keeps the result
// normalised (idempotent) and keeps decoded bytes from forming new triplets with it.
std::string NormalizeRequestPath(absl::string_view raw_path);

// Kong's `escape` applied to the upstream path before it is sent: every byte outside
// `A-Za-z0-9 - _ . ~ ! $ & ' ( ) * + , / : ; = ? @ [ ] %` becomes %XX (uppercase hex). Kong also
// keeps '#'; here it is encoded, as a request-target cannot carry it.
// Existing %XX triplets pass unchanged, so reserved characters stay encoded.
std::string EscapeUpstreamPath(absl::string_view path);

}  // namespace portico::dp
