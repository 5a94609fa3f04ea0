#pragma once
// Self-signed server certificates made in memory: the proxy's default certificate when no
// --ssl-cert is given (as Kong generates one at start), and the certificates tests serve.
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace portico::dp {

enum class CertificateKeyType { kEcdsaP256, kRsa2048 };

struct PemCertificate {
  std::string cert;  // PEM certificate
  std::string key;   // PEM private key (PKCS#8); never log it
};

// A self-signed certificate with subject CN=`common_name`, the DNS SANs `dns_names` (none: the
// common name alone), SHA-256 signature, a random 128-bit serial, valid from one hour ago for
// `days` days.
absl::StatusOr<PemCertificate> GenerateSelfSignedCertificate(CertificateKeyType key_type,
                                                             absl::string_view common_name,
                                                             const std::vector<std::string>& dns_names = {},
                                                             int days = 3650);

}  // namespace portico::dp
