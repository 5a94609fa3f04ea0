#pragma once
// jwt (Kong 3.x): the request carries a JWT in a query argument (`uri_param_names`), a cookie
// (`cookie_names`) or a header (`header_names`, as "Bearer <token>"); the credential (jwt_secrets)
// is the one whose key is the token's `key_claim_name` claim (or header member), found in a hash
// map built once per snapshot. The token's `alg` must be the credential's algorithm and its
// signature must verify: HMAC with the secret (optionally base64) computed from key pads prepared
// per snapshot, no allocation; RS256/384/512 and ES256/384 through OpenSSL EVP with the public key
// parsed once per snapshot. Then `claims_to_verify` (exp, nbf) and `maximum_expiration`. Every
// refusal is 401 with Kong's body and WWW-Authenticate: Bearer [realm="..."] [error="invalid_token"];
// with `anonymous`, a refused request goes on as that consumer. Success sends X-Consumer-* and
// X-Credential-Identifier (the credential's key) upstream.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileJwt(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
