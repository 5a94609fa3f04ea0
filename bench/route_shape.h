#pragma once
// The route shape of the 100,000-route benches (apply_100k's, over the Admin API): route i has
// one path /r<i>, two hosts (h<i % 100>.example.com and client.example, so every route is in
// the client.example host bucket), methods GET and POST, and the given service.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/config/entity_json.h"

namespace portico {

// The bench ids: UUIDs numbered n.
inline std::string IdFor(int n) { return absl::StrFormat("00000000-0000-4000-8000-%012d", n); }

inline config::v1::Route BenchRoute(int i, const std::string& id, const std::string& service_id) {
  config::v1::Route r = DefaultRoute();
  r.set_id(id);
  r.set_name(absl::StrCat("r", i));
  r.mutable_paths()->add_values(absl::StrCat("/r", i));
  r.mutable_hosts()->add_values(absl::StrCat("h", i % 100, ".example.com"));
  r.mutable_hosts()->add_values("client.example");
  r.mutable_methods()->add_values("GET");
  r.mutable_methods()->add_values("POST");
  r.set_service_id(service_id);
  return r;
}

}  // namespace portico
