// Cluster certificate rotation on SIGHUP (docs/tls.md "Cluster certificate rotation"): the real
// portico-cp and portico-dp, certificates made by `portico-cp gen-certs` at test time, a real
// upstream, and a client sending requests through the DP while the CA, the CP's and the DP's
// certificates all change.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/tls/tls_files.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr char kExpiryMetric[] = "portico_cluster_certificate_expiry_seconds";

std::string ReadAll(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFileToString(path);
  return s.ok() ? *s : std::string();
}

// Replaces `to` with the content of `from` in one rename (a reader sees the old or the new file).
void Install(const std::string& from, const std::string& to) {
  ASSERT_TRUE(WriteFileAtomically(to, ReadAll(from), absl::EndsWith(to, ".key") ? 0600 : 0644).ok()) << to;
}

int64_t NotAfterOf(const std::string& cert_file) {
  absl::StatusOr<CertificateInfo> info = InspectCertificate(ReadAll(cert_file));
  EXPECT_TRUE(info.ok()) << cert_file << ": " << info.status();
  return info.ok() ? info->not_after : -1;
}

// The value of an unlabelled series in Prometheus text; -1 when absent.
double MetricValue(const std::string& text, const std::string& name) {
  const std::string prefix = name + " ";
  size_t at = 0;
  while ((at = text.find(prefix, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::strtod(text.c_str() + at + prefix.size(), nullptr);
    at += prefix.size();
  }
  return -1;
}

double CpExpiry(Cluster& c) { return MetricValue(c.Admin("GET", "/metrics").body, kExpiryMetric); }
double DpExpiry(const DataPlane& dp) { return MetricValue(Http(dp.status_port, "GET", "/metrics").body, kExpiryMetric); }

bool LogContains(Process* p, const std::string& needle) { return p->Log().find(needle) != std::string::npos; }

// A client sending requests through a DP on new connections until stopped (at most `limit`).
class LoadClient {
 public:
  LoadClient(Cluster* c, const DataPlane* dp, std::chrono::seconds limit)
      : thread_([this, c, dp, limit] {
          const auto deadline = std::chrono::steady_clock::now() + limit;
          while (!stop_ && std::chrono::steady_clock::now() < deadline) {
            HttpResult r = c->Proxy(*dp, "/rot");
            if (r.ok && r.status == 200) {
              ++ok_;
            } else {
              ++failed_;
              std::lock_guard<std::mutex> lock(mu_);
              if (first_failure_.empty()) first_failure_ = absl::StrCat(r.status, " ", r.error, " ", r.body);
            }
            std::this_thread::sleep_for(5ms);
          }
        }) {}
  ~LoadClient() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int ok() const { return ok_; }
  int failed() const { return failed_; }
  std::string first_failure() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_failure_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
  std::mutex mu_;
  std::string first_failure_;
  std::thread thread_;
};

void AddEchoRoute(Cluster& c, uint16_t upstream_port, const std::string& name, const std::string& path) {
  HttpResult s = c.Admin("PUT", "/services/" + name, json{{"url", absl::StrCat("http://127.0.0.1:", upstream_port)}});
  ASSERT_TRUE(s.status == 200 || s.status == 201) << s.status << " " << s.body;
  HttpResult r = c.Admin("POST", "/services/" + name + "/routes", json{{"name", name}, {"paths", {path}}});
  ASSERT_EQ(r.status, 201) << r.body;
}

TEST(CertRotationTest, NewCaAndReissuedCertificatesUnderLoadWithoutAFailedRequest) {
  Cluster c;
  ASSERT_TRUE(c.StartCp()) << c.Logs();
  EchoUpstream upstream;
  AddEchoRoute(c, upstream.port(), "rot", "/rot");
  DataPlane& dp1 = c.StartDp();
  ASSERT_TRUE(dp1.started);
  ASSERT_TRUE(c.WaitDpSynced(dp1)) << c.Logs();
  const std::string certs = c.certs();
  EXPECT_EQ(CpExpiry(c), static_cast<double>(NotAfterOf(certs + "/cp.crt")));
  EXPECT_EQ(DpExpiry(dp1), static_cast<double>(NotAfterOf(certs + "/dp.crt")));
  const json before = c.DpStatus(dp1);
  ASSERT_TRUE(before["control_plane_connected"].get<bool>());

  // Another DP identity from the old CA, to show the CP still accepts its certificates during
  // the change (every DP needs its own node id).
  std::string gen_log;
  ASSERT_TRUE(GenerateCerts(certs, "dp-old", &gen_log)) << gen_log;
  const std::string old_ca = c.tmp().File("old-ca.crt");
  Install(certs + "/ca.crt", old_ca);

  std::this_thread::sleep_for(1100ms);  // the new certificates' notAfter differs from the old ones'
  const std::string next = c.tmp().File("next");
  ASSERT_TRUE(GenerateCerts(next, "dp-it", &gen_log)) << gen_log;
  ASSERT_TRUE(GenerateCerts(next, "dp-new", &gen_log)) << gen_log;
  ASSERT_NE(NotAfterOf(next + "/cp.crt"), NotAfterOf(certs + "/cp.crt"));

  LoadClient load(&c, &dp1, 60s);
  std::this_thread::sleep_for(300ms);
  // The operator's procedure (docs/operations.md): both CAs in the bundle, new certificates in
  // place, SIGHUP to every process.
  ASSERT_TRUE(WriteFileAtomically(certs + "/ca.crt", ReadAll(old_ca) + ReadAll(next + "/ca.crt"), 0644)
                  .ok());
  for (const char* f : {"cp.key", "cp.crt", "dp.key", "dp.crt"}) Install(next + "/" + f, certs + "/" + f);
  c.cp()->Signal(SIGHUP);
  dp1.process->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return LogContains(c.cp(), "cluster certificate reloaded"); }, 5s)) << c.Logs();
  ASSERT_TRUE(WaitFor([&] { return LogContains(dp1.process.get(), "cluster certificate reloaded"); }, 5s))
      << c.Logs();
  // gRPC's file watcher takes the CP's new files within a second.
  std::this_thread::sleep_for(1500ms);

  // A DP that trusts only the NEW CA, with a new certificate: the CP presents its new certificate
  // and trusts the new CA.
  DataPlaneOptions only_new;
  only_new.cert = next + "/dp-new.crt";
  only_new.key = next + "/dp-new.key";
  only_new.ca = next + "/ca.crt";
  only_new.log_name = "dp-new-ca.log";
  DataPlane& dp2 = c.StartDp(only_new);
  ASSERT_TRUE(dp2.started);
  EXPECT_TRUE(c.WaitDpSynced(dp2)) << c.Logs();
  // A DP still holding the old CA's certificate, with both CAs: accepted during the change.
  DataPlaneOptions old_identity;
  old_identity.cert = certs + "/dp-old.crt";
  old_identity.key = certs + "/dp-old.key";
  old_identity.log_name = "dp-old-cert.log";
  DataPlane& dp3 = c.StartDp(old_identity);
  ASSERT_TRUE(dp3.started);
  EXPECT_TRUE(c.WaitDpSynced(dp3)) << c.Logs();

  // Config changes still reach the DP whose stream predates the rotation.
  AddEchoRoute(c, upstream.port(), "after", "/after");
  EXPECT_TRUE(c.WaitDpSynced(dp1)) << c.Logs();
  EXPECT_TRUE(c.WaitDpSynced(dp2)) << c.Logs();
  EXPECT_EQ(c.Proxy(dp1, "/after").status, 200);

  load.Stop();
  EXPECT_EQ(load.failed(), 0) << "first failure: " << load.first_failure();
  EXPECT_GT(load.ok(), 20);

  // The stream established before the rotation is the same one.
  const json after = c.DpStatus(dp1);
  EXPECT_TRUE(after["control_plane_connected"].get<bool>());
  EXPECT_EQ(after["sync"]["connect_attempts"], before["sync"]["connect_attempts"]) << c.Logs();
  EXPECT_EQ(after["sync"]["sessions"], before["sync"]["sessions"]);

  EXPECT_EQ(CpExpiry(c), static_cast<double>(NotAfterOf(next + "/cp.crt")));
  EXPECT_EQ(DpExpiry(dp1), static_cast<double>(NotAfterOf(next + "/dp.crt")));

  // Step 5 of the procedure: only the new CA left. A CP restart makes every DP reconnect: dp1 does
  // so with the certificate it reloaded (its process never restarted); dp3's old-CA certificate is
  // now refused.
  Install(next + "/ca.crt", certs + "/ca.crt");
  dp1.process->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(dp1.process->Log(), "with 1 CA certificate(s)"); }, 5s))
      << c.Logs();
  c.KillCp(SIGTERM);
  ASSERT_TRUE(c.StartCp()) << c.Logs();
  EXPECT_TRUE(WaitFor([&] { return c.DpStatus(dp1)["sync"]["sessions"] > before["sync"]["sessions"]; }, 15s))
      << c.Logs();
  EXPECT_TRUE(WaitFor([&] { return c.DpStatus(dp1)["control_plane_connected"] == true; }, 15s)) << c.Logs();
  EXPECT_TRUE(WaitFor([&] { return c.DpStatus(dp3)["sync"]["connect_attempts"] >
                                   c.DpStatus(dp3)["sync"]["sessions"]; }, 15s));
  EXPECT_FALSE(c.DpStatus(dp3)["control_plane_connected"].get<bool>()) << c.Logs();

  // A restart with the new files connects too.
  dp1.process->Stop(SIGTERM, 10s);
  DataPlaneOptions restarted;
  restarted.log_name = "dp-restarted.log";
  DataPlane& dp4 = c.StartDp(restarted);
  ASSERT_TRUE(dp4.started);
  EXPECT_TRUE(c.WaitDpSynced(dp4)) << c.Logs();
  EXPECT_EQ(c.Proxy(dp4, "/rot").status, 200);
}

