#pragma once
// key-auth: finds the key in the first of `key_names` present as a header (any case) or, with
// key_in_query, a query argument; hashes it with the snapshot's salt and looks the digest up
// (one SHA-256 and one hash-map probe; no allocation). The matching credential's consumer becomes
// the request's consumer and is sent upstream as X-Consumer-ID, X-Consumer-Username,
// X-Consumer-Custom-ID and X-Credential-Identifier (replacing what the client sent). No key:
// 401 "No API key found in request"; two keys under one name: 401 "Duplicate API key found"; an
// unknown key: 401 "Unauthorized"; each with WWW-Authenticate: Key realm="<realm or kong>". With
// `anonymous`, a request that fails goes on as that consumer with X-Anonymous-Consumer: true.
// `hide_credentials` removes the key (header or query argument) from the upstream request.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileKeyAuth(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
