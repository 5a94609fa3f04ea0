// Access logs end to end (issue 16): --access-log lines from the real DP checked field by field,
// SIGUSR1 after a rename (logrotate), the file-log plugin through the Admin API, and http-log to a
// collector in this test process: batches arrive, and with the collector failing or gone the
// entries are retried, then dropped and counted on /metrics, the queue bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/http_collector.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

std::vector<json> ReadJsonLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> lines;
  std::string line;
  while (std::getline(in, line)) {
    json parsed = json::parse(line, nullptr, false);
    lines.push_back(parsed);  // a line that is not JSON stays as "discarded" and fails the checks
  }
  return lines;
}

double MetricValue(const std::string& metrics, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      double value = -1;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &value)) return value;
    }
  }
  return -1;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using Collector = test_support::HttpCollector;

class AccessLogTest : public ::testing::Test {
 protected:
  void StartCluster(std::vector<std::string> dp_args = {}) {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    DataPlaneOptions options;
    options.extra_args = std::move(dp_args);
    dp_ = &cluster_.StartDp(options);
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
    HttpResult s = cluster_.Admin("POST", "/services",
                                  {{"name", "orders"}, {"url", absl::StrCat("http://127.0.0.1:", upstream_.port(), "/api")}});
    ASSERT_EQ(s.status, 201) << s.body;
    HttpResult r = cluster_.Admin("POST", "/services/orders/routes", {{"name", "orders-route"}, {"paths", {"/orders"}}});
    ASSERT_EQ(r.status, 201) << r.body;
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.Logs();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }
  std::string Metrics() { return Http(dp_->status_port, "GET", "/metrics").body; }
  void AddPlugin(const json& plugin) {
    HttpResult r = cluster_.Admin("POST", "/plugins", plugin);
    ASSERT_EQ(r.status, 201) << plugin.dump() << " -> " << r.body;
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.Logs();
  }

  EchoUpstream upstream_{"orders"};
  Cluster cluster_;
  DataPlane* dp_ = nullptr;
};

