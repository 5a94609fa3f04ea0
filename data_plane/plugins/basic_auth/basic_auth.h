#pragma once
// basic-auth: reads `Proxy-Authorization`, then `Authorization`, as "Basic base64(user:password)";
// looks the username up (one hash probe) and compares SHA-256(salt || password) with the
// credential's stored digest in constant time. The credential's consumer becomes the request's
// (X-Consumer-* upstream, X-Credential-Identifier = the username, as Kong). Neither header: 401
// "Unauthorized"; a header that does not parse, an unknown username or a wrong password: 401
// "Unauthorized"; both with WWW-Authenticate: Basic realm="<realm>". `anonymous` and
// `hide_credentials` (removes the header the credentials were read from) as key-auth.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileBasicAuth(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
