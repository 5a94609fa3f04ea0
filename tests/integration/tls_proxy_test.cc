// Downstream TLS through the real binaries: a CP, a DP with its TLS listener, an echo upstream, and
// real clients (openssl s_client, curl) started as processes, each bounded in time and stopped by
// PID. Certificates are generated here, per run.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "data_plane/tls/self_signed.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using dp::CertificateKeyType;
using dp::GenerateSelfSignedCertificate;
using dp::PemCertificate;

struct ToolResult {
  int exit_code = -1;  // -1: killed (timed out)
  std::string output;  // stdout and stderr
};

// Runs `command` with /bin/sh (exec'd, so the process started is the tool itself), `input` on its
// stdin; killed by PID after `timeout`.
ToolResult RunTool(const TempDir& tmp, const std::string& command, const std::string& input = "",
                   std::chrono::milliseconds timeout = 20s) {
  static int counter = 0;
  const std::string name = absl::StrCat("tool-", ++counter);
  const std::string in = tmp.File(name + ".in");
  std::ofstream(in) << input;
  Process p(name, {"/bin/sh", "-c", absl::StrCat("exec ", command, " < ", in)}, tmp.File(name + ".out"));
  const int status = p.Stop(0, timeout);  // signal 0: wait only (SIGKILL after the timeout)
  ToolResult result;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  result.output = p.Log();
  return result;
}

PemCertificate Generate(CertificateKeyType type, const std::string& cn) {
  absl::StatusOr<PemCertificate> pem = GenerateSelfSignedCertificate(type, cn);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.ok() ? *pem : PemCertificate{};
}

class TlsProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    default_cert_ = Generate(CertificateKeyType::kEcdsaP256, "default.test");
    std::ofstream(cluster_.tmp().File("default.crt")) << default_cert_.cert;
    std::ofstream(cluster_.tmp().File("default.key")) << default_cert_.key;
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    DataPlaneOptions options;
    options.extra_args = {"--allow-debug-header", "--client-timeout", "2", "--ssl-cert",
                          cluster_.tmp().File("default.crt"), "--ssl-cert-key", cluster_.tmp().File("default.key")};
    dp_ = &cluster_.StartDp(options);
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
    const std::string url = absl::StrCat("http://127.0.0.1:", upstream_.port());
    ASSERT_NO_FATAL_FAILURE(Create("/services", {{"name", "echo"}, {"url", url}}));
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }

  void Create(const std::string& target, const json& body) {
    HttpResult r = cluster_.Admin("POST", target, body);
    ASSERT_EQ(r.status, 201) << target << " -> " << r.body;
  }

  // openssl s_client to the TLS listener; `args` adds to -connect (e.g. "-servername x").
  // `request`: sent after the handshake (with -ign_eof the tool then waits for the server to close).
  ToolResult SClient(const std::string& args, const std::string& request = "", uint16_t port = 0) {
    return RunTool(cluster_.tmp(),
                   absl::StrCat("openssl s_client -connect 127.0.0.1:", port != 0 ? port : dp_->proxy_ssl_port, " ",
                                args, request.empty() ? "" : " -ign_eof"),
                   request);
  }

  // curl to https://<host>:<tls port><path> (resolved to 127.0.0.1, certificate not verified),
  // over HTTP/1.1 (ALPN would choose h2; HTTP/2 over TLS has tests of its own).
  // The output is the body, then a last line with the status code.
  ToolResult Curl(const std::string& host, const std::string& path, const std::string& extra = "") {
    const uint16_t port = dp_->proxy_ssl_port;
    return RunTool(cluster_.tmp(), absl::StrCat("curl -sk --http1.1 --max-time 10 --resolve ", host, ":", port,
                                                ":127.0.0.1 ", extra, " -w '\\n%{http_code}' https://", host, ":",
                                                port, path));
  }

  static int StatusOf(const ToolResult& r) {
    const size_t newline = r.output.rfind('\n');
    return newline == std::string::npos ? 0 : std::atoi(r.output.c_str() + newline + 1);
  }
  static json BodyOf(const ToolResult& r) {
    const size_t newline = r.output.rfind('\n');
    return json::parse(r.output.substr(0, newline), nullptr, /*allow_exceptions=*/false);
  }

  // The CP accepts certificate entities (another part of issue 13): false (and the test is
  // skipped) on a build without them.
  bool CertificatesSupported() {
    return cluster_.Admin("GET", "/certificates").status == 200;
  }

  bool DpLogContains(const std::string& text) {
    return WaitFor([&] { return absl::StrContains(dp_->process->Log(), text); }, 5s);
  }

  EchoUpstream upstream_;
  Cluster cluster_;
  DataPlane* dp_ = nullptr;
  PemCertificate default_cert_;
};