TEST_F(AccessLogTest, LinesAreKongSerializerJsonCheckedFieldByField) {
  const std::string log = cluster_.tmp().path() + "/access.log";
  StartCluster({"--access-log", log});
  const int64_t before_ms = NowMs();
  HttpResult get = RawHttp(dp_->proxy_port,
                           "GET /orders/7?page=2&apikey=hunter2 HTTP/1.1\r\nHost: shop.example\r\n"
                           "Authorization: Bearer top-secret\r\nX-Trace: t1\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(get.status, 200) << get.body;
  const std::string post_body = "{\"item\":42}";
  HttpResult post = RawHttp(dp_->proxy_port, absl::StrCat("POST /orders HTTP/1.1\r\nHost: shop.example\r\n"
                                                          "Content-Type: application/json\r\nContent-Length: ",
                                                          post_body.size(), "\r\nConnection: close\r\n\r\n", post_body));
  ASSERT_EQ(post.status, 200) << post.body;
  HttpResult missing = cluster_.Proxy(*dp_, "/nowhere");
  ASSERT_EQ(missing.status, 404);
  const int64_t after_ms = NowMs();

  std::vector<json> lines;
  ASSERT_TRUE(WaitFor([&] { return (lines = ReadJsonLines(log)).size() >= 3; }, 5s)) << json(lines).dump();
  ASSERT_EQ(lines.size(), 3u);
  for (const json& line : lines) ASSERT_TRUE(line.is_object()) << "not JSON";
  // Workers write in parallel: find each request by its method and path.
  auto find = [&](const std::string& method, const std::string& prefix) -> const json& {
    for (const json& l : lines) {
      if (l["request"]["method"] == method && l["request"]["uri"].get<std::string>().rfind(prefix, 0) == 0) return l;
    }
    static const json none;
    ADD_FAILURE() << "no line for " << method << " " << prefix;
    return none;
  };
  const json& g = find("GET", "/orders/7");
  EXPECT_EQ(g["request"]["uri"], "/orders/7?page=2&apikey=[REDACTED]");
  EXPECT_EQ(g["request"]["url"], absl::StrCat("http://shop.example:", dp_->proxy_port, "/orders/7?page=2&apikey=[REDACTED]"));
  EXPECT_EQ(g["request"]["querystring"], json({{"page", "2"}, {"apikey", "[REDACTED]"}}));
  EXPECT_EQ(g["request"]["headers"]["authorization"], "[REDACTED]");
  EXPECT_EQ(g["request"]["headers"]["x-trace"], "t1");
  EXPECT_EQ(g["request"]["headers"]["host"], "shop.example");
  EXPECT_GT(g["request"]["size"].get<int>(), 100);
  EXPECT_EQ(g["response"]["status"], 200);
  EXPECT_GT(g["response"]["size"].get<int>(), static_cast<int>(get.body.size()));
  EXPECT_EQ(g["upstream_status"], 200);
  EXPECT_EQ(g["upstream_uri"], "/api/7?page=2&apikey=[REDACTED]");
  EXPECT_EQ(g["route"]["name"], "orders-route");
  EXPECT_EQ(g["service"]["name"], "orders");
  EXPECT_EQ(g["service"]["port"], upstream_.port());
  EXPECT_EQ(g["consumer"], nullptr);
  EXPECT_EQ(g["client_ip"], "127.0.0.1");
  EXPECT_EQ(g["source"], "upstream");
  ASSERT_EQ(g["tries"].size(), 1u);
  EXPECT_EQ(g["tries"][0]["ip"], "127.0.0.1");
  EXPECT_EQ(g["tries"][0]["port"], upstream_.port());
  const double request_ms = g["latencies"]["request"].get<double>();
  const double proxy_ms = g["latencies"]["proxy"].get<double>();
  const double kong_ms = g["latencies"]["kong"].get<double>();
  EXPECT_GT(request_ms, 0);
  EXPECT_GT(proxy_ms, 0);
  EXPECT_LE(proxy_ms, request_ms);
  EXPECT_NEAR(kong_ms, request_ms - proxy_ms, 0.01);
  EXPECT_LT(request_ms, static_cast<double>(after_ms - before_ms) + 1);
  EXPECT_GE(g["started_at"].get<int64_t>(), before_ms - 5);
  EXPECT_LE(g["started_at"].get<int64_t>(), after_ms + 5);
  // No secret anywhere in the line.
  EXPECT_EQ(g.dump().find("hunter2"), std::string::npos);
  EXPECT_EQ(g.dump().find("top-secret"), std::string::npos);

  const json& p = find("POST", "/orders");
  EXPECT_EQ(p["request"]["headers"]["content-length"], std::to_string(post_body.size()));
  EXPECT_GE(p["request"]["size"].get<size_t>(), post_body.size() + 60);
  EXPECT_EQ(p["upstream_uri"], "/api");
  EXPECT_EQ(p["response"]["status"], 200);

  const json& m = find("GET", "/nowhere");
  EXPECT_EQ(m["response"]["status"], 404);
  EXPECT_EQ(m["route"], nullptr);
  EXPECT_EQ(m["service"], nullptr);
  EXPECT_EQ(m["upstream_status"], nullptr);
  EXPECT_EQ(m["tries"], json::array());
  EXPECT_EQ(m["source"], "kong");
  EXPECT_EQ(m["latencies"]["proxy"], 0);

  const std::string metrics = Metrics();
  EXPECT_EQ(MetricValue(metrics, "portico_access_log_lines_total"), 3) << metrics;
  EXPECT_EQ(MetricValue(metrics, "portico_access_log_dropped_total"), 0) << metrics;
}

TEST_F(AccessLogTest, Sigusr1AfterARenameSendsNewLinesToANewFile) {
  const std::string log = cluster_.tmp().path() + "/access.log";
  StartCluster({"--access-log", log});
  ASSERT_EQ(cluster_.Proxy(*dp_, "/orders/before").status, 200);
  ASSERT_TRUE(WaitFor([&] { return ReadJsonLines(log).size() == 1; }, 5s));
  const std::string rotated = log + ".1";
  std::filesystem::rename(log, rotated);  // what logrotate does
  dp_->process->Signal(SIGUSR1);
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(log); }, 5s)) << "the DP did not reopen " << log;
  ASSERT_EQ(cluster_.Proxy(*dp_, "/orders/after").status, 200);
  ASSERT_TRUE(WaitFor([&] { return ReadJsonLines(log).size() == 1; }, 5s));
  EXPECT_EQ(ReadJsonLines(log)[0]["request"]["uri"], "/orders/after");
  std::vector<json> old_lines = ReadJsonLines(rotated);
  ASSERT_EQ(old_lines.size(), 1u);
  EXPECT_EQ(old_lines[0]["request"]["uri"], "/orders/before");
  EXPECT_TRUE(dp_->process->Running()) << "SIGUSR1 must not stop the DP";
}

