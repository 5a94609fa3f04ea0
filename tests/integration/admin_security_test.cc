// Admin API security through the real portico-cp (docs/tls.md "Admin API security"): the bearer
// token, the TLS listener (self-signed by default, or the operator's certificate), client
// certificates from --admin-client-ca, and the refusal to start off loopback without
// authentication. Clients are curl and raw sockets; certificates come from `portico-cp gen-certs`
// at test time.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Runs a shell command (bounded by `timeout 20`), collecting its output.
CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* p = popen(absl::StrCat("timeout 20 ", command, " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

// curl's answer: the HTTP status it got (0 when none) and its exit code.
struct CurlResult {
  int exit_code = -1;
  int status = 0;
  std::string body;
  std::string output;
};

CurlResult Curl(const std::string& args) {
  CommandResult r = RunCommand(absl::StrCat("curl -sS --max-time 10 -w '\\n%{http_code}' ", args));
  CurlResult out;
  out.exit_code = r.exit_code;
  out.output = r.output;
  const size_t last = r.output.rfind('\n');
  if (last != std::string::npos) {
    out.status = std::atoi(r.output.c_str() + last + 1);
    out.body = r.output.substr(0, last);
  }
  return out;
}

// A portico-cp started with its own certificates, database and ports, stopped by PID.
class CpUnderTest {
 public:
  explicit CpUnderTest(const TempDir& tmp) : tmp_(tmp) {
    certs_ = tmp.File("cluster");
    std::string log;
    certs_ok_ = GenerateCerts(certs_, "dp-1", &log);
    EXPECT_TRUE(certs_ok_) << log;
    admin_port = PickFreePort();
  }

  const std::string& cluster_dir() const { return certs_; }

  // Starts with --admin-listen 127.0.0.1:admin_port unless `args` sets it; waits until the plain
  // listener answers (any status) when `wait` is set.
  bool Start(std::vector<std::string> args, const std::string& name = "cp", bool wait = true) {
    std::vector<std::string> argv{PORTICO_CP_BIN, "--db", tmp_.File(name + ".db"), "--cluster-listen",
                                  absl::StrCat("127.0.0.1:", PickFreePort()), "--cluster-cert", certs_ + "/cp.crt",
                                  "--cluster-key", certs_ + "/cp.key", "--cluster-ca", certs_ + "/ca.crt"};
    bool has_admin_listen = false;
    for (const std::string& a : args) has_admin_listen |= a == "--admin-listen";
    if (!has_admin_listen) {
      argv.push_back("--admin-listen");
      argv.push_back(absl::StrCat("127.0.0.1:", admin_port));
    }
    argv.insert(argv.end(), args.begin(), args.end());
    process = std::make_unique<Process>(name, argv, tmp_.File(name + ".log"));
    if (!wait) return true;
    return WaitFor([&] { return Http(admin_port, "GET", "/status").ok; }, 15s);
  }

  // Waits for the process to exit by itself; the exit code, -1 when it did not exit normally.
  int WaitExit() {
    const int status = process->Stop(0, 15s);  // signal 0: only wait
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string Log() const { return process ? process->Log() : ""; }

  uint16_t admin_port = 0;
  std::unique_ptr<Process> process;

 private:
  const TempDir& tmp_;
  std::string certs_;
  bool certs_ok_ = false;
};

std::string WriteToken(const TempDir& tmp, const std::string& token) {
  const std::string path = tmp.File("admin.token");
  EXPECT_TRUE(WriteFileAtomically(path, token + "\n", 0600).ok());
  return path;
}

std::vector<std::pair<std::string, std::string>> Bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

TEST(AdminSecurityTest, TokenIsRequiredOnLoopbackToo) {
  TempDir tmp;
  CpUnderTest cp(tmp);
  const std::string token = "it-Token-7f3a9c1e5b";
  ASSERT_TRUE(cp.Start({"--admin-token-file", WriteToken(tmp, token), "--log-level", "debug"})) << cp.Log();

  HttpResult missing = Http(cp.admin_port, "GET", "/status");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(ParseJson(missing), json({{"message", "Unauthorized"}})) << missing.body;
  EXPECT_EQ(missing.headers["www-authenticate"], "Bearer");

  HttpResult wrong = Http(cp.admin_port, "GET", "/status", "", "", Bearer("it-Token-7f3a9c1e5c"));
  EXPECT_EQ(wrong.status, 401);
  EXPECT_TRUE(absl::StrContains(wrong.headers["www-authenticate"], "invalid_token")) << wrong.headers["www-authenticate"];
  EXPECT_EQ(Http(cp.admin_port, "GET", "/status", "", "", Bearer(token.substr(1))).status, 401);
  EXPECT_EQ(Http(cp.admin_port, "GET", "/status", "", "", {{"Authorization", "Basic " + token}}).status, 401);
  // A refused write writes nothing.
  EXPECT_EQ(Http(cp.admin_port, "POST", "/services", R"({"name":"nope","url":"http://127.0.0.1:1"})").status, 401);

  EXPECT_EQ(Http(cp.admin_port, "GET", "/status", "", "", Bearer(token)).status, 200);
  HttpResult created = Http(cp.admin_port, "POST", "/services", R"({"name":"svc","url":"http://127.0.0.1:1"})",
                            "application/json", Bearer(token));
  EXPECT_EQ(created.status, 201) << created.body;
  HttpResult listed = Http(cp.admin_port, "GET", "/services", "", "", Bearer(token));
  ASSERT_EQ(listed.status, 200);
  ASSERT_EQ(ParseJson(listed)["data"].size(), 1u) << listed.body;
  EXPECT_EQ(ParseJson(listed)["data"][0]["name"], "svc");

  // A real client.
  CurlResult curl = Curl(absl::StrCat("-H 'Authorization: Bearer ", token, "' http://127.0.0.1:", cp.admin_port,
                                      "/services/svc"));
  EXPECT_EQ(curl.status, 200) << curl.output;
  EXPECT_EQ(Curl(absl::StrCat("http://127.0.0.1:", cp.admin_port, "/services/svc")).status, 401);

  cp.process->Stop(SIGTERM, 10s);
  EXPECT_FALSE(absl::StrContains(cp.Log(), token)) << "the token must never be logged:\n" << cp.Log();
  EXPECT_TRUE(absl::StrContains(cp.Log(), "bearer token required")) << cp.Log();
}

TEST(AdminSecurityTest, EmptyOrMissingTokenFileRefusesToStart) {
  TempDir tmp;
  CpUnderTest cp(tmp);
  const std::string empty = tmp.File("empty.token");
  ASSERT_TRUE(WriteFileAtomically(empty, "\n", 0600).ok());
  ASSERT_TRUE(cp.Start({"--admin-token-file", empty}, "cp-empty", false));
  EXPECT_NE(cp.WaitExit(), 0);
  EXPECT_TRUE(absl::StrContains(cp.Log(), "--admin-token-file")) << cp.Log();
  EXPECT_TRUE(absl::StrContains(cp.Log(), "empty")) << cp.Log();

  ASSERT_TRUE(cp.Start({"--admin-token-file", tmp.File("missing.token")}, "cp-missing", false));
  EXPECT_NE(cp.WaitExit(), 0);
  EXPECT_TRUE(absl::StrContains(cp.Log(), "--admin-token-file")) << cp.Log();
}

TEST(AdminSecurityTest, RefusesAnAdminListenerOffLoopbackWithoutAuthentication) {
  TempDir tmp;
  CpUnderTest cp(tmp);
  ASSERT_TRUE(cp.Start({"--admin-listen", "0.0.0.0:0"}, "cp-open", false));
  EXPECT_NE(cp.WaitExit(), 0) << cp.Log();
  EXPECT_TRUE(absl::StrContains(cp.Log(), "--admin-listen listens on 0.0.0.0")) << cp.Log();
  EXPECT_TRUE(absl::StrContains(cp.Log(), "--admin-token-file")) << cp.Log();

  ASSERT_TRUE(cp.Start({"--admin-ssl-listen", "0.0.0.0:0"}, "cp-open-tls", false));
  EXPECT_NE(cp.WaitExit(), 0) << cp.Log();
  EXPECT_TRUE(absl::StrContains(cp.Log(), "--admin-ssl-listen listens on 0.0.0.0")) << cp.Log();
  EXPECT_TRUE(absl::StrContains(cp.Log(), "--admin-client-ca")) << cp.Log();

  ASSERT_TRUE(cp.Start({"--admin-listen", "[::]:0"}, "cp-open-v6", false));
  EXPECT_NE(cp.WaitExit(), 0) << cp.Log();
  EXPECT_TRUE(absl::StrContains(cp.Log(), "--admin-listen")) << cp.Log();

  // With a token the same listener starts, and the token is required.
  const std::string token = "open-listener-token";
  ASSERT_TRUE(cp.Start({"--admin-listen", absl::StrCat("0.0.0.0:", cp.admin_port), "--admin-token-file",
                        WriteToken(tmp, token)},
                       "cp-token"))
      << cp.Log();
  EXPECT_EQ(Http(cp.admin_port, "GET", "/status").status, 401);
  EXPECT_EQ(Http(cp.admin_port, "GET", "/status", "", "", Bearer(token)).status, 200);
}

TEST(AdminSecurityTest, TlsListenerWithGeneratedCertificateTokenAndTls12Floor) {
  TempDir tmp;
  CpUnderTest cp(tmp);
  const uint16_t tls_port = PickFreePort();
  const std::string token = "tls-listener-token";
  ASSERT_TRUE(cp.Start({"--admin-ssl-listen", absl::StrCat("127.0.0.1:", tls_port), "--admin-token-file",
                        WriteToken(tmp, token)}))
      << cp.Log();
  EXPECT_TRUE(absl::StrContains(cp.Log(), "generated self-signed certificate")) << cp.Log();
  const std::string url = absl::StrCat("https://127.0.0.1:", tls_port, "/status");

  CurlResult ok = Curl(absl::StrCat("-k -H 'Authorization: Bearer ", token, "' ", url));
  EXPECT_EQ(ok.status, 200) << ok.output;
  EXPECT_EQ(ParseJson(HttpResult{true, "", ok.status, {}, ok.body})["database"]["reachable"], true) << ok.body;
  CurlResult no_token = Curl(absl::StrCat("-k ", url));
  EXPECT_EQ(no_token.status, 401) << no_token.output;
  // Keep-alive over TLS: two requests on one connection.
  CurlResult twice = Curl(absl::StrCat("-v -k -H 'Authorization: Bearer ", token, "' ", url, " ", url));
  EXPECT_EQ(twice.exit_code, 0) << twice.output;
  EXPECT_EQ(twice.status, 200) << twice.output;
  EXPECT_TRUE(absl::StrContains(twice.output, "Re-using existing connection")) << twice.output;
  // Not trusted without -k (self-signed), and nothing below TLS 1.2.
  EXPECT_NE(Curl(url).exit_code, 0);
  // (the client allows TLS 1.0/1.1 at security level 0, so the refusal is the server's)
  CurlResult old_tls = Curl(absl::StrCat("-k --tlsv1 --tls-max 1.1 --ciphers 'DEFAULT@SECLEVEL=0' ", url));
  EXPECT_NE(old_tls.exit_code, 0) << old_tls.output;
  EXPECT_EQ(old_tls.status, 0) << old_tls.output;
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(cp.Log(), "unsupported protocol"); }, 5s)) << cp.Log();
  CurlResult tls12 = Curl(absl::StrCat("-k --tls-max 1.2 -H 'Authorization: Bearer ", token, "' ", url));
  EXPECT_EQ(tls12.status, 200) << tls12.output;

  // Plain HTTP on the TLS port: closed without an answer, with a log line; the server goes on.
  HttpResult plain = Http(tls_port, "GET", "/status", "", "", Bearer(token));
  EXPECT_FALSE(plain.ok && plain.status == 200);
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(cp.Log(), "TLS handshake failed: http request"); }, 5s))
      << cp.Log();
  EXPECT_EQ(Curl(absl::StrCat("-k -H 'Authorization: Bearer ", token, "' ", url)).status, 200);
  EXPECT_EQ(Http(cp.admin_port, "GET", "/status", "", "", Bearer(token)).status, 200);
}