TEST_F(TlsProxyTest, HttpsRouteEndToEndWithTheDefaultCertificate) {
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "secure"}, {"paths", {"/secure"}},
                                                           {"protocols", {"https"}}, {"strip_path", false}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "both"}, {"paths", {"/both"}}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "echoed"}, {"paths", {"/echoed"}}}));
  ASSERT_NO_FATAL_FAILURE(Create("/routes/echoed/plugins",
                                 {{"name", "request-termination"}, {"config", {{"status_code", 200}, {"echo", true}}}}));
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  // The https-only route is served over TLS, and the upstream is told the request was HTTPS.
  const ToolResult secure = Curl("client.test", "/secure/x?a=1");
  ASSERT_EQ(StatusOf(secure), 200) << secure.output;
  const json echo = BodyOf(secure);
  EXPECT_EQ(echo["target"], "/secure/x?a=1") << secure.output;
  EXPECT_EQ(echo["headers"]["x-forwarded-proto"], "https") << secure.output;
  EXPECT_EQ(echo["headers"]["x-forwarded-port"], std::to_string(dp_->proxy_ssl_port)) << secure.output;
  // ... and still redirected on the cleartext listener.
  HttpResult plain = cluster_.Proxy(*dp_, "/secure/x");
  EXPECT_EQ(plain.status, 426) << plain.body;
  HttpResult both_plain = cluster_.Proxy(*dp_, "/both");
  ASSERT_EQ(both_plain.status, 200) << both_plain.body;
  EXPECT_EQ(ParseJson(both_plain)["headers"]["x-forwarded-proto"], "http");

  // Keep-alive over TLS: two requests on one connection.
  const uint16_t port = dp_->proxy_ssl_port;
  const ToolResult two = RunTool(
      cluster_.tmp(), absl::StrCat("curl -sk -v --http1.1 --max-time 10 https://127.0.0.1:", port, "/both/1 https://127.0.0.1:",
                                   port, "/both/2"));
  EXPECT_EQ(two.exit_code, 0) << two.output;
  EXPECT_TRUE(absl::StrContains(two.output, "Re-using existing connection")) << two.output;
  EXPECT_TRUE(absl::StrContains(two.output, "ALPN: server accepted http/1.1")) << two.output;

  // request-termination's echo tells the scheme.
  const ToolResult echoed = Curl("client.test", "/echoed");
  ASSERT_EQ(StatusOf(echoed), 200) << echoed.output;
  EXPECT_EQ(BodyOf(echoed)["request"]["scheme"], "https") << echoed.output;
  EXPECT_EQ(BodyOf(echoed)["request"]["port"], port) << echoed.output;

  // No SNI, or a name no certificate serves: the default certificate.
  const ToolResult unknown = SClient("-servername unknown.test");
  EXPECT_TRUE(absl::StrContains(unknown.output, "subject=CN = default.test")) << unknown.output;
  const ToolResult no_sni = SClient("-noservername");
  EXPECT_TRUE(absl::StrContains(no_sni.output, "subject=CN = default.test")) << no_sni.output;
  // TLS 1.2 and 1.3 only.
  const ToolResult tls11 = SClient("-tls1_1 -cipher DEFAULT@SECLEVEL=0");
  EXPECT_FALSE(absl::StrContains(tls11.output, "subject=CN")) << tls11.output;
  const ToolResult tls12 = SClient("-tls1_2");
  EXPECT_TRUE(absl::StrContains(tls12.output, "Protocol  : TLSv1.2")) << tls12.output;
}