TEST_F(AccessLogTest, AnAccessLogThatCannotBeOpenedStopsTheStartWithAClearError) {
  TempDir dir;
  const std::string log = dir.path() + "/no/such/dir/access.log";
  Process dp("portico-dp", {PORTICO_DP_BIN, "--declarative-config", dir.path() + "/none.yml", "--access-log", log},
             dir.path() + "/dp.log");
  const int status = dp.Stop(0, 10s);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(dp.Log().find("--access-log"), std::string::npos) << dp.Log();
  EXPECT_NE(dp.Log().find(log), std::string::npos) << dp.Log();
}

TEST_F(AccessLogTest, FileLogPluginThroughTheAdminApi) {
  StartCluster();
  const std::string log = cluster_.tmp().path() + "/orders.log";
  // Lua and relative paths are refused with Kong-shaped 400s, and nothing is stored.
  HttpResult lua = cluster_.Admin("POST", "/plugins",
                                  {{"name", "file-log"}, {"config", {{"path", log}, {"custom_fields_by_lua", {{"a", "return 1"}}}}}});
  EXPECT_EQ(lua.status, 400) << lua.body;
  EXPECT_NE(lua.body.find("custom_fields_by_lua"), std::string::npos) << lua.body;
  HttpResult relative = cluster_.Admin("POST", "/plugins", {{"name", "file-log"}, {"config", {{"path", "x.log"}}}});
  EXPECT_EQ(relative.status, 400) << relative.body;

  json plugin = {{"name", "file-log"}, {"service", {{"name", "orders"}}}, {"config", {{"path", log}}}};
  AddPlugin(plugin);
  ASSERT_EQ(cluster_.Proxy(*dp_, "/orders/1").status, 200);
  ASSERT_EQ(cluster_.Proxy(*dp_, "/nowhere").status, 404);  // no route: the service's plugin does not run
  ASSERT_EQ(cluster_.Proxy(*dp_, "/orders/2").status, 200);
  std::vector<json> lines;
  ASSERT_TRUE(WaitFor([&] { return (lines = ReadJsonLines(log)).size() >= 2; }, 5s));
  std::this_thread::sleep_for(100ms);
  lines = ReadJsonLines(log);
  ASSERT_EQ(lines.size(), 2u);
  for (const json& line : lines) {
    ASSERT_TRUE(line.is_object());
    EXPECT_EQ(line["service"]["name"], "orders");
    EXPECT_EQ(line["response"]["status"], 200);
  }
  EXPECT_GE(MetricValue(Metrics(), "portico_log_lines_total"), 2);
}

TEST_F(AccessLogTest, HttpLogBatchesArriveAtTheCollector) {
  StartCluster();
  Collector collector;
  AddPlugin({{"name", "http-log"},
             {"config",
              {{"http_endpoint", absl::StrCat("http://127.0.0.1:", collector.port(), "/logs")},
               {"headers", {{"X-Api-Token", "abc"}}},
               {"queue", {{"max_batch_size", 5}, {"max_coalescing_delay", 0.2}}}}}});
  constexpr int kRequests = 12;
  for (int i = 0; i < kRequests; ++i) ASSERT_EQ(cluster_.Proxy(*dp_, absl::StrCat("/orders/", i)).status, 200);
  std::vector<std::string> seen;
  ASSERT_TRUE(WaitFor([&] {
    seen.clear();
    for (const std::string& body : collector.bodies()) {
      json batch = json::parse(body, nullptr, false);
      if (!batch.is_array()) return false;
      for (const json& entry : batch) seen.push_back(entry["request"]["uri"]);
    }
    return seen.size() >= static_cast<size_t>(kRequests);
  }, 10s)) << seen.size();
  EXPECT_EQ(seen.size(), static_cast<size_t>(kRequests));
  for (const std::string& body : collector.bodies()) EXPECT_LE(json::parse(body).size(), 5u);
  EXPECT_GE(collector.bodies().size(), 3u);  // 12 entries in batches of at most 5
  const std::string metrics = Metrics();
  EXPECT_EQ(MetricValue(metrics, "portico_http_log_entries_sent_total"), kRequests) << metrics;
  EXPECT_EQ(MetricValue(metrics, "portico_http_log_entries_dropped_total"), 0) << metrics;
}

