#pragma once
// Kong's /config on the CP (KONG-REFERENCE.md §5.2; docs/declarative.md):
//   GET  /config   200 {"config": "<the whole config as _format_version 3.0 YAML>"}
//   POST /config   replaces the whole config with a declarative document, in one store
//                  transaction (one version bump, one snapshot). The body is a raw YAML or JSON
//                  document, or {"config": "<text>"} (JSON or form). ?check_hash=1: 304 when
//                  the document is exactly what the store holds; ?flatten_errors=1: Kong's
//                  flattened_errors. 201 with the loaded entities by kind and id; 400 code 14
//                  with Kong's nested `fields` when the document is invalid (nothing changes).
// Private to control_plane/admin; AdminApi serializes writes around it.
#include <optional>
#include <string>
#include <vector>

#include "common/http/message.h"

namespace portico::cp {

class Store;

class ConfigEndpoint {
 public:
  explicit ConfigEndpoint(Store& store) : store_(store) {}

  // The answer for /config, or nullopt for other paths. Sets *committed when the config was
  // replaced. REQUIRES: POST serialized with every other Admin API write.
  std::optional<HttpResponse> Handle(const HttpRequest& request, const std::vector<std::string>& segments,
                                     bool* committed);

 private:
  HttpResponse Export();
  HttpResponse Replace(const HttpRequest& request, bool* committed);

  Store& store_;
};

}  // namespace portico::cp
