// Upstream TLS through the real binaries: services with protocol https configured through the
// Admin API of portico-cp (ca_certificates, certificates, tls_verify, client_certificate), proxied
// by portico-dp to a real HTTPS upstream (tests/integration/tls_upstream.py: Python's ssl module,
// a certificate from a CA made at test time, optionally requiring a client certificate) that
// reports what its handshakes saw: SNI, client certificate, resumption, connection counts.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <openssl/sha.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/test_certificates.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using test_support::MakeTestCertificate;
using test_support::TestCertificate;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// The Python HTTPS upstream, stopped by PID when destroyed.
class TlsUpstream {
 public:
  TlsUpstream(const TempDir& tmp, const std::string& name, const TestCertificate& leaf, const std::string& client_ca_pem) {
    const std::string cert = tmp.File(name + ".crt"), key = tmp.File(name + ".key");
    WriteFile(cert, leaf.cert_pem);
    WriteFile(key, leaf.key_pem);
    std::vector<std::string> argv = {"/usr/bin/python3", PORTICO_TLS_UPSTREAM_PY, "--cert", cert, "--key", key};
    if (!client_ca_pem.empty()) {
      const std::string ca = tmp.File(name + "-client-ca.crt");
      WriteFile(ca, client_ca_pem);
      argv.insert(argv.end(), {"--client-ca", ca});
    }
    process_ = std::make_unique<Process>(name, argv, tmp.File(name + ".log"));
    WaitFor(
        [&] {
          std::smatch m;
          const std::string log = process_->Log();
          if (!std::regex_search(log, m, std::regex("listening on port (\\d+)"))) return false;
          port_ = static_cast<uint16_t>(std::stoi(m[1]));
          return true;
        },
        10s);
  }
  ~TlsUpstream() { process_->Stop(15, 5s); }
  uint16_t port() const { return port_; }
  std::string Log() const { return process_->Log(); }

 private:
  std::unique_ptr<Process> process_;
  uint16_t port_ = 0;
};

class UpstreamTlsIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  }
  // PORTICO_TEST_SHOW_LOGS=1 prints the CP and DP logs of passing tests too.
  void TearDown() override {
    if (HasFailure() || getenv("PORTICO_TEST_SHOW_LOGS") != nullptr) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }
  DataPlane* StartDp(std::vector<std::string> extra_args = {}) {
    DataPlaneOptions options;
    options.workers = 1;  // one upstream pool: reuse is deterministic
    options.extra_args = std::move(extra_args);
    DataPlane* dp = &cluster_.StartDp(options);
    EXPECT_TRUE(dp->started) << cluster_.Logs();
    return dp;
  }
  std::string AddCaCertificate(const TestCertificate& ca) {
    HttpResult r = cluster_.Admin("POST", "/ca_certificates", {{"cert", ca.cert_pem}});
    EXPECT_EQ(r.status, 201) << r.body;
    return ParseJson(r).value("id", "");
  }
  std::string AddCertificate(const TestCertificate& cert) {
    HttpResult r = cluster_.Admin("POST", "/certificates", {{"cert", cert.cert_pem}, {"key", cert.key_pem}});
    EXPECT_EQ(r.status, 201) << r.body;
    return ParseJson(r).value("id", "");
  }
  // An https service to localhost:`port` with `fields` added, and its route /<name>.
  void AddService(const std::string& name, uint16_t port, json fields = json::object()) {
    fields["name"] = name;
    fields["protocol"] = "https";
    fields["host"] = "localhost";
    fields["port"] = port;
    HttpResult s = cluster_.Admin("POST", "/services", fields);
    ASSERT_EQ(s.status, 201) << s.body;
    HttpResult r = cluster_.Admin("POST", "/services/" + name + "/routes", {{"paths", {"/" + name}}});
    ASSERT_EQ(r.status, 201) << r.body;
  }
  static json Body(const HttpResult& r) { return json::parse(r.body, nullptr, false); }

  Cluster cluster_;
  const TestCertificate ca_ = MakeTestCertificate({.common_name = "Upstream Test CA", .is_ca = true});
  const TestCertificate other_ca_ = MakeTestCertificate({.common_name = "Some Other CA", .is_ca = true});
  const TestCertificate server_ = MakeTestCertificate({.common_name = "localhost", .issuer = &ca_});
  const TestCertificate client_ = MakeTestCertificate({.common_name = "portico-upstream-client", .issuer = &ca_});
};

