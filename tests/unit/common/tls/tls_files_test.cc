#include "common/tls/tls_files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico {
namespace {

using test_support::TempDir;

std::string Read(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFileToString(path);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : std::string();
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(TlsFilesTest, ReadFileToStringReportsMissingFile) {
  absl::StatusOr<std::string> s = ReadFileToString("/nonexistent/portico/file");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
}

TEST(TlsFilesTest, GeneratesVerifiableClusterMaterial) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/certs";  // does not exist yet
  ASSERT_TRUE(GenerateClusterCertificates(dir, {"cp.example.internal", "10.1.2.3"}, "dp-node-1").ok());

  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir + "/ca.key"), 0600u);
  EXPECT_EQ(ModeOf(dir + "/cp.key"), 0600u);
  EXPECT_EQ(ModeOf(dir + "/dp.key"), 0600u);

  const std::string ca = Read(dir + "/ca.crt");
  const std::string cp = Read(dir + "/cp.crt");
  const std::string dp = Read(dir + "/dp.crt");
  EXPECT_TRUE(VerifyCertificateChain(cp, ca).ok());
  EXPECT_TRUE(VerifyCertificateChain(dp, ca).ok());

  absl::StatusOr<CertificateInfo> cp_info = InspectCertificate(cp);
  ASSERT_TRUE(cp_info.ok()) << cp_info.status();
  EXPECT_EQ(cp_info->node_id, "");
  EXPECT_EQ(cp_info->subject, "CN=portico-cp,O=Portico");
  EXPECT_EQ(cp_info->dns_names, (std::vector<std::string>{"localhost", "cp.example.internal"}));
  EXPECT_EQ(cp_info->ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1", "10.1.2.3"}));

  absl::StatusOr<CertificateInfo> dp_info = InspectCertificate(dp);
  ASSERT_TRUE(dp_info.ok()) << dp_info.status();
  EXPECT_EQ(dp_info->node_id, "dp-node-1");
  EXPECT_EQ(dp_info->uris, (std::vector<std::string>{"spiffe://portico/dp/dp-node-1"}));
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  EXPECT_GT(dp_info->not_after, now + 2 * 365 * 86400);
  EXPECT_LT(dp_info->not_after, now + 4 * 365 * 86400);
  EXPECT_GE(dp_info->serial_hex.size(), 30u);
  EXPECT_NE(dp_info->serial_hex, cp_info->serial_hex);
}

TEST(TlsFilesTest, IssuesMoreDataPlaneCertificatesFromTheSameCa) {
  TempDir tmp;
  ASSERT_TRUE(GenerateClusterCertificates(tmp.path(), {}, "first").ok());
  ASSERT_TRUE(IssueDataPlaneCertificate(tmp.path(), "second", tmp.path() + "/dp2").ok());
  EXPECT_EQ(ModeOf(tmp.path() + "/dp2.key"), 0600u);
  const std::string dp2 = Read(tmp.path() + "/dp2.crt");
  EXPECT_TRUE(VerifyCertificateChain(dp2, Read(tmp.path() + "/ca.crt")).ok());
  absl::StatusOr<CertificateInfo> info = InspectCertificate(dp2);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->node_id, "second");
  EXPECT_FALSE(IssueDataPlaneCertificate(tmp.path(), "bad/id", tmp.path() + "/dp3").ok());
}

TEST(TlsFilesTest, IssuesDataPlaneCertificateWithAChosenValidityWindow) {
  TempDir tmp;
  ASSERT_TRUE(GenerateClusterCertificates(tmp.path(), {}, "first").ok());
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  const std::string ca = Read(tmp.path() + "/ca.crt");

  CertificateValidity expired{now - 2 * 86400, now - 86400};
  ASSERT_TRUE(IssueDataPlaneCertificate(tmp.path(), "old", tmp.path() + "/old", expired).ok());
  const std::string old_pem = Read(tmp.path() + "/old.crt");
  absl::StatusOr<CertificateInfo> info = InspectCertificate(old_pem);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->not_after, now - 86400);
  EXPECT_EQ(info->node_id, "old");
  absl::Status s = VerifyCertificateChain(old_pem, ca);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_NE(s.message().find("expired"), absl::string_view::npos) << s;

  CertificateValidity future{now + 86400, now + 2 * 86400};
  ASSERT_TRUE(IssueDataPlaneCertificate(tmp.path(), "early", tmp.path() + "/early", future).ok());
  EXPECT_FALSE(VerifyCertificateChain(Read(tmp.path() + "/early.crt"), ca).ok());

  CertificateValidity current{now - 60, now + 3600};
  ASSERT_TRUE(IssueDataPlaneCertificate(tmp.path(), "fresh", tmp.path() + "/fresh", current).ok());
  EXPECT_TRUE(VerifyCertificateChain(Read(tmp.path() + "/fresh.crt"), ca).ok());

  CertificateValidity inverted{now, now - 1};
  EXPECT_EQ(IssueDataPlaneCertificate(tmp.path(), "x", tmp.path() + "/x", inverted).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TlsFilesTest, LeafOfAnotherCaFailsVerification) {
  TempDir a, b;
  ASSERT_TRUE(GenerateClusterCertificates(a.path(), {}, "node-a").ok());
  ASSERT_TRUE(GenerateClusterCertificates(b.path(), {}, "node-b").ok());
  absl::Status s = VerifyCertificateChain(Read(b.path() + "/dp.crt"), Read(a.path() + "/ca.crt"));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
}

