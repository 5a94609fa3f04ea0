// WebSocket through the real binaries: a CP, a DP with its TLS listener, and Python `websockets`
// (Debian's python3-websockets, tests/integration/websocket_peer.py) as the upstream echo server
// (ws, and wss for a TLS upstream) and as the client: echo with a 3 MiB message, the close
// handshake both ways, the idle timeout, and wss through the DP's TLS listener. Every process is
// stopped by PID and every client run is bounded.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "data_plane/tls/self_signed.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// The Python WebSocket echo server (wss with a certificate), stopped by PID when destroyed.
class WebSocketServer {
 public:
  WebSocketServer(const TempDir& tmp, const std::string& name, const dp::PemCertificate* certificate = nullptr) {
    std::vector<std::string> argv = {"/usr/bin/python3", PORTICO_WEBSOCKET_PEER_PY, "server"};
    if (certificate != nullptr) {
      const std::string cert = tmp.File(name + ".crt"), key = tmp.File(name + ".key");
      std::ofstream(cert) << certificate->cert;
      std::ofstream(key) << certificate->key;
      argv.insert(argv.end(), {"--cert", cert, "--key", key});
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
  ~WebSocketServer() { process_->Stop(); }
  uint16_t port() const { return port_; }
  std::string Log() const { return process_->Log(); }

 private:
  std::unique_ptr<Process> process_;
  uint16_t port_ = 0;
};

double MetricValue(const std::string& text, const std::string& name) {
  const std::string prefix = name + " ";
  size_t at = 0;
  while ((at = text.find(prefix, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::strtod(text.c_str() + at + prefix.size(), nullptr);
    at += prefix.size();
  }
  return -1;
}

class WebSocketIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<dp::PemCertificate> listener = dp::GenerateSelfSignedCertificate(dp::CertificateKeyType::kEcdsaP256,
                                                                                     "proxy.test");
    ASSERT_TRUE(listener.ok()) << listener.status();
    std::ofstream(cluster_.tmp().File("listener.crt")) << listener->cert;
    std::ofstream(cluster_.tmp().File("listener.key")) << listener->key;
    absl::StatusOr<dp::PemCertificate> upstream_cert =
        dp::GenerateSelfSignedCertificate(dp::CertificateKeyType::kEcdsaP256, "127.0.0.1");
    ASSERT_TRUE(upstream_cert.ok()) << upstream_cert.status();
    ws_ = std::make_unique<WebSocketServer>(cluster_.tmp(), "ws-upstream");
    wss_ = std::make_unique<WebSocketServer>(cluster_.tmp(), "wss-upstream", &*upstream_cert);
    ASSERT_NE(ws_->port(), 0) << ws_->Log();
    ASSERT_NE(wss_->port(), 0) << wss_->Log();

    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    DataPlaneOptions options;
    options.extra_args = {"--ssl-cert", cluster_.tmp().File("listener.crt"), "--ssl-cert-key",
                          cluster_.tmp().File("listener.key")};
    dp_ = &cluster_.StartDp(options);
    ASSERT_TRUE(dp_->started) << cluster_.Logs();

    const std::string ws_url = absl::StrCat("ws://127.0.0.1:", ws_->port());
    Create("/services", {{"name", "ws-echo"}, {"url", ws_url}});
    Create("/services", {{"name", "ws-idle"}, {"url", ws_url}, {"read_timeout", 1000}});
    Create("/services",
           {{"name", "wss-echo"}, {"url", absl::StrCat("wss://127.0.0.1:", wss_->port())}, {"tls_verify", false}});
    Create("/services/ws-echo/routes", {{"name", "echo"}, {"protocols", {"ws", "wss"}}, {"paths", {"/echo"}}});
    Create("/services/ws-echo/routes", {{"name", "secure"}, {"protocols", {"wss"}}, {"paths", {"/secure"}}});
    Create("/services/ws-echo/routes", {{"name", "plain-http"}, {"paths", {"/http-route"}}});
    Create("/services/ws-idle/routes", {{"name", "idle"}, {"protocols", {"ws"}}, {"paths", {"/idle"}}});
    Create("/services/wss-echo/routes", {{"name", "tls-up"}, {"protocols", {"ws", "wss"}}, {"paths", {"/tls-up"}}});
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.Logs();
  }

  void TearDown() override {
    if (HasFailure()) {
      std::fprintf(stderr, "%s\n--- ws upstream\n%s\n--- wss upstream\n%s\n", cluster_.Logs().c_str(),
                   ws_ != nullptr ? ws_->Log().c_str() : "", wss_ != nullptr ? wss_->Log().c_str() : "");
    }
  }

  void Create(const std::string& target, const json& body) {
    HttpResult r = cluster_.Admin("POST", target, body);
    ASSERT_EQ(r.status, 201) << target << " " << body.dump() << " -> " << r.body;
  }

  std::string WsUrl(const std::string& path) const { return absl::StrCat("ws://127.0.0.1:", dp_->proxy_port, path); }
  std::string WssUrl(const std::string& path) const {
    return absl::StrCat("wss://127.0.0.1:", dp_->proxy_ssl_port, path);
  }

  // Runs one scenario of websocket_peer.py; the JSON line it printed (null when none), killed by
  // PID after 40 s.
  json RunClient(const std::string& url, const std::string& scenario) {
    static int counter = 0;
    const std::string name = absl::StrCat("ws-client-", ++counter);
    Process client(name, {"/usr/bin/python3", PORTICO_WEBSOCKET_PEER_PY, "client", url, scenario, "--timeout", "15"},
                   cluster_.tmp().File(name + ".log"));
    client.Stop(0, 40s);  // signal 0: wait only (SIGKILL after the timeout)
    const std::string log = client.Log();
    const size_t line = log.rfind('{');
    json result = line == std::string::npos ? json() : json::parse(log.substr(line), nullptr, false);
    if (!result.is_object()) ADD_FAILURE() << scenario << " " << url << ": no result:\n" << log;
    return result;
  }

  double Metric(const std::string& name) {
    return MetricValue(Http(dp_->status_port, "GET", "/metrics").body, name);
  }

  Cluster cluster_;
  DataPlane* dp_ = nullptr;
  std::unique_ptr<WebSocketServer> ws_, wss_;
};

TEST_F(WebSocketIntegrationTest, EchoLargeMessagesAndCloseHandshakesThroughTheDp) {
  json echo = RunClient(WsUrl("/echo"), "echo");
  EXPECT_EQ(echo["ok"], true) << echo.dump();
  EXPECT_EQ(echo["large_bytes"], 3 * 1024 * 1024) << echo.dump();
  json close = RunClient(WsUrl("/echo"), "close");
  EXPECT_EQ(close["ok"], true) << close.dump();
  EXPECT_EQ(close["client_close"], json({4001, "client bye"})) << close.dump();
  EXPECT_EQ(close["server_close"], json({4002, "server bye"})) << close.dump();
  // An http/https route proxies WebSocket upgrades as well.
  json via_http_route = RunClient(WsUrl("/http-route"), "echo");
  EXPECT_EQ(via_http_route["ok"], true) << via_http_route.dump();
  // 1 (echo) + 2 (close) + 1 tunnels, all closed again.
  EXPECT_TRUE(WaitFor([&] { return Metric("portico_websocket_connections_opened_total") == 4; }, 5s))
      << Http(dp_->status_port, "GET", "/metrics").body;
  EXPECT_TRUE(WaitFor([&] { return Metric("portico_websocket_connections") == 0; }, 5s));
}

TEST_F(WebSocketIntegrationTest, PlainRequestsOnWebSocketRoutesGet426) {
  HttpResult plain = cluster_.Proxy(*dp_, "/echo");
  EXPECT_EQ(plain.status, 426) << plain.body;
  EXPECT_EQ(ParseJson(plain)["message"], "Please use WebSocket protocol") << plain.body;
  // A wss-only route over cleartext: Kong's https answer.
  json refused = RunClient(WsUrl("/secure"), "echo");
  EXPECT_EQ(refused["ok"], false);
  EXPECT_TRUE(absl::StrContains(refused.value("error", ""), "426")) << refused.dump();
}

TEST_F(WebSocketIntegrationTest, IdleTunnelIsClosedAfterTheServiceReadTimeout) {
  json idle = RunClient(WsUrl("/idle"), "idle");
  ASSERT_EQ(idle["ok"], true) << idle.dump();
  const double after = idle["closed_after_s"].get<double>();
  EXPECT_GE(after, 0.9) << idle.dump();  // read_timeout 1000 ms
  EXPECT_LT(after, 5.0) << idle.dump();
  EXPECT_TRUE(WaitFor([&] { return Metric("portico_websocket_connections") == 0; }, 5s));
  // A tunnel on a service with the default read_timeout stays open meanwhile (the echo works).
  json echo = RunClient(WsUrl("/echo"), "echo");
  EXPECT_EQ(echo["ok"], true) << echo.dump();
}

TEST_F(WebSocketIntegrationTest, WssThroughTheTlsListenerAndToATlsUpstream) {
  json over_tls = RunClient(WssUrl("/echo"), "echo");
  EXPECT_EQ(over_tls["ok"], true) << over_tls.dump();
  json close_over_tls = RunClient(WssUrl("/echo"), "close");
  EXPECT_EQ(close_over_tls["ok"], true) << close_over_tls.dump();
  json secure_route = RunClient(WssUrl("/secure"), "echo");
  EXPECT_EQ(secure_route["ok"], true) << secure_route.dump();
  json to_tls_upstream = RunClient(WsUrl("/tls-up"), "echo");
  EXPECT_EQ(to_tls_upstream["ok"], true) << to_tls_upstream.dump();
  json tls_both_sides = RunClient(WssUrl("/tls-up"), "close");
  EXPECT_EQ(tls_both_sides["ok"], true) << tls_both_sides.dump();
}

}  // namespace
}  // namespace portico::testing
