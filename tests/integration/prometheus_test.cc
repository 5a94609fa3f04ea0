// The prometheus plugin end to end: enabled through the real CP's Admin API, a known request mix
// through the real DP to real upstreams, then the DP's GET /metrics checked series by series
// (Kong's names and labels, counts, bytes, histogram counts, target health, config hash) and by
// promtool.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// An upstream on 127.0.0.1 that answers every request with 500 and closes.
class FailingUpstream {
 public:
  FailingUpstream() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (!stopping_) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        std::string in;
        char buf[4096];
        while (!absl::StrContains(in, "\r\n\r\n")) {
          const ssize_t n = read(c, buf, sizeof(buf));
          if (n <= 0) break;
          in.append(buf, static_cast<size_t>(n));
        }
        const std::string out = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops!";
        if (write(c, out.data(), out.size()) < 0) {
        }
        close(c);
      }
    });
  }
  ~FailingUpstream() {
    stopping_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// Sends `request` on a new connection to 127.0.0.1:port and reads until the server closes (the
// request says Connection: close). Returns every byte received.
std::string Exchange(uint16_t port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string received;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) received.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return received;
}

// The value of the sample `series` (name and labels exactly as rendered); -1 when absent.
double Sample(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double v = -1;
      if (!absl::SimpleAtod(line.substr(series.size() + 1), &v)) return -2;
      return v;
    }
  }
  return -1;
}

