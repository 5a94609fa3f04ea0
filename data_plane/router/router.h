#pragma once
// Compiled, immutable request router built from one ConfigSet. Shared read-only by every worker.
// Issue 2 scope: hosts (exact, *.suffix, prefix.*, host:port), plain prefix paths, methods,
// headers; Kong's priority order. Regex paths and full Kong semantics come with the router issue.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/config_set.h"

namespace portico::router {

struct RequestView {
  absl::string_view method;  // "GET"
  absl::string_view host;    // Host header as sent, may carry ":port", may be empty
  uint16_t port = 0;         // local port the request arrived on (for host:port rules)
  absl::string_view path;    // path without the query, already normalised
  // Request headers as received (names in any case). May be null when there are none.
  const std::vector<std::pair<absl::string_view, absl::string_view>>* headers = nullptr;
};

struct Match {
  const config::v1::Route* route = nullptr;
  const config::v1::Service* service = nullptr;  // null: the route has no (enabled) service
  // The part of the request path the route's path matched (for strip_path); empty when the
  // route matched without a path. Points into RequestView::path (valid as long as that buffer).
  absl::string_view matched_path;
};

class Router {
 public:
  // Keeps `config` alive for as long as the router lives; returned pointers point into it.
  static absl::StatusOr<std::unique_ptr<const Router>> Build(std::shared_ptr<const ConfigSet> config);

  // Thread-safe (const). std::nullopt when no route matches.
  std::optional<Match> Find(const RequestView& request) const;

  // Number of routable routes compiled (excludes https-only routes and routes of disabled services).
  size_t route_count() const;

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

}  // namespace portico::router
