#pragma once
// X.509 certificates and private keys made at test time (nothing checked in): self-signed or
// issued by another test certificate, RSA or ECDSA, with any validity window and CA flag.
#include <cstdint>
#include <string>

#include "common/tls/pem_checks.h"

namespace portico::test_support {

struct TestCertificate {
  std::string cert_pem;  // one certificate
  std::string key_pem;   // its private key, PKCS#8 PEM
};

struct TestCertificateOptions {
  PemKeyType key_type = PemKeyType::kEc;  // kRsa: 2048 bits; kEc: P-256
  std::string common_name = "portico.test";
  int64_t not_before_offset = -3600;        // seconds from now
  int64_t not_after_offset = 30 * 86400;    // seconds from now; negative = already expired
  bool is_ca = false;                       // basicConstraints critical,CA:TRUE
  const TestCertificate* issuer = nullptr;  // null: self-signed
};

// Aborts (test setup failure) when OpenSSL fails.
TestCertificate MakeTestCertificate(const TestCertificateOptions& options = {});

}  // namespace portico::test_support