TEST(AdminSecurityTest, AnAdminClientCaThatIsTheClusterCaIsWarnedAbout) {
  TempDir tmp;
  CpUnderTest cp(tmp);
  const uint16_t tls_port = PickFreePort();
  // Every DP's cluster certificate would pass as an Admin credential.
  ASSERT_TRUE(cp.Start({"--admin-ssl-listen", absl::StrCat("127.0.0.1:", tls_port), "--admin-client-ca",
                        cp.cluster_dir() + "/ca.crt"}))
      << cp.Log();
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(cp.Log(), "holds a certificate of --cluster-ca"); }, 5s))
      << cp.Log();
}

TEST(AdminSecurityTest, ClientCertificatesFromTheAdminCaAreRequiredOnTheTlsListener) {
  TempDir tmp;
  // The Admin PKI (server certificate with SAN 127.0.0.1, a client certificate) and another CA.
  const std::string admin_pki = tmp.File("admin-pki");
  const std::string other_pki = tmp.File("other-pki");
  std::string log;
  ASSERT_TRUE(GenerateCerts(admin_pki, "operator", &log)) << log;
  ASSERT_TRUE(GenerateCerts(other_pki, "intruder", &log)) << log;
  CpUnderTest cp(tmp);
  const uint16_t tls_port = PickFreePort();
  // Off loopback with client certificates only: allowed for the TLS listener.
  ASSERT_TRUE(cp.Start({"--admin-ssl-listen", absl::StrCat("0.0.0.0:", tls_port), "--admin-ssl-cert",
                        admin_pki + "/cp.crt", "--admin-ssl-cert-key", admin_pki + "/cp.key", "--admin-client-ca",
                        admin_pki + "/ca.crt"}))
      << cp.Log();
  const std::string url = absl::StrCat("https://127.0.0.1:", tls_port, "/status");
  const std::string trust = absl::StrCat("--cacert ", admin_pki, "/ca.crt ");

  CurlResult with_cert =
      Curl(absl::StrCat(trust, "--cert ", admin_pki, "/dp.crt --key ", admin_pki, "/dp.key ", url));
  EXPECT_EQ(with_cert.exit_code, 0) << with_cert.output;
  EXPECT_EQ(with_cert.status, 200) << with_cert.output;
  CurlResult write = Curl(absl::StrCat(trust, "--cert ", admin_pki, "/dp.crt --key ", admin_pki,
                                       "/dp.key -X POST -d name=svc -d url=http://127.0.0.1:1 https://127.0.0.1:",
                                       tls_port, "/services"));
  EXPECT_EQ(write.status, 201) << write.output;

  CurlResult without_cert = Curl(absl::StrCat(trust, url));
  EXPECT_NE(without_cert.exit_code, 0) << without_cert.output;
  EXPECT_EQ(without_cert.status, 0) << without_cert.output;
  CurlResult other_cert =
      Curl(absl::StrCat(trust, "--cert ", other_pki, "/dp.crt --key ", other_pki, "/dp.key ", url));
  EXPECT_NE(other_cert.exit_code, 0) << other_cert.output;
  EXPECT_EQ(other_cert.status, 0) << other_cert.output;
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(cp.Log(), "peer did not return a certificate"); }, 5s))
      << cp.Log();
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(cp.Log(), "certificate verify failed"); }, 5s)) << cp.Log();
  EXPECT_FALSE(absl::StrContains(cp.Log(), "holds a certificate of --cluster-ca")) << cp.Log();  // its own CA

  // openssl s_client sees the Admin CA among the acceptable client CA names.
  CommandResult s_client = RunCommand(absl::StrCat("openssl s_client -connect 127.0.0.1:", tls_port, " -CAfile ",
                                                   admin_pki, "/ca.crt -verify_return_error </dev/null"));
  EXPECT_TRUE(absl::StrContains(s_client.output, "Acceptable client certificate CA names")) << s_client.output;
  EXPECT_TRUE(absl::StrContains(s_client.output, "Portico cluster CA")) << s_client.output;

  // The cleartext listener stays on loopback and open (no token configured).
  EXPECT_EQ(Http(cp.admin_port, "GET", "/services/svc").status, 200);
}