TEST(CertRotationTest, AFailedReloadKeepsTheCurrentCertificate) {
  Cluster c;
  ASSERT_TRUE(c.StartCp()) << c.Logs();
  EchoUpstream upstream;
  AddEchoRoute(c, upstream.port(), "svc", "/svc");
  DataPlane& dp1 = c.StartDp();
  ASSERT_TRUE(dp1.started);
  ASSERT_TRUE(c.WaitDpSynced(dp1)) << c.Logs();
  const std::string certs = c.certs();
  const double cp_expiry = CpExpiry(c);
  const double dp_expiry = DpExpiry(dp1);
  ASSERT_GT(cp_expiry, 0);

  // The CP's key replaced by another one (the DP's): the pair does not match.
  const std::string kept = c.tmp().File("cp.key.kept");
  Install(certs + "/cp.key", kept);
  Install(certs + "/dp.key", certs + "/cp.key");
  c.cp()->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return LogContains(c.cp(), "cluster certificate reload failed"); }, 5s)) << c.Logs();
  EXPECT_TRUE(LogContains(c.cp(), "does not belong")) << c.Logs();
  EXPECT_FALSE(LogContains(c.cp(), "PRIVATE KEY")) << c.Logs();

  // A DP certificate for another node id is refused by the DP's reload.
  std::string gen_log;
  ASSERT_TRUE(GenerateCerts(certs, "dp-other", &gen_log)) << gen_log;
  Install(certs + "/dp-other.key", certs + "/dp.key");
  Install(certs + "/dp-other.crt", certs + "/dp.crt");
  dp1.process->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return LogContains(dp1.process.get(), "cluster certificate reload failed"); }, 5s))
      << c.Logs();
  EXPECT_TRUE(LogContains(dp1.process.get(), "dp-other")) << c.Logs();

  std::this_thread::sleep_for(1500ms);  // past the CP's file-watcher refresh
  EXPECT_EQ(CpExpiry(c), cp_expiry);
  EXPECT_EQ(DpExpiry(dp1), dp_expiry);
  // New connections still get the old, working material: a new DP (another node, same CA) syncs.
  DataPlaneOptions fresh;
  fresh.cert = certs + "/dp-other.crt";
  fresh.key = certs + "/dp-other.key";
  fresh.log_name = "dp-fresh.log";
  DataPlane& dp2 = c.StartDp(fresh);
  ASSERT_TRUE(dp2.started);
  EXPECT_TRUE(c.WaitDpSynced(dp2)) << c.Logs();
  EXPECT_TRUE(c.DpStatus(dp1)["control_plane_connected"].get<bool>());

  // Fixing the files and signalling again takes them.
  Install(kept, certs + "/cp.key");
  c.cp()->Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return LogContains(c.cp(), "cluster certificate reloaded"); }, 5s)) << c.Logs();
}

}  // namespace
}  // namespace portico::testing