TEST(TlsFilesTest, RejectsBadInput) {
  TempDir tmp;
  EXPECT_FALSE(GenerateClusterCertificates(tmp.path(), {}, "").ok());
  EXPECT_FALSE(GenerateClusterCertificates(tmp.path(), {}, "has space").ok());
  EXPECT_FALSE(InspectCertificate("not a certificate").ok());
  EXPECT_TRUE(IsValidNodeId("0a23456a-89ab-4def-8123-456789abcdef"));
  EXPECT_FALSE(IsValidNodeId(std::string(129, 'a')));
}

TEST(TlsMaterialTest, LoadsMatchingCertKeyAndCaBundle) {
  TempDir tmp;
  ASSERT_TRUE(GenerateClusterCertificates(tmp.File("a"), {}, "dp-1").ok());
  ASSERT_TRUE(GenerateClusterCertificates(tmp.File("b"), {}, "dp-1").ok());
  const std::string bundle = Read(tmp.File("a/ca.crt")) + Read(tmp.File("b/ca.crt"));
  ASSERT_TRUE(WriteFileAtomically(tmp.File("bundle.crt"), bundle, 0644).ok());
  absl::StatusOr<TlsMaterial> m = LoadTlsMaterial(tmp.File("a/cp.crt"), tmp.File("a/cp.key"), tmp.File("bundle.crt"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->ca_pem, bundle);
  absl::StatusOr<CertificateInfo> info = InspectCertificate(Read(tmp.File("a/cp.crt")));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(m->not_after, info->not_after);
  EXPECT_GT(m->not_after, static_cast<int64_t>(std::time(nullptr)));
  absl::StatusOr<int> count = CountCertificates(bundle, "bundle");
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 2);
}

TEST(TlsMaterialTest, RefusesAKeyOfAnotherCertificateWithoutShowingTheKey) {
  TempDir tmp;
  ASSERT_TRUE(GenerateClusterCertificates(tmp.File("a"), {}, "dp-1").ok());
  absl::StatusOr<TlsMaterial> m = LoadTlsMaterial(tmp.File("a/cp.crt"), tmp.File("a/dp.key"), tmp.File("a/ca.crt"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("does not belong"), absl::string_view::npos) << m.status();
  EXPECT_NE(m.status().message().find(tmp.File("a/dp.key")), absl::string_view::npos) << m.status();
  EXPECT_EQ(m.status().message().find("PRIVATE KEY"), absl::string_view::npos) << m.status();
  const std::string key = Read(tmp.File("a/dp.key"));
  EXPECT_EQ(m.status().message().find(key.substr(40, 20)), absl::string_view::npos);

  // A certificate given as the key, garbage as the CA, a missing file.
  EXPECT_FALSE(LoadTlsMaterial(tmp.File("a/cp.crt"), tmp.File("a/cp.crt"), "").ok());
  ASSERT_TRUE(WriteFileAtomically(tmp.File("junk"), "not pem", 0644).ok());
  absl::StatusOr<TlsMaterial> junk_ca = LoadTlsMaterial(tmp.File("a/cp.crt"), tmp.File("a/cp.key"), tmp.File("junk"));
  ASSERT_FALSE(junk_ca.ok());
  EXPECT_NE(junk_ca.status().message().find(tmp.File("junk")), absl::string_view::npos) << junk_ca.status();
  EXPECT_EQ(LoadTlsMaterial(tmp.File("a/none.crt"), tmp.File("a/cp.key"), "").status().code(),
            absl::StatusCode::kNotFound);
  // A bundle whose second block is damaged.
  std::string damaged = Read(tmp.File("a/ca.crt")) + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  EXPECT_FALSE(CountCertificates(damaged, "damaged").ok());
}

TEST(TlsMaterialTest, SelfSignedServerCertificateMatchesItsKey) {
  absl::StatusOr<TlsMaterial> m = GenerateSelfSignedServerCertificate("portico-admin", {"admin.example", "10.9.8.7"});
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<int64_t> not_after = CheckCertificateAndKey(m->cert_pem, m->key_pem, "cert", "key");
  ASSERT_TRUE(not_after.ok()) << not_after.status();
  EXPECT_EQ(*not_after, m->not_after);
  absl::StatusOr<CertificateInfo> info = InspectCertificate(m->cert_pem);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->subject, "CN=portico-admin,O=Portico");
  EXPECT_EQ(info->dns_names, (std::vector<std::string>{"localhost", "admin.example"}));
  EXPECT_EQ(info->ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1", "10.9.8.7"}));
  EXPECT_EQ(VerifyCertificateChain(m->cert_pem, m->cert_pem), absl::OkStatus());
  const std::string fingerprint = CertificateSha256Fingerprint(m->cert_pem);
  EXPECT_EQ(fingerprint.size(), 32u * 3 - 1);
  EXPECT_EQ(CertificateSha256Fingerprint("nope"), "");
}

}  // namespace
}  // namespace portico