TEST_F(TlsProxyTest, SessionsResumeWithTickets) {
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "r"}, {"paths", {"/"}}}));
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  const std::string request = "GET / HTTP/1.1\r\nHost: client.test\r\nConnection: close\r\n\r\n";
  for (const std::string version : {"-tls1_2", "-tls1_3"}) {
    SCOPED_TRACE(version);
    const std::string session = cluster_.tmp().File(absl::StrCat("session", version));
    const ToolResult first = SClient(absl::StrCat(version, " -servername client.test -sess_out ", session), request);
    ASSERT_TRUE(absl::StrContains(first.output, "HTTP/1.1 200")) << first.output;
    EXPECT_TRUE(absl::StrContains(first.output, "New, TLSv1.")) << first.output;
    // The DP runs two workers: a few connections land on both, and every one resumes.
    for (int i = 0; i < 4; ++i) {
      const ToolResult again = SClient(absl::StrCat(version, " -servername client.test -sess_in ", session), request);
      EXPECT_TRUE(absl::StrContains(again.output, "Reused, TLSv1.")) << again.output;
      EXPECT_TRUE(absl::StrContains(again.output, "HTTP/1.1 200")) << again.output;
    }
    // openssl s_time keeps the session of a connection the DP closed after its response
    // (HTTP/1.0): the DP ends TLS connections with close_notify, or the session would not be
    // resumable. It prints 'r' per resumed connection, '*' per full handshake.
    const ToolResult timed = RunTool(
        cluster_.tmp(), absl::StrCat("openssl s_time -connect 127.0.0.1:", dp_->proxy_ssl_port, " ", version,
                                     " -reuse -www / -time 1"));
    const size_t start = timed.output.find("starting");
    const std::string marks = start == std::string::npos ? "" : timed.output.substr(start + 8);
    const size_t resumed = static_cast<size_t>(std::count(marks.begin(), marks.end(), 'r'));
    const size_t full = static_cast<size_t>(std::count(marks.begin(), marks.end(), '*'));
    EXPECT_GE(resumed, 10u) << timed.output.substr(0, 1000);
    EXPECT_LE(full, 1u) << timed.output.substr(0, 1000);
  }
}

TEST_F(TlsProxyTest, RouteSnisMatchOnlyThatServerName) {
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "by-sni"}, {"protocols", {"https"}},
                                                           {"snis", {"api.test"}}, {"paths", {"/x"}}}));
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  const ToolResult matched = Curl("api.test", "/x", "-H 'Kong-Debug: 1' -D -");
  EXPECT_EQ(StatusOf(matched), 200) << matched.output;
  EXPECT_TRUE(absl::StrContains(matched.output, "Kong-Route-Name: by-sni")) << matched.output;
  const ToolResult other = Curl("other.test", "/x");
  EXPECT_EQ(StatusOf(other), 404) << other.output;
  // snis are ignored on plain HTTP: the route matches, and (https only) answers 426.
  EXPECT_EQ(cluster_.Proxy(*dp_, "/x").status, 426);
}