// Runs promtool check metrics on `text`: its exit code and output.
int Promtool(const std::string& dir, const std::string& text, std::string* output) {
  const std::string file = dir + "/metrics.txt";
  std::ofstream(file) << text;
  FILE* p = popen(("promtool check metrics < " + file + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[512];
  while (fgets(buf, sizeof(buf), p) != nullptr) *output += buf;
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class PrometheusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    dp_ = &cluster_.StartDp();
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
    ASSERT_EQ(cluster_.Admin("POST", "/upstreams", {{"name", "pool"}}).status, 201);
    target_ = absl::StrCat("127.0.0.1:", upstream_.port());
    ASSERT_EQ(cluster_.Admin("POST", "/upstreams/pool/targets", {{"target", target_}}).status, 201);
    ASSERT_EQ(cluster_.Admin("POST", "/services", {{"name", "s1"}, {"host", "pool"}}).status, 201);
    ASSERT_EQ(cluster_.Admin("POST", "/services",
                             {{"name", "broken"}, {"url", absl::StrCat("http://127.0.0.1:", failing_.port())}})
                  .status,
              201);
    for (const auto& [route, service] : {std::pair{"a", "s1"}, {"b", "s1"}, {"e", "broken"}}) {
      HttpResult r = cluster_.Admin("POST", absl::StrCat("/services/", service, "/routes"),
                                    {{"name", route}, {"paths", {absl::StrCat("/", route)}}});
      ASSERT_EQ(r.status, 201) << r.body;
    }
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }
  std::string Metrics() {
    HttpResult r = Http(dp_->status_port, "GET", "/metrics");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    return r.body;
  }

  EchoUpstream upstream_;
  FailingUpstream failing_;
  Cluster cluster_;
  DataPlane* dp_ = nullptr;
  std::string target_;
};

TEST_F(PrometheusTest, AKnownRequestMixGivesKongsSeriesAndPromtoolAcceptsThem) {
  // Global: every family; route b: an instance of its own with Kong's defaults (nothing per request).
  ASSERT_EQ(cluster_.Admin("POST", "/plugins",
                           {{"name", "prometheus"},
                            {"config",
                             {{"status_code_metrics", true}, {"latency_metrics", true}, {"bandwidth_metrics", true},
                              {"upstream_health_metrics", true}, {"per_consumer", true}}}})
                .status,
            201);
  ASSERT_EQ(cluster_.Admin("POST", "/routes/b/plugins", {{"name", "prometheus"}}).status, 201);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  uint64_t sent_a = 0, received_a = 0;
  for (int i = 0; i < 5; ++i) {
    const std::string request = "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const std::string response = Exchange(dp_->proxy_port, request);
    ASSERT_TRUE(absl::StartsWith(response, "HTTP/1.1 200 ")) << response;
    sent_a += request.size();
    received_a += response.size();
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(cluster_.Proxy(*dp_, "/nothing").status, 404);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(cluster_.Proxy(*dp_, "/e").status, 500);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(cluster_.Proxy(*dp_, "/b").status, 200);

  // The log phase runs once the response went out: the client may read it first.
  const std::string tail = ",workspace=\"default\",consumer=\"\"}";
  const std::string a_200 = "kong_http_requests_total{service=\"s1\",route=\"a\",code=\"200\",source=\"service\"" + tail;
  const std::string e_500 = "kong_http_requests_total{service=\"broken\",route=\"e\",code=\"500\",source=\"service\"" + tail;
  std::string text;
  WaitFor([&] {
    text = Metrics();
    return Sample(text, a_200) >= 5 && Sample(text, e_500) >= 2 &&
           Sample(text, "kong_nginx_requests_total{node_id=\"dp-it\",subsystem=\"http\"}") >= 12;
  }, 5s);
  EXPECT_EQ(Sample(text, a_200), 5) << text;
  EXPECT_EQ(Sample(text, e_500), 2) << text;
  EXPECT_FALSE(absl::StrContains(text, "route=\"b\"")) << "route b's own instance records nothing";
  EXPECT_FALSE(absl::StrContains(text, "code=\"404\"")) << "no route, no service: not recorded (Kong)";
  EXPECT_EQ(Sample(text, "kong_bandwidth_bytes{service=\"s1\",route=\"a\",direction=\"ingress\"" + tail),
            static_cast<double>(sent_a));
  EXPECT_EQ(Sample(text, "kong_bandwidth_bytes{service=\"s1\",route=\"a\",direction=\"egress\"" + tail),
            static_cast<double>(received_a));
  const std::string a = "{service=\"s1\",route=\"a\",workspace=\"default\"";
  for (const char* family : {"kong_request_latency_ms", "kong_upstream_latency_ms", "kong_kong_latency_ms"}) {
    EXPECT_EQ(Sample(text, absl::StrCat(family, "_count", a, "}")), 5) << family;
    EXPECT_EQ(Sample(text, absl::StrCat(family, "_bucket", a, ",le=\"+Inf\"}")), 5) << family;
    EXPECT_GE(Sample(text, absl::StrCat(family, "_sum", a, "}")), 0) << family;
  }
  EXPECT_EQ(Sample(text, "kong_upstream_latency_ms_count{service=\"broken\",route=\"e\",workspace=\"default\"}"), 2);

  // Target health: one series per state, 1 for the current one.
  const std::string health = absl::StrCat("kong_upstream_target_health{upstream=\"pool\",target=\"", target_,
                                          "\",address=\"", target_, "\",state=\"");
  EXPECT_EQ(Sample(text, health + "healthchecks_off\",subsystem=\"http\"}"), 1) << text;
  for (const char* state : {"healthy", "unhealthy", "dns_error"}) {
    EXPECT_EQ(Sample(text, health + state + "\",subsystem=\"http\"}"), 0) << state;
  }

  // The served config's hash, as a number; node series.
  const json status = cluster_.DpStatus(*dp_);
  const std::string hex = status["configuration_hash"].get<std::string>();
  double expected_hash = 0;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) expected_hash = expected_hash * 256 + std::stoi(hex.substr(i, 2), nullptr, 16);
  bool found_hash = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, "kong_data_plane_config_hash{")) continue;
    found_hash = true;
    EXPECT_TRUE(absl::StrContains(line, "node_id=\"dp-it\"")) << line;
    double v = 0;
    ASSERT_TRUE(absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) << line;
    EXPECT_NEAR(v / expected_hash, 1.0, 1e-12) << line << " vs " << hex;
  }
  EXPECT_TRUE(found_hash) << text;
  EXPECT_GE(Sample(text, "kong_nginx_requests_total{node_id=\"dp-it\",subsystem=\"http\"}"), 12);
  EXPECT_GE(Sample(text, "kong_nginx_connections_total{node_id=\"dp-it\",subsystem=\"http\",state=\"accepted\"}"), 12);
  EXPECT_EQ(Sample(text, absl::StrCat("kong_node_info{node_id=\"dp-it\",version=\"", status["version"].get<std::string>(),
                                      "\"}")),
            1);
  EXPECT_EQ(Sample(text, "kong_control_plane_connected"), 1);
  EXPECT_EQ(Sample(text, "portico_prometheus_dropped_total"), 0);

  // Every series once.
  std::set<std::string> series;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;
    EXPECT_TRUE(series.insert(std::string(line.substr(0, line.rfind(' ')))).second) << "twice: " << line;
  }

  // promtool parses it all; it only lints names Kong chose: a counter without _total, gauges
  // with it, "ms".
  const std::set<std::string> kong_names = {
      "kong_bandwidth_bytes counter metrics should have \"_total\" suffix",
      "kong_nginx_connections_total non-counter metrics should not have \"_total\" suffix",
      "kong_nginx_requests_total non-counter metrics should not have \"_total\" suffix",
      "kong_kong_latency_ms metric names should not contain abbreviated units",
      "kong_request_latency_ms metric names should not contain abbreviated units",
      "kong_upstream_latency_ms metric names should not contain abbreviated units"};
  std::string lint;
  const int rc = Promtool(cluster_.tmp().path(), text, &lint);
  EXPECT_TRUE(rc == 0 || rc == 3) << rc << "\n" << lint;
  for (absl::string_view line : absl::StrSplit(lint, '\n', absl::SkipEmpty())) {
    EXPECT_TRUE(kong_names.count(std::string(line)) == 1) << "promtool: " << line;
  }

  // A config change keeps the counters (cumulative across snapshots).
  ASSERT_EQ(cluster_.Admin("POST", "/services/s1/routes", {{"name", "later"}, {"paths", {"/later"}}}).status, 201);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  EXPECT_EQ(cluster_.Proxy(*dp_, "/a").status, 200);
  EXPECT_TRUE(WaitFor([&] { return Sample(Metrics(), a_200) == 6; }, 5s)) << Metrics();
}