TEST_F(UpstreamTlsIntegrationTest, VerifiedWithTheRightCaWrongCaIs502AndVerifyOffPasses) {
  TlsUpstream upstream(cluster_.tmp(), "tls-upstream", server_, "");
  ASSERT_GT(upstream.port(), 0) << upstream.Log();
  const std::string right = AddCaCertificate(ca_);
  const std::string wrong = AddCaCertificate(other_ca_);
  AddService("verified", upstream.port(), {{"tls_verify", true}, {"ca_certificates", {right}}});
  AddService("wrongca", upstream.port(), {{"tls_verify", true}, {"ca_certificates", {wrong}}, {"retries", 0}});
  AddService("unverified", upstream.port(), {{"tls_verify", false}, {"ca_certificates", {wrong}}});
  DataPlane* dp = StartDp();
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp)) << cluster_.DpStatus(*dp).dump();

  HttpResult ok = cluster_.Proxy(*dp, "/verified/hello");
  ASSERT_EQ(ok.status, 200) << ok.body << upstream.Log();
  json seen = Body(ok);
  EXPECT_EQ(seen["sni"], "localhost");  // Kong: the upstream Host, without its port
  EXPECT_EQ(seen["host"], absl::StrCat("localhost:", upstream.port()));
  EXPECT_EQ(seen["path"], "/hello");
  EXPECT_EQ(seen["client_cert_cn"], nullptr);

  HttpResult refused = cluster_.Proxy(*dp, "/wrongca/hello");
  EXPECT_EQ(refused.status, 502) << refused.body;
  EXPECT_NE(refused.body.find("An invalid response was received from the upstream server"), std::string::npos)
      << refused.body;
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::string log = cluster_.Logs();
        return log.find("TLS handshake failed") != std::string::npos &&
               log.find("certificate verify failed") != std::string::npos &&
               log.find("unable to get local issuer certificate") != std::string::npos &&
               log.find(absl::StrCat("127.0.0.1:", upstream.port(), " (SNI \"localhost\")")) != std::string::npos;
      },
      5s))
      << cluster_.Logs();

  HttpResult lenient = cluster_.Proxy(*dp, "/unverified/hello");
  EXPECT_EQ(lenient.status, 200) << lenient.body;
  // Other TLS settings, same target and SNI: a connection of its own, never the verified one.
  EXPECT_EQ(Body(lenient)["stats"]["connections"], 2) << lenient.body;
}

TEST_F(UpstreamTlsIntegrationTest, LargeRequestBodiesArriveWhole) {
  TlsUpstream upstream(cluster_.tmp(), "tls-upstream", server_, "");
  ASSERT_GT(upstream.port(), 0) << upstream.Log();
  AddService("uploads", upstream.port(), {{"tls_verify", false}});
  DataPlane* dp = StartDp();
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp)) << cluster_.DpStatus(*dp).dump();
  // 300 KB: many TLS records per write, bodies forwarded straight from the 64 KiB read buffer.
  std::string body;
  for (int i = 0; body.size() < 300000; ++i) absl::StrAppend(&body, i, ",");
  const std::string file = cluster_.tmp().path() + "/upload.bin";
  std::ofstream(file, std::ios::binary) << body;
  FILE* p = popen(absl::StrCat("timeout 20 curl -sS --max-time 15 -H 'Host: client.example' --data-binary @", file,
                               " http://127.0.0.1:", dp->proxy_port, "/uploads/put 2>&1")
                      .c_str(),
                  "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  json seen = json::parse(out, nullptr, false);
  ASSERT_FALSE(seen.is_discarded()) << out << cluster_.Logs();
  EXPECT_EQ(seen["body_length"], body.size());
  unsigned char digest[32];
  SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest);
  std::string hex;
  for (unsigned char c : digest) absl::StrAppend(&hex, absl::Hex(c, absl::kZeroPad2));
  EXPECT_EQ(seen["body_sha256"], hex);
}