TEST_F(TlsProxyTest, CertificatesAreChosenBySniExactThenWildcardThenDefault) {
  if (!CertificatesSupported()) GTEST_SKIP() << "the CP has no /certificates endpoint on this build";
  const PemCertificate exact = Generate(CertificateKeyType::kEcdsaP256, "exact.test");
  const PemCertificate wild = Generate(CertificateKeyType::kEcdsaP256, "wild.test");
  const PemCertificate rsa = Generate(CertificateKeyType::kRsa2048, "dual-rsa.test");
  const PemCertificate ecdsa = Generate(CertificateKeyType::kEcdsaP256, "dual-ecdsa.test");
  ASSERT_NO_FATAL_FAILURE(Create("/certificates", {{"cert", exact.cert}, {"key", exact.key}, {"snis", {"api.shop.test"}}}));
  ASSERT_NO_FATAL_FAILURE(
      Create("/certificates", {{"cert", wild.cert}, {"key", wild.key}, {"snis", {"*.shop.test", "shop.*"}}}));
  ASSERT_NO_FATAL_FAILURE(Create("/certificates", {{"cert", rsa.cert}, {"key", rsa.key}, {"cert_alt", ecdsa.cert},
                                                   {"key_alt", ecdsa.key}, {"snis", {"dual.test"}}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "r"}, {"paths", {"/"}}}));
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  EXPECT_TRUE(absl::StrContains(SClient("-servername api.shop.test").output, "subject=CN = exact.test"));
  EXPECT_TRUE(absl::StrContains(SClient("-servername www.shop.test").output, "subject=CN = wild.test"));
  EXPECT_TRUE(absl::StrContains(SClient("-servername shop.io").output, "subject=CN = wild.test"));
  EXPECT_TRUE(absl::StrContains(SClient("-servername a.b.shop.test").output, "subject=CN = default.test"));
  EXPECT_TRUE(absl::StrContains(SClient("-servername none.test").output, "subject=CN = default.test"));
  // RSA or ECDSA by what the client supports, TLS 1.2 (ECDHE-RSA vs ECDHE-ECDSA) and 1.3.
  const ToolResult rsa12 = SClient("-servername dual.test -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_TRUE(absl::StrContains(rsa12.output, "subject=CN = dual-rsa.test")) << rsa12.output;
  const ToolResult ec12 = SClient("-servername dual.test -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_TRUE(absl::StrContains(ec12.output, "subject=CN = dual-ecdsa.test")) << ec12.output;
  const ToolResult rsa13 = SClient("-servername dual.test -tls1_3 -sigalgs rsa_pss_rsae_sha256");
  EXPECT_TRUE(absl::StrContains(rsa13.output, "subject=CN = dual-rsa.test")) << rsa13.output;
  const ToolResult ec13 = SClient("-servername dual.test -tls1_3 -sigalgs ecdsa_secp256r1_sha256");
  EXPECT_TRUE(absl::StrContains(ec13.output, "subject=CN = dual-ecdsa.test")) << ec13.output;
  // The request goes through with the chosen certificate.
  const ToolResult curl = Curl("api.shop.test", "/");
  EXPECT_EQ(StatusOf(curl), 200) << curl.output;

  // The SNI "*" (Kong's catch-all) takes over from the default certificate, with or without SNI.
  const PemCertificate star = Generate(CertificateKeyType::kEcdsaP256, "star.test");
  ASSERT_NO_FATAL_FAILURE(Create("/certificates", {{"cert", star.cert}, {"key", star.key}, {"snis", {"*"}}}));
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  EXPECT_TRUE(absl::StrContains(SClient("-servername none.test").output, "subject=CN = star.test"));
  EXPECT_TRUE(absl::StrContains(SClient("-noservername").output, "subject=CN = star.test"));
  EXPECT_TRUE(absl::StrContains(SClient("-servername www.shop.test").output, "subject=CN = wild.test"));
}

TEST_F(TlsProxyTest, ProtocolMismatchesAreClosedCleanlyWithALogLine) {
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "r"}, {"paths", {"/"}}}));
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  // Plain HTTP on the TLS port: closed without an answer, at once.
  const auto start = std::chrono::steady_clock::now();
  HttpResult plain = RawHttp(dp_->proxy_ssl_port, "GET / HTTP/1.1\r\nHost: client.test\r\n\r\n", 5s);
  EXPECT_FALSE(plain.ok);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms) << plain.error;
  EXPECT_TRUE(DpLogContains("plain HTTP request on the TLS port from 127.0.0.1; closed"));
  // A TLS handshake on the cleartext port: closed, the client's handshake fails at once.
  const ToolResult tls_on_http = SClient("-servername client.test", "", dp_->proxy_port);
  EXPECT_NE(tls_on_http.exit_code, 0) << tls_on_http.output;
  EXPECT_NE(tls_on_http.exit_code, -1) << "s_client hung: " << tls_on_http.output;
  EXPECT_FALSE(absl::StrContains(tls_on_http.output, "subject=")) << tls_on_http.output;
  EXPECT_TRUE(DpLogContains("TLS handshake on the cleartext HTTP port from 127.0.0.1; closed"));
  // A client that never completes its handshake is dropped after the client timeout (2 s here).
  const auto idle_start = std::chrono::steady_clock::now();
  HttpResult silent = RawHttp(dp_->proxy_ssl_port, "", 8s);
  const auto idle = std::chrono::steady_clock::now() - idle_start;
  EXPECT_FALSE(silent.ok);
  EXPECT_GE(idle, 1500ms);
  EXPECT_LT(idle, 6s);
  // Both listeners still serve.
  EXPECT_EQ(StatusOf(Curl("client.test", "/")), 200);
  EXPECT_EQ(cluster_.Proxy(*dp_, "/").status, 200);
  EXPECT_TRUE(dp_->process->Running());
}