// DB-less: the plugin comes from the kong.yml; no control plane series, node_id is the host name.
TEST(PrometheusDbLessTest, AGlobalPluginFromTheFileCountsAndNoClusterSeriesAppear) {
  EchoUpstream upstream("dbless");
  TempDir tmp;
  const std::string file = tmp.File("kong.yml");
  std::ofstream(file) << absl::StrCat(R"(_format_version: "3.0"
services:
  - name: orders
    url: http://127.0.0.1:)", upstream.port(), R"(
    routes:
      - name: orders-route
        paths: ["/orders"]
plugins:
  - name: prometheus
    config:
      status_code_metrics: true
)");
  const uint16_t proxy_port = PickFreePort(), status_port = PickFreePort();
  Process dp("portico-dp (DB-less)",
             {PORTICO_DP_BIN, "--declarative-config", file, "--proxy-listen", absl::StrCat("127.0.0.1:", proxy_port),
              "--proxy-ssl-listen", "off", "--status-listen", absl::StrCat("127.0.0.1:", status_port), "--workers",
              "2"},
             tmp.File("dp.log"));
  ASSERT_TRUE(WaitFor([&] { return Http(status_port, "GET", "/status/ready").status == 200; }, 10s)) << dp.Log();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(RawHttp(proxy_port, "GET /orders/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status, 200);
  }
  const std::string series =
      "kong_http_requests_total{service=\"orders\",route=\"orders-route\",code=\"200\",source=\"service\","
      "workspace=\"default\",consumer=\"\"}";
  std::string text;
  EXPECT_TRUE(WaitFor([&] {
    text = Http(status_port, "GET", "/metrics").body;
    return Sample(text, series) == 4;
  }, 5s)) << text;
  EXPECT_EQ(Sample(text, "kong_control_plane_connected"), -1) << "no control plane";
  EXPECT_EQ(Sample(text, "kong_data_plane_cluster_cert_expiry_timestamp"), -1);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  EXPECT_EQ(Sample(text, absl::StrCat("kong_nginx_requests_total{node_id=\"", host, "\",subsystem=\"http\"}")), 4)
      << text;
  EXPECT_FALSE(absl::StrContains(text, "kong_upstream_target_health")) << "upstream_health_metrics is off";
  EXPECT_FALSE(absl::StrContains(text, "kong_bandwidth_bytes")) << "bandwidth_metrics is off";
  EXPECT_EQ(dp.Stop(), 0);
}

}  // namespace
}  // namespace portico::testing