TEST_F(UpstreamTlsIntegrationTest, PreserveHostSendsTheClientHostAsSni) {
  TlsUpstream upstream(cluster_.tmp(), "tls-upstream", server_, "");
  ASSERT_GT(upstream.port(), 0) << upstream.Log();
  AddService("plain", upstream.port());
  HttpResult route = cluster_.Admin("POST", "/services/plain/routes",
                                    {{"name", "preserving"}, {"paths", {"/preserved"}}, {"preserve_host", true}});
  ASSERT_EQ(route.status, 201) << route.body;
  DataPlane* dp = StartDp();
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp)) << cluster_.DpStatus(*dp).dump();

  HttpResult preserved = cluster_.Proxy(*dp, "/preserved", "api.client.example:8443");
  ASSERT_EQ(preserved.status, 200) << preserved.body;
  EXPECT_EQ(Body(preserved)["sni"], "api.client.example");
  EXPECT_EQ(Body(preserved)["host"], "api.client.example:8443");
  HttpResult own = cluster_.Proxy(*dp, "/plain", "api.client.example");
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(Body(own)["sni"], "localhost");
  // Different SNIs are different pools: two TLS connections for the two names.
  EXPECT_EQ(Body(own)["stats"]["connections"], 2) << own.body;
  HttpResult ip = cluster_.Proxy(*dp, "/preserved", "127.0.0.1");
  ASSERT_EQ(ip.status, 200) << ip.body;
  EXPECT_EQ(Body(ip)["sni"], nullptr);  // no SNI for an IP literal
}

TEST_F(UpstreamTlsIntegrationTest, NullTlsVerifyFollowsTheDataPlaneFlag) {
  TlsUpstream upstream(cluster_.tmp(), "tls-upstream", server_, "");
  ASSERT_GT(upstream.port(), 0) << upstream.Log();
  AddService("default", upstream.port(), {{"retries", 0}});  // tls_verify null, no CA: the system store
  DataPlane* off = StartDp();
  DataPlane* on = StartDp({"--upstream-tls-verify"});
  ASSERT_TRUE(cluster_.WaitDpSynced(*off)) << cluster_.DpStatus(*off).dump();
  ASSERT_TRUE(cluster_.WaitDpSynced(*on)) << cluster_.DpStatus(*on).dump();
  EXPECT_EQ(cluster_.Proxy(*off, "/default").status, 200);  // Kong: proxy_ssl_verify off
  HttpResult verified = cluster_.Proxy(*on, "/default");
  EXPECT_EQ(verified.status, 502) << verified.body;  // the test CA is not in the system store
}

