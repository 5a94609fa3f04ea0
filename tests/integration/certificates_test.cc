// Certificates, SNIs and CA certificates through the real binaries: written with the Admin API of
// portico-cp, carried by a snapshot to portico-dp, which validates and applies it; refused input
// changes nothing; no private key appears in any answer or log line (both at debug level).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/test_certificates.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using test_support::MakeTestCertificate;
using test_support::TestCertificate;

// 24-character pieces of a PEM key's base64 body.
std::vector<std::string> KeyPieces(const std::string& key_pem) {
  std::vector<std::string> pieces;
  const size_t body = key_pem.find('\n') + 1;
  for (size_t at = body; at + 24 < key_pem.size() - 30; at += 24) pieces.push_back(key_pem.substr(at, 24));
  return pieces;
}

class CertificatesIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp({"--log-level", "debug"})) << cluster_.Logs();
    DataPlaneOptions options;
    options.extra_args = {"--log-level", "debug"};
    options.workers = 1;
    dp_ = &cluster_.StartDp(options);
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }
  void ExpectNoKeyIn(const std::string& text, const std::string& key_pem, const std::string& where) {
    for (const std::string& piece : KeyPieces(key_pem)) {
      ASSERT_EQ(text.find(piece), std::string::npos) << "private key material in " << where;
    }
  }

  Cluster cluster_;
  DataPlane* dp_ = nullptr;
  const TestCertificate rsa_ = MakeTestCertificate({.key_type = PemKeyType::kRsa, .common_name = "api.example.com"});
  const TestCertificate ec_ = MakeTestCertificate({.key_type = PemKeyType::kEc, .common_name = "api.example.com"});
  const TestCertificate ca_ = MakeTestCertificate({.common_name = "Upstream CA", .is_ca = true});
};

TEST_F(CertificatesIntegrationTest, TlsEntitiesReachTheDataPlaneAndNoKeyIsLogged) {
  HttpResult cert = cluster_.Admin("POST", "/certificates",
                                   {{"cert", rsa_.cert_pem},
                                    {"key", rsa_.key_pem},
                                    {"cert_alt", ec_.cert_pem},
                                    {"key_alt", ec_.key_pem},
                                    {"snis", {"api.example.com", "*.example.org"}}});
  ASSERT_EQ(cert.status, 201) << cert.body;
  const std::string cert_id = ParseJson(cert)["id"];
  EXPECT_EQ(ParseJson(cert)["snis"], json({"*.example.org", "api.example.com"}));
  HttpResult ca = cluster_.Admin("POST", "/ca_certificates", {{"cert", ca_.cert_pem}});
  ASSERT_EQ(ca.status, 201) << ca.body;
  const std::string ca_id = ParseJson(ca)["id"];
  HttpResult service = cluster_.Admin("POST", "/services",
                                      {{"name", "secure"},
                                       {"url", "https://127.0.0.1:9443"},
                                       {"client_certificate", {{"id", cert_id}}},
                                       {"ca_certificates", {ca_id}},
                                       {"tls_verify", true}});
  ASSERT_EQ(service.status, 201) << service.body;
  // The DP validates the snapshot (keys matched, SNIs and references checked) and applies it.
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  // Refused writes: a key of another certificate, an expired certificate. Nothing is written.
  const uint64_t version = cluster_.CpVersion();
  HttpResult mismatch = cluster_.Admin("POST", "/certificates", {{"cert", rsa_.cert_pem}, {"key", ec_.key_pem}});
  EXPECT_EQ(mismatch.status, 400) << mismatch.body;
  EXPECT_EQ(ParseJson(mismatch)["fields"]["@entity"], json({"certificate does not match key"}));
  ExpectNoKeyIn(mismatch.body, ec_.key_pem, "the 400 body");
  const TestCertificate expired = MakeTestCertificate({.not_before_offset = -7200, .not_after_offset = -60});
  HttpResult old = cluster_.Admin("POST", "/certificates", {{"cert", expired.cert_pem}, {"key", expired.key_pem}});
  EXPECT_EQ(old.status, 400) << old.body;
  EXPECT_EQ(ParseJson(old)["fields"]["cert"], "certificate expired, \"Not After\" time is in the past");
  EXPECT_EQ(cluster_.CpVersion(), version);

  // In use: the certificate and the CA certificate cannot be deleted; then they can.
  EXPECT_EQ(cluster_.Admin("DELETE", "/certificates/" + cert_id).status, 400);
  EXPECT_EQ(cluster_.Admin("DELETE", "/ca_certificates/" + ca_id).status, 400);
  EXPECT_EQ(cluster_.Admin("DELETE", "/services/secure").status, 204);
  EXPECT_EQ(cluster_.Admin("DELETE", "/certificates/" + cert_id).status, 204);
  EXPECT_EQ(cluster_.Admin("DELETE", "/ca_certificates/" + ca_id).status, 204);
  EXPECT_EQ(ParseJson(cluster_.Admin("GET", "/snis"))["data"].size(), 0u);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  const std::string logs = cluster_.Logs();
  ASSERT_NE(logs.find("debug"), std::string::npos);  // the logs were read, at debug level
  for (const std::string* key : {&rsa_.key_pem, &ec_.key_pem, &expired.key_pem}) ExpectNoKeyIn(logs, *key, "the logs");
}

}  // namespace
}  // namespace portico::testing
