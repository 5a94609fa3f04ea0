#include "control_plane/gen_certs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "common/base/file.h"
#include "common/tls/tls_files.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico::cp {
namespace {

using test_support::TempDir;

std::string Read(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFileToString(path);
  return s.ok() ? *s : std::string("<missing>");
}

GenCertsRequest NewClusterRequest(const std::string& dir) {
  GenCertsRequest r;
  r.dir = dir;
  return r;
}

GenCertsRequest DataPlaneRequest(const std::string& dir, const std::string& id) {
  GenCertsRequest r = NewClusterRequest(dir);
  r.dp_id = id;
  r.dp_id_given = true;
  return r;
}

GenCertsRequest ControlPlaneRequest(const std::string& dir, std::vector<std::string> names) {
  GenCertsRequest r = NewClusterRequest(dir);
  r.cp_names = std::move(names);
  r.cp_names_given = true;
  return r;
}

// A folder that already holds a cluster made by gen-certs.
class GenCertsOnClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(RunGenCerts(NewClusterRequest(dir)).ok()); }
  TempDir tmp;
  const std::string dir = tmp.path() + "/certs";
};

TEST(GenCertsTest, EmptyFolderGetsANewClusterInMissingParents) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/etc/portico/certs";
  absl::StatusOr<GenCertsResult> r = RunGenCerts(NewClusterRequest(dir));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->new_cluster);
  for (const char* f : {"ca.crt", "ca.key", "cp.crt", "cp.key", "dp.crt", "dp.key"}) {
    EXPECT_TRUE(PathExists(dir + "/" + f)) << f;
  }
  absl::StatusOr<CertificateInfo> dp = InspectCertificate(Read(dir + "/dp.crt"));
  ASSERT_TRUE(dp.ok());
  EXPECT_EQ(dp->node_id, "dp-1");
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(GenCertsOnClusterTest, ExistingCaIsNeverReplacedWithoutForce) {
  const std::string ca = Read(dir + "/ca.crt"), ca_key = Read(dir + "/ca.key");
  const std::string cp = Read(dir + "/cp.crt"), dp = Read(dir + "/dp.crt");

  absl::StatusOr<GenCertsResult> again = RunGenCerts(NewClusterRequest(dir));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Read(dir + "/ca.crt"), ca);
  EXPECT_EQ(Read(dir + "/cp.crt"), cp);
  EXPECT_EQ(Read(dir + "/dp.crt"), dp);

  GenCertsRequest force = NewClusterRequest(dir);
  force.force = true;
  absl::StatusOr<GenCertsResult> replaced = RunGenCerts(force);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_TRUE(replaced->new_cluster);
  EXPECT_NE(Read(dir + "/ca.crt"), ca);
  EXPECT_NE(Read(dir + "/ca.key"), ca_key);
}

