#pragma once
// Signs JWTs the way a client of the jwt plugin does, with keys made at test time (OpenSSL):
// HMAC secrets, RSA and EC key pairs. For unit and integration tests.
#include <openssl/evp.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace portico::test_support {

struct TestKeyPair {
  std::shared_ptr<EVP_PKEY> key;  // the private key
  std::string public_pem;         // its public half, SubjectPublicKeyInfo PEM
};

TestKeyPair NewRsaKeyPair(int bits = 2048);
TestKeyPair NewEcKeyPair(const char* curve);  // "P-256", "P-384"
TestKeyPair NewEdKeyPair(const char* type);    // "ED25519", "ED448"

std::string Base64Url(absl::string_view bytes);  // unpadded

// header.claims.signature for `alg` ("HS256" ... "EdDSA"): HS* sign with `secret`, RS*, PS*, ES*
// and EdDSA with `key` (ES signatures as JWS wants them, r || s; PS* with a salt of the hash's
// length). `header_json` and `claims_json` go in as
// they are; an empty header_json means {"typ":"JWT","alg":"<alg>"}.
std::string SignJwt(absl::string_view alg, absl::string_view claims_json, absl::string_view secret,
                    EVP_PKEY* key = nullptr, absl::string_view header_json = "");

}  // namespace portico::test_support
