#pragma once
// The Admin API's entity endpoints, for every kind of the store's registry, derived from the
// kinds' descriptors (common/config/entity_descriptor.h) the way Kong's endpoints are derived from
// its schemas (KONG-REFERENCE.md §2.1):
//
//   /{kinds}                          GET list, POST create
//   /{kinds}/{key}                    GET, PATCH, PUT (upsert), DELETE
//   /{parents}/{p}/{kinds}            GET list, POST create: the foreign key to the parent is
//                                     taken from the URL
//   /{parents}/{p}/{kinds}/{key}      GET, PATCH, PUT, DELETE; 404 when it is another parent's
//   /{kinds}/{key}/{foreign key}      the referenced entity: GET, PATCH, PUT; DELETE, POST -> 405
//
// {key} is an id when it is a UUID, else the kind's endpoint key (name-or-id addressing). A kind
// whose endpoint key is unique per parent (Kong's targets, `endpoint_key_scope`) has no top-level
// endpoints; under its parent, {key} is looked up among the parent's entities, PUT and DELETE of a
// missing one answer 404, and /{parents}/{p}/{kinds}/all (GET) lists them like /{parents}/{p}/{kinds}. Lists
// take size/offset (keyset by id) and tags (a,b = all, a/b = any). Errors are Kong's bodies.
// Private to control_plane/admin; AdminApi serializes writes around it.
#include <optional>
#include <string>
#include <vector>

#include "common/http/message.h"

namespace portico::cp {

class Store;

class EntityEndpoints {
 public:
  explicit EntityEndpoints(Store& store) : store_(store) {}

  // The answer for `segments` (the percent-decoded path), or nullopt when segments[0] is not a
  // kind with top-level endpoints. Sets *committed when a write committed. REQUIRES: not empty;
  // non-GET calls serialized by the caller (PATCH/PUT read, then write).
  std::optional<HttpResponse> Handle(const HttpRequest& request, const std::vector<std::string>& segments,
                                     bool* committed);

 private:
  Store& store_;
};

}  // namespace portico::cp