TEST_F(GenCertsOnClusterTest, DataPlaneIdIssuesOnlyThatCertificateFromTheKeptCa) {
  const std::string ca = Read(dir + "/ca.crt"), cp_key = Read(dir + "/cp.key"), dp_key = Read(dir + "/dp.key");

  GenCertsRequest req = DataPlaneRequest(dir, "edge-7");
  absl::StatusOr<GenCertsResult> r = RunGenCerts(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->new_cluster);
  EXPECT_EQ(r->written, (std::vector<std::string>{"edge-7.key", "edge-7.crt"}));
  EXPECT_EQ(Read(dir + "/ca.crt"), ca);
  EXPECT_EQ(Read(dir + "/cp.key"), cp_key);
  EXPECT_EQ(Read(dir + "/dp.key"), dp_key);
  absl::StatusOr<CertificateInfo> info = InspectCertificate(Read(dir + "/edge-7.crt"));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->node_id, "edge-7");
  EXPECT_TRUE(VerifyCertificateChain(Read(dir + "/edge-7.crt"), ca).ok());

  // Same id again: refused and untouched; with --force: replaced.
  const std::string edge_key = Read(dir + "/edge-7.key");
  absl::StatusOr<GenCertsResult> twice = RunGenCerts(req);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("edge-7.crt already exists"), std::string::npos) << twice.status();
  EXPECT_EQ(Read(dir + "/edge-7.key"), edge_key);
  req.force = true;
  ASSERT_TRUE(RunGenCerts(req).ok());
  EXPECT_NE(Read(dir + "/edge-7.key"), edge_key);
  EXPECT_EQ(Read(dir + "/ca.crt"), ca) << "--force with --dp-id never replaces the CA";

  for (const char* reserved : {"ca", "cp"}) {
    GenCertsRequest bad = NewClusterRequest(dir);
    bad.dp_id = reserved;
    bad.dp_id_given = true;
    bad.force = true;
    EXPECT_EQ(RunGenCerts(bad).status().code(), absl::StatusCode::kInvalidArgument) << reserved;
  }
  EXPECT_EQ(Read(dir + "/ca.crt"), ca);
  GenCertsRequest invalid = DataPlaneRequest(dir, "a/b");
  EXPECT_EQ(RunGenCerts(invalid).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(GenCertsOnClusterTest, ControlPlaneNamesReissueTheCertificateForTheKeptKey) {
  const std::string ca = Read(dir + "/ca.crt"), cp_key = Read(dir + "/cp.key"), cp = Read(dir + "/cp.crt");

  GenCertsRequest req = ControlPlaneRequest(dir, {"cp.internal", "10.0.0.5"});
  absl::StatusOr<GenCertsResult> r = RunGenCerts(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->written, std::vector<std::string>{"cp.crt"});
  EXPECT_EQ(Read(dir + "/cp.key"), cp_key);
  EXPECT_EQ(Read(dir + "/ca.crt"), ca);
  ASSERT_NE(Read(dir + "/cp.crt"), cp);
  absl::StatusOr<CertificateInfo> info = InspectCertificate(Read(dir + "/cp.crt"));
  ASSERT_TRUE(info.ok());
  EXPECT_NE(std::find(info->dns_names.begin(), info->dns_names.end(), "cp.internal"), info->dns_names.end());
  EXPECT_NE(std::find(info->ip_addresses.begin(), info->ip_addresses.end(), "10.0.0.5"), info->ip_addresses.end());
  EXPECT_TRUE(VerifyCertificateChain(Read(dir + "/cp.crt"), ca).ok());

  req.force = true;  // --force also replaces the CP key
  ASSERT_TRUE(RunGenCerts(req).ok());
  EXPECT_NE(Read(dir + "/cp.key"), cp_key);

  GenCertsRequest bad = ControlPlaneRequest(dir, {""});
  const std::string cp_now = Read(dir + "/cp.crt");
  EXPECT_EQ(RunGenCerts(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Read(dir + "/cp.crt"), cp_now);
}

TEST_F(GenCertsOnClusterTest, HalfACaOrStrayKeysAreReportedAndLeftAlone) {
  ASSERT_EQ(unlink((dir + "/ca.key").c_str()), 0);
  GenCertsRequest req = DataPlaneRequest(dir, "dp-9");
  absl::StatusOr<GenCertsResult> r = RunGenCerts(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("ca.crt but no ca.key"), std::string::npos) << r.status();
  EXPECT_FALSE(PathExists(dir + "/dp-9.crt"));

  // No CA at all, but a key from something else: not overwritten without --force.
  TempDir other;
  const std::string stray = other.path() + "/certs";
  ASSERT_TRUE(EnsureDirectories(stray, 0700).ok());
  ASSERT_TRUE(WriteFileDurably(stray + "/cp.key", "keep me", 0600).ok());
  absl::StatusOr<GenCertsResult> refused = RunGenCerts(NewClusterRequest(stray));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(Read(stray + "/cp.key"), "keep me");
  EXPECT_FALSE(PathExists(stray + "/ca.crt"));
}

TEST(GenCertsTest, CaKeyThatDoesNotMatchTheCaIsRefused) {
  TempDir tmp;
  const std::string a = tmp.path() + "/a", b = tmp.path() + "/b";
  ASSERT_TRUE(RunGenCerts(NewClusterRequest(a)).ok());
  ASSERT_TRUE(RunGenCerts(NewClusterRequest(b)).ok());
  ASSERT_TRUE(WriteFileDurably(a + "/ca.key", Read(b + "/ca.key"), 0600).ok());
  GenCertsRequest req = DataPlaneRequest(a, "dp-3");
  absl::StatusOr<GenCertsResult> r = RunGenCerts(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("ca.key does not belong to"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace portico::cp