TEST_F(AccessLogTest, HttpLogRetriesThenDropsAndCountsWhenTheCollectorFailsOrIsGone) {
  StartCluster();
  Collector collector;
  collector.set_status(503);
  AddPlugin({{"name", "http-log"},
             {"config",
              {{"http_endpoint", absl::StrCat("http://127.0.0.1:", collector.port(), "/")},
               {"queue",
                {{"max_batch_size", 2},
                 {"max_coalescing_delay", 0.01},
                 {"max_entries", 4},
                 {"initial_retry_delay", 0.02},
                 {"max_retry_delay", 0.1},
                 {"max_retry_time", 0.5}}}}}});
  // The collector answers 503: the first batch is retried (several tries reach it), then dropped.
  ASSERT_EQ(cluster_.Proxy(*dp_, "/orders/a").status, 200);
  ASSERT_TRUE(WaitFor([&] { return MetricValue(Metrics(), "portico_http_log_entries_failed_total") >= 1; }, 10s))
      << Metrics();
  EXPECT_GE(collector.requests(), 3u);
  EXPECT_GE(MetricValue(Metrics(), "portico_http_log_retries_total"), 2);

  // The collector is gone: a burst of requests overflows the 4-entry queue, and the oldest are
  // dropped and counted while a batch is retried; memory stays bounded.
  collector.Stop();
  for (int i = 0; i < 40; ++i) ASSERT_EQ(cluster_.Proxy(*dp_, absl::StrCat("/orders/", i)).status, 200);
  ASSERT_TRUE(WaitFor([&] { return MetricValue(Metrics(), "portico_http_log_entries_dropped_total") >= 20; }, 10s))
      << Metrics();
  const std::string metrics = Metrics();
  EXPECT_LE(MetricValue(metrics, "portico_http_log_queued_entries"), 4 + 2) << metrics;
  EXPECT_EQ(MetricValue(metrics, "portico_http_log_entries_sent_total"), 0) << metrics;
  // Every entry is accounted for: failed, dropped, or still queued.
  ASSERT_TRUE(WaitFor([&] {
    const std::string m = Metrics();
    return MetricValue(m, "portico_http_log_entries_failed_total") + MetricValue(m, "portico_http_log_entries_dropped_total") +
               MetricValue(m, "portico_http_log_queued_entries") == 41;
  }, 10s)) << Metrics();
  EXPECT_TRUE(dp_->process->Running());
}

// A file-log path the DP cannot open yet does not make it refuse the config (it stays in sync);
// its lines are dropped and counted until the directory exists, then they are written.
TEST_F(AccessLogTest, AFileLogPathThatCannotBeOpenedYetIsAppliedAndOpenedLater) {
  StartCluster();
  const std::string dir = cluster_.tmp().path() + "/later";
  const std::string log = dir + "/orders.log";
  AddPlugin({{"name", "file-log"}, {"service", {{"name", "orders"}}}, {"config", {{"path", log}}}});
  ASSERT_EQ(cluster_.Proxy(*dp_, "/orders/early").status, 200);
  ASSERT_TRUE(WaitFor([&] { return MetricValue(Metrics(), "portico_log_lines_dropped_total") >= 1; }, 5s)) << Metrics();
  // A later config still applies (a DP that refused the first would refuse every one after it).
  HttpResult r = cluster_.Admin("POST", "/services/orders/routes", {{"name", "more"}, {"paths", {"/more"}}});
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.Logs();
  ASSERT_EQ(cluster_.Proxy(*dp_, "/more").status, 200);
  std::filesystem::create_directory(dir);
  // Retried at most once a second: keep sending until a line lands.
  ASSERT_TRUE(WaitFor([&] {
    cluster_.Proxy(*dp_, "/orders/late");
    return !ReadJsonLines(log).empty();
  }, 5s)) << cluster_.Logs();
  for (const json& line : ReadJsonLines(log)) {
    ASSERT_TRUE(line.is_object());
    EXPECT_EQ(line["request"]["uri"], "/orders/late");
  }
}

