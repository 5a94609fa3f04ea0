#pragma once
// request-transformer (Kong 3.x): changes the request before it goes upstream, in Kong's order:
// replace.uri (the upstream path), http_method, then the headers (remove, rename, replace, add,
// append) and the query (the same five), all on the request as earlier plugins left it (key-auth's
// hidden key, correlation-id's header). Headers are case-insensitive; `replace` of Host sets the
// upstream Host. The query, when a querystring operation is configured, is re-encoded as Kong's
// set_query does: arguments decoded, changed, percent-encoded (all but unreserved characters) and
// sorted. Headers the proxy writes itself (Content-Length, Transfer-Encoding, hop-by-hop,
// X-Forwarded-*, X-Real-IP) are left alone. Body operations and `$(...)` templates are refused by
// the schema (the body is streamed upstream after the head). A client's HEAD stays HEAD (its
// response has no body). No allocation on the request path once warm.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRequestTransformer(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