TEST_F(UpstreamTlsIntegrationTest, ClientCertificateForAnUpstreamThatRequiresOne) {
  TlsUpstream upstream(cluster_.tmp(), "mtls-upstream", server_, ca_.cert_pem);
  ASSERT_GT(upstream.port(), 0) << upstream.Log();
  const std::string cert = AddCertificate(client_);
  AddService("withcert", upstream.port(), {{"client_certificate", {{"id", cert}}}});
  AddService("nocert", upstream.port(), {{"retries", 0}});
  DataPlane* dp = StartDp();
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp)) << cluster_.DpStatus(*dp).dump();

  HttpResult ok = cluster_.Proxy(*dp, "/withcert");
  ASSERT_EQ(ok.status, 200) << ok.body << upstream.Log();
  EXPECT_EQ(Body(ok)["client_cert_cn"], "portico-upstream-client");

  // A service balanced over an upstream entity presents the upstream's client_certificate.
  const TestCertificate upstream_client =
      MakeTestCertificate({.common_name = "upstream-entity-client", .issuer = &ca_});
  const std::string upstream_cert = AddCertificate(upstream_client);
  HttpResult u = cluster_.Admin("POST", "/upstreams", {{"name", "tlsbackends"}, {"client_certificate", {{"id", upstream_cert}}}});
  ASSERT_EQ(u.status, 201) << u.body;
  HttpResult t = cluster_.Admin("POST", "/upstreams/tlsbackends/targets",
                                {{"target", absl::StrCat("localhost:", upstream.port())}});
  ASSERT_EQ(t.status, 201) << t.body;
  HttpResult balanced = cluster_.Admin("POST", "/services", {{"name", "balanced"}, {"protocol", "https"}, {"host", "tlsbackends"}});
  ASSERT_EQ(balanced.status, 201) << balanced.body;
  ASSERT_EQ(cluster_.Admin("POST", "/services/balanced/routes", {{"paths", {"/balanced"}}}).status, 201);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp)) << cluster_.DpStatus(*dp).dump();
  HttpResult via_upstream = cluster_.Proxy(*dp, "/balanced");
  ASSERT_EQ(via_upstream.status, 200) << via_upstream.body << upstream.Log();
  EXPECT_EQ(Body(via_upstream)["client_cert_cn"], "upstream-entity-client");
  EXPECT_EQ(Body(via_upstream)["sni"], "localhost");  // the target's host

  HttpResult refused = cluster_.Proxy(*dp, "/nocert");
  EXPECT_EQ(refused.status, 502) << refused.body;
  EXPECT_NE(upstream.Log().find("handshake failed"), std::string::npos) << upstream.Log();
  // TLS 1.3: the server refuses the certificate after the client's handshake; the DP logs the
  // alert on read, or, when the server's reset overtook its alert, the close right after the
  // handshake.
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::string logs = cluster_.Logs();
        return logs.find("(SNI \"localhost\"): TLS record error: tlsv13 alert certificate required") != std::string::npos ||
               logs.find("(SNI \"localhost\"): the connection closed right after the TLS handshake") != std::string::npos;
      },
      5s))
      << cluster_.Logs();
}

TEST_F(UpstreamTlsIntegrationTest, ConnectionsArePooledAndSessionsResumed) {
  TlsUpstream upstream(cluster_.tmp(), "tls-upstream", server_, "");
  ASSERT_GT(upstream.port(), 0) << upstream.Log();
  AddService("pooled", upstream.port());
  DataPlane* dp = StartDp();
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp)) << cluster_.DpStatus(*dp).dump();

  constexpr int kRequests = 6;
  json last;
  for (int i = 0; i < kRequests; ++i) {
    HttpResult r = cluster_.Proxy(*dp, "/pooled");
    ASSERT_EQ(r.status, 200) << r.body << upstream.Log();
    last = Body(r);
  }
  EXPECT_EQ(last["stats"]["requests"], kRequests);
  EXPECT_EQ(last["stats"]["connections"], 1) << last.dump();  // one TLS connection, reused
  EXPECT_EQ(last["session_reused"], false);

  // The upstream closes after this response; the next request needs a new connection, which
  // resumes the session the first one got.
  HttpResult closing = cluster_.Proxy(*dp, "/pooled?close=1");
  ASSERT_EQ(closing.status, 200) << closing.body;
  HttpResult resumed = cluster_.Proxy(*dp, "/pooled");
  ASSERT_EQ(resumed.status, 200) << resumed.body;
  json seen = Body(resumed);
  EXPECT_EQ(seen["stats"]["connections"], 2) << seen.dump();
  EXPECT_EQ(seen["session_reused"], true) << seen.dump();
  EXPECT_EQ(seen["stats"]["resumed"], 1) << seen.dump();
}

}  // namespace
}  // namespace portico::testing