// The credential names the config itself sets (key-auth key_names) are redacted in headers and
// query arguments, and a percent-encoded secret name is recognized.
TEST_F(AccessLogTest, ConfiguredCredentialNamesAndEncodedSecretNamesAreRedacted) {
  const std::string log = cluster_.tmp().path() + "/access.log";
  StartCluster({"--access-log", log});
  AddPlugin({{"name", "key-auth"}, {"service", {{"name", "orders"}}}, {"config", {{"key_names", {"x-shop-key"}}}}});
  HttpResult denied = RawHttp(dp_->proxy_port,
                              "GET /orders/1?x-shop-key=SECRET1&ap%69key=SECRET2&access%5Ftoken=SECRET3 HTTP/1.1\r\n"
                              "Host: shop.example\r\nX-Shop-Key: SECRET4\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(denied.status, 401) << denied.body;
  std::vector<json> lines;
  ASSERT_TRUE(WaitFor([&] { return !(lines = ReadJsonLines(log)).empty(); }, 5s));
  ASSERT_EQ(lines.size(), 1u);
  ASSERT_TRUE(lines[0].is_object());
  EXPECT_EQ(lines[0].dump().find("SECRET"), std::string::npos) << lines[0].dump();
  EXPECT_EQ(lines[0]["request"]["headers"]["x-shop-key"], "[REDACTED]");
  EXPECT_EQ(lines[0]["request"]["querystring"]["x-shop-key"], "[REDACTED]");
  EXPECT_EQ(lines[0]["request"]["querystring"]["apikey"], "[REDACTED]");
  EXPECT_EQ(lines[0]["response"]["status"], 401);
}

// Stdout piped to a reader that stopped reading (here: an access log FIFO nobody reads): SIGTERM
// still ends the DP within a bound, the writer stuck in write() left behind.
TEST_F(AccessLogTest, SigtermWithAStuckAccessLogExitsWithinABound) {
  const std::string fifo = cluster_.tmp().path() + "/stuck.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // open, never read
  ASSERT_GE(reader, 0);
  StartCluster({"--access-log", fifo});
  // ~1.3 KB a line: 300 lines fill the 64 KiB pipe several times over.
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(cluster_.Proxy(*dp_, absl::StrCat("/orders/", i, "?pad=", std::string(1000, 'x'))).status, 200);
  }
  const auto start = std::chrono::steady_clock::now();
  const int status = dp_->process->Stop(SIGTERM, 20s);
  const auto took = std::chrono::steady_clock::now() - start;
  ::close(reader);
  EXPECT_TRUE(WIFEXITED(status)) << "killed after 20 s: the DP hung on its stuck log";
  EXPECT_LT(took, 10s);
  std::printf("SIGTERM with a stuck access log: exited in %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
}

// A disk that does not keep up: the log is a FIFO nobody reads, so the writer blocks in write().
// The DP keeps answering, drops and counts lines, and its memory stays bounded; once the reader
// drains the FIFO, lines flow again.
TEST_F(AccessLogTest, AStuckLogDropsAndCountsLinesWhileTheProxyKeepsServing) {
  const std::string fifo = cluster_.tmp().path() + "/access.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // the FIFO stays open, unread
  ASSERT_GE(reader, 0);
  StartCluster({"--access-log", fifo});
  auto rss_kb = [&] {
    std::ifstream status("/proc/" + std::to_string(dp_->process->pid()) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1L;
  };
  // 2 workers x 1 MiB rings + a 64 KiB pipe hold about 2 000 lines of ~1 KB: send more.
  auto burst = [&](int n) {
    for (int i = 0; i < n; ++i) {
      HttpResult r = cluster_.Proxy(*dp_, absl::StrCat("/orders/", i, "?pad=", std::string(200, 'x')));
      if (r.status != 200) return false;
    }
    return true;
  };
  ASSERT_TRUE(burst(3000));
  ASSERT_TRUE(WaitFor([&] { return MetricValue(Metrics(), "portico_access_log_dropped_total") > 0; }, 10s)) << Metrics();
  const long rss_after_first = rss_kb();
  ASSERT_TRUE(burst(3000));
  const long rss_after_second = rss_kb();
  EXPECT_LT(rss_after_second - rss_after_first, 8 * 1024) << rss_after_first << " kB -> " << rss_after_second << " kB";
  const double dropped = MetricValue(Metrics(), "portico_access_log_dropped_total");
  EXPECT_GE(dropped, 3000) << Metrics();  // the second burst found the rings full
  std::printf("stuck log: VmRSS %ld kB after 3000 requests, %ld kB after 6000; %.0f lines dropped\n", rss_after_first,
              rss_after_second, dropped);
  // The reader catches up: the writer finishes its write and new lines are written again.
  std::atomic<bool> draining{true};
  std::thread drain([&] {
    char buf[65536];
    while (draining) {
      if (::read(reader, buf, sizeof(buf)) <= 0) std::this_thread::sleep_for(5ms);
    }
  });
  const double written_before = MetricValue(Metrics(), "portico_access_log_lines_total");
  ASSERT_TRUE(WaitFor([&] {
    cluster_.Proxy(*dp_, "/orders/again");
    return MetricValue(Metrics(), "portico_access_log_lines_total") > written_before + 10;
  }, 10s)) << Metrics();
  draining = false;
  drain.join();
  ::close(reader);
}

}  // namespace
}  // namespace portico::testing