TEST(AdminSecurityTest, ClientCaNeedsTheTlsListenerAndACertNeedsItsKey) {
  TempDir tmp;
  CpUnderTest cp(tmp);
  const std::string pki = tmp.File("pki");
  std::string log;
  ASSERT_TRUE(GenerateCerts(pki, "x", &log)) << log;
  ASSERT_TRUE(cp.Start({"--admin-client-ca", pki + "/ca.crt"}, "cp-ca-only", false));
  EXPECT_NE(cp.WaitExit(), 0);
  EXPECT_TRUE(absl::StrContains(cp.Log(), "--admin-ssl-listen")) << cp.Log();

  ASSERT_TRUE(cp.Start({"--admin-ssl-listen", absl::StrCat("127.0.0.1:", PickFreePort()), "--admin-ssl-cert",
                        pki + "/cp.crt", "--admin-ssl-cert-key", pki + "/dp.key"},
                       "cp-wrong-key", false));
  EXPECT_NE(cp.WaitExit(), 0);
  EXPECT_TRUE(absl::StrContains(cp.Log(), "does not belong")) << cp.Log();
  EXPECT_FALSE(absl::StrContains(cp.Log(), "PRIVATE KEY")) << cp.Log();
}

}  // namespace
}  // namespace portico::testing
