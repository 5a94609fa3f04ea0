// PEM facts the entity validator relies on, on certificates and keys made at test time.
#include "common/tls/pem_checks.h"

#include <cstdio>
#include <ctime>
#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_replace.h"
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/common/test_certificates.h"

namespace portico {
namespace {

using test_support::MakeTestCertificate;
using test_support::TestCertificate;

// The base64 body of a PEM text (what must never be echoed).
std::string PemBody(const std::string& pem) {
  const size_t start = pem.find('\n') + 1;
  return pem.substr(start, 40);
}

// The SHA-256 fingerprint the openssl command prints, as lowercase hex without colons.
std::string OpenSslFingerprint(const std::string& pem) {
  char path[] = "/tmp/portico_pem_checks_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "";
  close(fd);
  std::ofstream(path) << pem;
  std::string out;
  if (FILE* p = popen(absl::StrCat("openssl x509 -noout -fingerprint -sha256 -in ", path).c_str(), "r")) {
    char buf[256];
    while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
    pclose(p);
  }
  std::remove(path);
  const size_t eq = out.find('=');
  if (eq == std::string::npos) return "";
  return absl::AsciiStrToLower(absl::StrReplaceAll(absl::StripAsciiWhitespace(out.substr(eq + 1)), {{":", ""}}));
}

TEST(PemChecksTest, ReadsTheKeyTypeExpiryAndMatchOfRsaAndEcPairs) {
  const TestCertificate rsa = MakeTestCertificate({.key_type = PemKeyType::kRsa, .not_after_offset = 7200});
  const TestCertificate ec = MakeTestCertificate({.key_type = PemKeyType::kEc});
  auto rsa_cert = InspectPemCertificate(rsa.cert_pem);
  auto rsa_key = InspectPemPrivateKey(rsa.key_pem);
  auto ec_cert = InspectPemCertificate(ec.cert_pem);
  auto ec_key = InspectPemPrivateKey(ec.key_pem);
  ASSERT_TRUE(rsa_cert.ok()) << rsa_cert.status();
  ASSERT_TRUE(rsa_key.ok()) << rsa_key.status();
  ASSERT_TRUE(ec_cert.ok()) << ec_cert.status();
  ASSERT_TRUE(ec_key.ok()) << ec_key.status();
  EXPECT_EQ(rsa_cert->key_type, PemKeyType::kRsa);
  EXPECT_EQ(rsa_key->key_type, PemKeyType::kRsa);
  EXPECT_EQ(ec_cert->key_type, PemKeyType::kEc);
  EXPECT_EQ(ec_key->key_type, PemKeyType::kEc);
  EXPECT_EQ(rsa_cert->certificates, 1);
  EXPECT_FALSE(rsa_cert->is_ca);
  EXPECT_NEAR(static_cast<double>(rsa_cert->not_after), static_cast<double>(std::time(nullptr) + 7200), 5);

  EXPECT_TRUE(KeyMatchesCertificate(*rsa_key, *rsa_cert));
  EXPECT_TRUE(KeyMatchesCertificate(*ec_key, *ec_cert));
  EXPECT_FALSE(KeyMatchesCertificate(*ec_key, *rsa_cert));
  const TestCertificate other_ec = MakeTestCertificate({.key_type = PemKeyType::kEc});
  EXPECT_FALSE(KeyMatchesCertificate(*InspectPemPrivateKey(other_ec.key_pem), *ec_cert));
}

TEST(PemChecksTest, SeesTheCaConstraintTheChainAndTheDigest) {
  const TestCertificate ca = MakeTestCertificate({.common_name = "Test CA", .is_ca = true});
  const TestCertificate leaf = MakeTestCertificate({.common_name = "leaf.test", .issuer = &ca});
  auto ca_facts = InspectPemCertificate(ca.cert_pem);
  ASSERT_TRUE(ca_facts.ok()) << ca_facts.status();
  EXPECT_TRUE(ca_facts->is_ca);
  EXPECT_EQ(ca_facts->sha256_hex.size(), 64u);
  EXPECT_EQ(ca_facts->sha256_hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(ca_facts->sha256_hex, OpenSslFingerprint(ca.cert_pem));

  auto chain = InspectPemCertificate(leaf.cert_pem + ca.cert_pem);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->certificates, 2);
  EXPECT_FALSE(chain->is_ca);  // the facts are the leaf's
  EXPECT_NE(chain->sha256_hex, ca_facts->sha256_hex);
  EXPECT_TRUE(KeyMatchesCertificate(*InspectPemPrivateKey(leaf.key_pem), *chain));
}

TEST(PemChecksTest, ExpiredCertificatesParseWithTheirPastNotAfter) {
  const TestCertificate expired = MakeTestCertificate({.not_before_offset = -7200, .not_after_offset = -3600});
  auto facts = InspectPemCertificate(expired.cert_pem);
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_LT(facts->not_after, std::time(nullptr));
}

TEST(PemChecksTest, MalformedInputIsRefusedWithoutEchoingIt) {
  const TestCertificate pair = MakeTestCertificate({.key_type = PemKeyType::kRsa});
  // A key where a certificate is expected, a certificate where a key is expected, damaged base64.
  const std::string damaged_key = absl::StrReplaceAll(pair.key_pem, {{"A", "*"}, {"B", "!"}});
  for (const std::string& input : {std::string("hello"), pair.key_pem, damaged_key, std::string()}) {
    auto cert = InspectPemCertificate(input);
    ASSERT_FALSE(cert.ok());
    EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(cert.status().message().empty());
    if (input.size() > 60) {
      EXPECT_EQ(cert.status().message().find(PemBody(input)), std::string::npos);
    }
  }
  for (const std::string& input : {std::string("hello"), pair.cert_pem, damaged_key}) {
    auto key = InspectPemPrivateKey(input);
    ASSERT_FALSE(key.ok());
    EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_LT(key.status().message().size(), 100u) << key.status();
    if (input.size() > 60) {
      EXPECT_EQ(key.status().message().find(PemBody(input)), std::string::npos);
    }
  }
  // A key without its last line does not parse either.
  EXPECT_FALSE(InspectPemPrivateKey(pair.key_pem.substr(0, pair.key_pem.size() / 2)).ok());
}

TEST(PemChecksTest, EncryptedKeysAreRefusedWithoutAPrompt) {
  const std::string encrypted =
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAhlqVX2\n"
      "-----END ENCRYPTED PRIVATE KEY-----\n";
  auto key = InspectPemPrivateKey(encrypted);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().message(), "encrypted private keys are not supported");
}

}  // namespace
}  // namespace portico
