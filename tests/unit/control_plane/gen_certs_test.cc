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
  const std::string cp_crt = Read(dir + "/cp.crt"), ca_key = Read(dir + "/ca.key");

  GenCertsRequest req = DataPlaneRequest(dir, "edge-7");
  absl::StatusOr<GenCertsResult> r = RunGenCerts(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->new_cluster);
  EXPECT_EQ(r->written, (std::vector<std::string>{"edge-7.key", "edge-7.crt"}));
  EXPECT_EQ(Read(dir + "/ca.crt"), ca);
  EXPECT_EQ(Read(dir + "/cp.key"), cp_key);
  EXPECT_EQ(Read(dir + "/cp.crt"), cp_crt);
  EXPECT_EQ(Read(dir + "/ca.key"), ca_key);
  EXPECT_EQ(Read(dir + "/dp.key"), dp_key);
  struct stat st;
  ASSERT_EQ(stat((dir + "/edge-7.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
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

bool Has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

mode_t Mode(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? (st.st_mode & 0777) : 0;
}

TEST_F(GenCertsOnClusterTest, AnotherControlPlaneGetsItsOwnFilesFromTheKeptCa) {
  const std::string ca = Read(dir + "/ca.crt"), ca_key = Read(dir + "/ca.key");
  const std::string cp = Read(dir + "/cp.crt"), cp_key = Read(dir + "/cp.key"), dp = Read(dir + "/dp.crt");

  // --cp-names alone would overwrite cp.crt: refused, naming the file.
  absl::StatusOr<GenCertsResult> refused = RunGenCerts(ControlPlaneRequest(dir, {"cp-b.internal"}));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(refused.status().message().find(dir + "/cp.crt already exists"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("--cp-id"), std::string::npos) << refused.status();
  EXPECT_EQ(Read(dir + "/cp.crt"), cp);

  GenCertsRequest req = ControlPlaneRequest(dir, {"cp-b.internal", "10.0.0.5"});
  req.cp_id = "cp-b";
  req.cp_id_given = true;
  absl::StatusOr<GenCertsResult> r = RunGenCerts(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->new_cluster);
  EXPECT_EQ(r->written, (std::vector<std::string>{"cp-b.key", "cp-b.crt"}));
  EXPECT_EQ(Mode(dir + "/cp-b.key"), 0600u);
  absl::StatusOr<CertificateInfo> info = InspectCertificate(Read(dir + "/cp-b.crt"));
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(Has(info->dns_names, "cp-b.internal"));
  EXPECT_TRUE(Has(info->dns_names, "localhost"));
  EXPECT_TRUE(Has(info->ip_addresses, "10.0.0.5"));
  EXPECT_TRUE(Has(info->ip_addresses, "127.0.0.1"));
  EXPECT_TRUE(info->node_id.empty());
  EXPECT_TRUE(VerifyCertificateChain(Read(dir + "/cp-b.crt"), ca).ok());
  EXPECT_NE(Read(dir + "/cp-b.key"), cp_key);
  // Nothing else touched, byte for byte.
  EXPECT_EQ(Read(dir + "/ca.crt"), ca);
  EXPECT_EQ(Read(dir + "/ca.key"), ca_key);
  EXPECT_EQ(Read(dir + "/cp.crt"), cp);
  EXPECT_EQ(Read(dir + "/cp.key"), cp_key);
  EXPECT_EQ(Read(dir + "/dp.crt"), dp);

  // The same CP name again: refused; with --force its two files are replaced, never the CA.
  const std::string cp_b_key = Read(dir + "/cp-b.key");
  EXPECT_EQ(RunGenCerts(req).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Read(dir + "/cp-b.key"), cp_b_key);
  req.force = true;
  ASSERT_TRUE(RunGenCerts(req).ok());
  EXPECT_NE(Read(dir + "/cp-b.key"), cp_b_key);
  EXPECT_EQ(Read(dir + "/ca.crt"), ca);
  EXPECT_EQ(Read(dir + "/ca.key"), ca_key);

  // A key without its certificate is certified again, not replaced.
  ASSERT_EQ(unlink((dir + "/cp.crt").c_str()), 0);
  absl::StatusOr<GenCertsResult> rekeyed = RunGenCerts(ControlPlaneRequest(dir, {"cp.internal"}));
  ASSERT_TRUE(rekeyed.ok()) << rekeyed.status();
  EXPECT_EQ(rekeyed->written, std::vector<std::string>{"cp.crt"});
  EXPECT_EQ(Read(dir + "/cp.key"), cp_key);
  absl::StatusOr<CertificateInfo> again = InspectCertificate(Read(dir + "/cp.crt"));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(Has(again->dns_names, "cp.internal"));

  GenCertsRequest bad = ControlPlaneRequest(dir, {""});
  EXPECT_EQ(RunGenCerts(bad).status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* name : {"ca", "a/b", ""}) {
    GenCertsRequest bad_id = ControlPlaneRequest(dir, {"x"});
    bad_id.cp_id = name;
    bad_id.cp_id_given = true;
    bad_id.force = true;
    EXPECT_EQ(RunGenCerts(bad_id).status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
  GenCertsRequest same = DataPlaneRequest(dir, "edge-1");
  same.cp_id = "edge-1";
  same.cp_id_given = true;
  EXPECT_EQ(RunGenCerts(same).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Read(dir + "/ca.crt"), ca);
  EXPECT_EQ(Read(dir + "/ca.key"), ca_key);
}

TEST(GenCertsTest, ADataPlaneFromAFolderWithOnlyTheCaAlsoGetsTheMissingCpCertificate) {
  TempDir tmp;
  const std::string full = tmp.path() + "/full", dir = tmp.path() + "/ca-only";
  ASSERT_TRUE(RunGenCerts(NewClusterRequest(full)).ok());
  ASSERT_TRUE(EnsureDirectories(dir, 0700).ok());
  ASSERT_TRUE(WriteFileDurably(dir + "/ca.crt", Read(full + "/ca.crt"), 0644).ok());
  ASSERT_TRUE(WriteFileDurably(dir + "/ca.key", Read(full + "/ca.key"), 0600).ok());
  absl::StatusOr<GenCertsResult> r = RunGenCerts(DataPlaneRequest(dir, "edge-1"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->written, (std::vector<std::string>{"edge-1.key", "edge-1.crt", "cp.key", "cp.crt"}));
  EXPECT_TRUE(VerifyCertificateChain(Read(dir + "/cp.crt"), Read(full + "/ca.crt")).ok());
  EXPECT_TRUE(VerifyCertificateChain(Read(dir + "/edge-1.crt"), Read(full + "/ca.crt")).ok());
  EXPECT_EQ(Mode(dir + "/cp.key"), 0600u);
  EXPECT_EQ(Mode(dir + "/edge-1.key"), 0600u);
  EXPECT_EQ(Read(dir + "/ca.key"), Read(full + "/ca.key"));
  // Once there, the next DP leaves it alone.
  const std::string cp = Read(dir + "/cp.crt");
  ASSERT_TRUE(RunGenCerts(DataPlaneRequest(dir, "edge-2")).ok());
  EXPECT_EQ(Read(dir + "/cp.crt"), cp);
}

// A new cluster writes dp.crt/dp.key and ca.crt/ca.key: a --cp-id naming either is refused and
// nothing is written.
TEST(GenCertsTest, ANewClustersCpIdCannotNameItsDpOrCaFiles) {
  TempDir tmp;
  for (const char* name : {"dp", "ca"}) {
    for (bool force : {false, true}) {
      const std::string dir = tmp.path() + "/certs-" + name + (force ? "-force" : "");
      GenCertsRequest req = NewClusterRequest(dir);
      req.cp_id = name;
      req.cp_id_given = true;
      req.force = force;
      absl::StatusOr<GenCertsResult> r = RunGenCerts(req);
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << name << " " << r.status();
      for (const char* file : {"ca.crt", "ca.key", "dp.crt", "dp.key", "cp.crt", "cp.key"}) {
        EXPECT_FALSE(PathExists(dir + "/" + file)) << name << ": " << file;
      }
    }
  }
}

TEST(GenCertsTest, ANewClusterNamesItsCpFilesAfterCpId) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/certs";
  GenCertsRequest req = NewClusterRequest(dir);
  req.cp_id = "cp-a";
  req.cp_id_given = true;
  absl::StatusOr<GenCertsResult> r = RunGenCerts(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->new_cluster);
  EXPECT_TRUE(PathExists(dir + "/cp-a.crt"));
  EXPECT_TRUE(PathExists(dir + "/cp-a.key"));
  EXPECT_FALSE(PathExists(dir + "/cp.crt"));
  EXPECT_EQ(Mode(dir + "/cp-a.key"), 0600u);
  EXPECT_TRUE(VerifyCertificateChain(Read(dir + "/cp-a.crt"), Read(dir + "/ca.crt")).ok());
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
