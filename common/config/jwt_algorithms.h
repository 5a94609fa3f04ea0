#pragma once
// The JWT signature algorithms of Kong's jwt_secrets, what Portico verifies of them, and the
// parsing of a credential's public key: shared by the validator (a credential the DP could not
// verify with is refused when it is written) and the jwt plugin (data_plane/plugins/jwt), which
// keeps the parsed key for the snapshot's life.
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace portico {

enum class JwtAlgorithmFamily { kHmac, kRsa, kRsaPss, kEcdsa, kEdDsa };

struct JwtAlgorithm {
  const char* name;          // "HS256"
  JwtAlgorithmFamily family;
  int digest_bits;           // 256, 384, 512; 0 for EdDSA (the key's scheme hashes)
  int ec_nid = 0;            // kEcdsa: the curve (NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1)
  int ec_bytes = 0;          // kEcdsa: the size of r and of s in a JWS signature (32, 48, 66)
};

// Kong 3.x's list of jwt_secrets algorithms (also what its token parser accepts as `alg`), and
// the same joined with ", " for "expected one of: ...".
absl::Span<const absl::string_view> KongJwtAlgorithms();
const std::string& KongJwtAlgorithmList();
bool IsKongJwtAlgorithm(absl::string_view name);
// The algorithms Portico verifies (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA
// with Ed25519 or Ed448 keys): all of Kong's list.
const JwtAlgorithm* FindJwtAlgorithm(absl::string_view name);

struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* key) const;
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;

// A PEM public key (SubjectPublicKeyInfo "PUBLIC KEY", or PKCS#1 "RSA PUBLIC KEY") fit for
// `algorithm` (RSA for RS* and PS*, an EC key on the algorithm's curve for ES*, Ed25519 or Ed448
// for EdDSA). Errors are field
// messages: "invalid key" (Kong's, when OpenSSL cannot parse it), or what does not fit.
// Thread-safe; the key may be used for verification by several threads at once.
absl::StatusOr<EvpPkeyPtr> ParseJwtPublicKey(absl::string_view pem, const JwtAlgorithm& algorithm);

}  // namespace portico