TEST_F(TlsProxyTest, ABadDefaultCertificateStopsTheStartWithoutQuotingTheKey) {
  const PemCertificate other = Generate(CertificateKeyType::kEcdsaP256, "other.test");
  std::ofstream(cluster_.tmp().File("other.key")) << other.key;
  const std::string log = cluster_.tmp().File("bad-dp.log");
  Process dp("bad-dp",
             {PORTICO_DP_BIN, "--control-plane", absl::StrCat("127.0.0.1:", cluster_.cluster_port()), "--cluster-cert",
              cluster_.certs() + "/dp.crt", "--cluster-key", cluster_.certs() + "/dp.key", "--cluster-ca",
              cluster_.certs() + "/ca.crt", "--proxy-listen", absl::StrCat("127.0.0.1:", PickFreePort()),
              "--proxy-ssl-listen", absl::StrCat("127.0.0.1:", PickFreePort()), "--status-listen",
              absl::StrCat("127.0.0.1:", PickFreePort()), "--ssl-cert", cluster_.tmp().File("default.crt"),
              "--ssl-cert-key", cluster_.tmp().File("other.key")},
             log);
  const int status = dp.Stop(0, 15s);  // wait only
  ASSERT_TRUE(WIFEXITED(status)) << dp.Log();
  EXPECT_NE(WEXITSTATUS(status), 0) << dp.Log();
  EXPECT_TRUE(absl::StrContains(dp.Log(), "the key does not match the certificate")) << dp.Log();
  EXPECT_FALSE(absl::StrContains(dp.Log(), "PRIVATE KEY")) << dp.Log();
  EXPECT_FALSE(absl::StrContains(dp.Log(), other.key.substr(40, 30))) << dp.Log();
}

