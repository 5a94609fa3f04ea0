#pragma once
// Builders shared by the router tests.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/config/config_set.h"
#include "data_plane/router/router.h"

namespace portico::dp::testing_util {

inline std::string Id(int n) { return absl::StrFormat("00000000-0000-4000-8000-%012d", n); }
inline const std::string& ServiceId() {
  static const std::string id = "aaaaaaaa-0000-4000-8000-000000000001";
  return id;
}

struct RouteSpec {
  int id = 1;
  std::vector<std::string> methods;
  std::vector<std::string> hosts;
  std::vector<std::string> paths;
  std::vector<std::pair<std::string, std::vector<std::string>>> headers;
  std::vector<std::string> protocols;  // empty = unset (Kong default)
  std::optional<std::string> service_id = ServiceId();
  int regex_priority = 0;
  std::vector<std::string> snis;
  int source_count = 0;
  int destination_count = 0;
};

inline config::v1::Route MakeRoute(const RouteSpec& spec) {
  config::v1::Route route;
  route.set_id(Id(spec.id));
  for (const auto& p : spec.protocols) route.add_protocols(p);
  if (!spec.methods.empty()) for (const auto& m : spec.methods) route.mutable_methods()->add_values(m);
  if (!spec.hosts.empty()) for (const auto& h : spec.hosts) route.mutable_hosts()->add_values(h);
  if (!spec.paths.empty()) for (const auto& p : spec.paths) route.mutable_paths()->add_values(p);
  if (!spec.snis.empty()) for (const auto& s : spec.snis) route.mutable_snis()->add_values(s);
  for (int i = 0; i < spec.source_count; ++i) route.mutable_sources()->add_values()->set_ip("10.0.0.0/8");
  for (int i = 0; i < spec.destination_count; ++i) route.mutable_destinations()->add_values()->set_port(80);
  for (const auto& [name, values] : spec.headers) {
    auto& list = (*route.mutable_headers()->mutable_values())[name];
    for (const auto& v : values) list.add_values(v);
  }
  if (spec.service_id) route.set_service_id(*spec.service_id);
  route.set_regex_priority(spec.regex_priority);
  route.set_strip_path(true);
  route.set_path_handling("v0");
  return route;
}

inline config::v1::Service MakeService(const std::string& id, bool enabled = true) {
  config::v1::Service service;
  service.set_id(id);
  service.set_protocol("http");
  service.set_host("upstream.test");
  service.set_port(80);
  service.set_enabled(enabled);
  return service;
}

inline std::shared_ptr<const ConfigSet> MakeConfig(const std::vector<RouteSpec>& routes,
                                                   std::vector<config::v1::Service> services = {
                                                       MakeService(ServiceId())}) {
  auto set = std::make_shared<ConfigSet>();
  set->services = std::move(services);
  for (const RouteSpec& spec : routes) set->routes.push_back(MakeRoute(spec));
  return set;
}

struct Request {
  std::string method = "GET";
  std::string host;
  uint16_t port = 8000;
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  bool tls = false;  // came over TLS, with `sni`
  std::string sni;
};

// Runs Find; the Request must outlive the returned Match (matched_path points into it).
inline std::optional<Match> FindRoute(const Router& router, const Request& request) {
  std::vector<std::pair<absl::string_view, absl::string_view>> headers;
  for (const auto& [k, v] : request.headers) headers.emplace_back(k, v);
  RequestView view;
  view.method = request.method;
  view.host = request.host;
  view.port = request.port;
  view.path = request.path;
  view.headers = headers.empty() ? nullptr : &headers;
  view.tls = request.tls;
  view.sni = request.sni;
  return router.Find(view);
}

}  // namespace portico::dp::testing_util
