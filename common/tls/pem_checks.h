#pragma once
// Facts about PEM certificates and private keys that the entity validator checks (Kong's
// certificates and ca_certificates rules, common/config/validate.cc): does it parse, which key
// type, when does it expire, is it a CA, its digest, does a key match a certificate. OpenSSL
// types stay in the .cc file. Pure functions, thread-safe.
//
// Error messages come from OpenSSL's reason strings and never contain the input: a private key
// can be passed here without any of it reaching a log or an Admin API answer. Successful parses
// are remembered by the SHA-256 of their text (bounded), so validating the same certificates at
// every snapshot costs a hash each after the first time.
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace portico {

// The public key algorithm of a certificate or a private key.
enum class PemKeyType { kRsa, kEc, kOther };
const char* PemKeyTypeName(PemKeyType type);  // "RSA", "EC", "other"

struct PemCertificateFacts {
  int certificates = 0;           // PEM certificate blocks in the text (leaf first); >= 1
  PemKeyType key_type = PemKeyType::kOther;
  std::string public_key_der;     // the leaf's SubjectPublicKeyInfo, DER
  int64_t not_after = 0;          // the leaf's notAfter, Unix seconds
  bool is_ca = false;             // the leaf has basicConstraints CA:TRUE
  std::string sha256_hex;         // SHA-256 of the leaf's DER, lowercase hex (Kong's cert_digest)
};

struct PemKeyFacts {
  PemKeyType key_type = PemKeyType::kOther;
  std::string public_key_der;     // the public half, SubjectPublicKeyInfo DER
};

// Parses every certificate of `pem` (a leaf, optionally followed by its chain). InvalidArgument
// with OpenSSL's reason ("no start line", "bad base64 decode", ...) when there is none or one
// does not parse.
absl::StatusOr<PemCertificateFacts> InspectPemCertificate(absl::string_view pem);

// Parses one unencrypted PEM private key (PKCS#8, or traditional RSA/EC). InvalidArgument with
// OpenSSL's reason when it does not parse; an encrypted key is refused (no passphrase prompt).
absl::StatusOr<PemKeyFacts> InspectPemPrivateKey(absl::string_view pem);

// True when `key` is the private half of `certificate`'s public key.
inline bool KeyMatchesCertificate(const PemKeyFacts& key, const PemCertificateFacts& certificate) {
  return !key.public_key_der.empty() && key.public_key_der == certificate.public_key_der;
}

}  // namespace portico