// Heap allocations of the DP per keep-alive request, counted by bench/malloc_count.c (LD_PRELOAD):
// over TLS, once the handshake is done, Portico allocates no more per request than over
// cleartext. Each side is measured as the difference between a long and a short run of requests
// on one connection, so the connection's own cost (the handshake, its buffers) cancels out.
// OpenSSL 3.0's record layer itself allocates per record (a WPACKET sub-packet: 1 per record
// read, 3 per record written; a small request and its response are one record each): those 4 are
// allowed, anything more is ours.
TEST(TlsAllocationTest, KeepAliveRequestsOverTlsAllocateNoMoreThanOverCleartext) {
  EchoUpstream upstream;
  Cluster cluster;
  ASSERT_TRUE(cluster.StartCp()) << cluster.Logs();
  const std::string counts = cluster.tmp().File("malloc.count");
  DataPlaneOptions options;
  options.workers = 1;
  options.env = {{"LD_PRELOAD", PORTICO_MALLOC_COUNT_LIB}, {"MALLOC_COUNT_FILE", counts}};
  DataPlane& dp = cluster.StartDp(options);
  ASSERT_TRUE(dp.started) << cluster.Logs();
  ASSERT_EQ(cluster.Admin("POST", "/services", {{"name", "echo"}, {"url", absl::StrCat("http://127.0.0.1:", upstream.port())}})
                .status,
            201);
  ASSERT_EQ(cluster.Admin("POST", "/services/echo/routes", {{"name", "r"}, {"paths", {"/"}}}).status, 201);
  ASSERT_TRUE(cluster.WaitDpSynced(dp)) << cluster.DpStatus(dp).dump();

  // The DP's allocation count now (a line appended to `counts` on SIGRTMIN+3).
  int lines = 0;
  auto allocations = [&]() -> int64_t {
    dp.process->Signal(SIGRTMIN + 3);
    std::string last;
    const bool written = WaitFor(
        [&] {
          std::ifstream in(counts);
          std::vector<std::string> all;
          for (std::string line; std::getline(in, line);) all.push_back(line);
          if (static_cast<int>(all.size()) <= lines) return false;
          lines = static_cast<int>(all.size());
          last = all.back();
          return true;
        },
        5s);
    EXPECT_TRUE(written);
    const size_t at = last.find("allocs=");
    return at == std::string::npos ? -1 : std::atoll(last.c_str() + at + 7);
  };
  // `count` requests on one connection (curl's URL range reuses the connection).
  std::string http_flag = "--http1.1";
  auto run = [&](const std::string& scheme, uint16_t port, int count) {
    if (http_flag == "h2load") {  // (curl 7.88 does not reuse an h2c prior-knowledge connection)
      const ToolResult r = RunTool(cluster.tmp(), absl::StrCat("h2load -c1 -m1 -n", count, " http://127.0.0.1:", port,
                                                               "/a"));
      EXPECT_EQ(r.exit_code, 0) << r.output;
      EXPECT_TRUE(absl::StrContains(r.output, absl::StrCat(count, " succeeded, 0 failed"))) << r.output;
      return;
    }
    const ToolResult r = RunTool(cluster.tmp(), absl::StrCat("curl -sk ", http_flag, " --max-time 30 -w '\\nSTATUS:%{http_code}\\n' '",
                                                             scheme, "://127.0.0.1:", port, "/a?[1-", count, "]'"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    int ok = 0;
    for (size_t at = r.output.find("STATUS:200"); at != std::string::npos; at = r.output.find("STATUS:200", at + 1)) ++ok;
    EXPECT_EQ(ok, count) << r.output.substr(0, 2000);
  };
  auto per_request = [&](const std::string& scheme, uint16_t port) {
    run(scheme, port, 50);  // warm: pools, buffers, the upstream connection
    const int64_t before_short = allocations();
    run(scheme, port, 50);
    const int64_t after_short = allocations();
    run(scheme, port, 450);
    const int64_t after_long = allocations();
    return static_cast<double>((after_long - after_short) - (after_short - before_short)) / 400.0;
  };
  const double cleartext = per_request("http", dp.proxy_port);
  const double tls = per_request("https", dp.proxy_ssl_port);
  http_flag = "h2load";
  const double h2c = per_request("http", dp.proxy_port);
  std::fprintf(stderr, "DP heap allocations per keep-alive request: cleartext %.2f, TLS %.2f, h2c %.2f\n", cleartext,
               tls, h2c);
  // HTTP/2 allocates per stream (nghttp2's stream and header copies, the request's header
  // strings); this bounds it so that a regression shows.
  EXPECT_LE(h2c, 12.0);
  // The margin absorbs the DP's background work (sync heartbeats) during the runs.
  constexpr double kOpenSslRecordAllocations = 4;
  EXPECT_LE(tls, cleartext + kOpenSslRecordAllocations + 0.5);
  EXPECT_LT(cleartext, 0.5);
}

}  // namespace
}  // namespace portico::testing
