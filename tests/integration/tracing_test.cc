// Tracing end to end (issue 16): the opentelemetry plugin created through the real CP's Admin API,
// run by the real DP in front of a real upstream, exporting to an OTLP/HTTP collector stub
// (otlp_collector.py, started and stopped by PID): traceparent generated or continued, tracestate
// passed through, and the spans the collector receives.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// "00-<32 hex>-<16 hex>-<2 hex>", lowercase, ids not zero: {trace, span, flags}; empty if invalid.
std::vector<std::string> SplitTraceparent(const std::string& value) {
  std::vector<std::string> parts = absl::StrSplit(value, '-');
  auto hex = [](const std::string& s, size_t n) {
    return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string::npos &&
           s != std::string(n, '0');
  };
  if (parts.size() != 4 || parts[0] != "00" || !hex(parts[1], 32) || !hex(parts[2], 16) || parts[3].size() != 2) {
    return {};
  }
  return {parts[1], parts[2], parts[3]};
}

class TracingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    dp_ = &cluster_.StartDp();
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
    StartCollector();
    const std::string url = absl::StrCat("http://127.0.0.1:", upstream_.port());
    ASSERT_EQ(cluster_.Admin("POST", "/services", {{"name", "s1"}, {"url", url}}).status, 201);
    for (const char* route : {"traced", "plain"}) {
      HttpResult r = cluster_.Admin("POST", "/services/s1/routes", {{"name", route}, {"paths", {absl::StrCat("/", route)}}});
      ASSERT_EQ(r.status, 201) << r.body;
    }
  }
  void TearDown() override {
    if (collector_ != nullptr) collector_->Stop();
    if (HasFailure()) {
      std::fprintf(stderr, "%s", cluster_.Logs().c_str());
      if (collector_ != nullptr) std::fprintf(stderr, "%s", collector_->Log().c_str());
    }
  }
  void StartCollector() {
    const std::string port_file = cluster_.tmp().File("otlp.port");
    spans_file_ = cluster_.tmp().File("otlp.jsonl");
    collector_ = std::make_unique<Process>(
        "otlp", std::vector<std::string>{"/usr/bin/python3", PORTICO_OTLP_COLLECTOR_PY, port_file, spans_file_},
        cluster_.tmp().File("otlp.log"));
    ASSERT_TRUE(WaitFor([&] { return access(port_file.c_str(), F_OK) == 0; }, 10s)) << collector_->Log();
    std::ifstream in(port_file);
    in >> collector_port_;
    ASSERT_GT(collector_port_, 0);
  }
  void AddPlugin(const std::string& path, const json& plugin) {
    HttpResult r = cluster_.Admin("POST", path, plugin);
    ASSERT_EQ(r.status, 201) << plugin.dump() << " -> " << r.body;
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  }
  json Otel(json config = json::object()) {
    config["traces_endpoint"] = absl::StrCat("http://127.0.0.1:", collector_port_, "/v1/traces");
    if (!config.contains("queue")) config["queue"] = {{"max_coalescing_delay", 0.05}};
    return {{"name", "opentelemetry"}, {"config", config}};
  }
  // What the upstream saw for a GET through the proxy.
  json Through(const std::string& path, const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    HttpResult r = Http(dp_->proxy_port, "GET", path, "", "", headers);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }
  // Every span the collector received so far, with the requests' metadata checked.
  std::vector<json> CollectedSpans() {
    std::vector<json> spans;
    std::ifstream in(spans_file_);
    std::string line;
    while (std::getline(in, line)) {
      const json record = json::parse(line, nullptr, false);
      if (record.is_discarded()) continue;
      EXPECT_EQ(record["path"], "/v1/traces");
      EXPECT_EQ(record["content_type"], "application/json");
      for (const json& resource_spans : record["body"]["resourceSpans"]) {
        EXPECT_EQ(resource_spans["resource"]["attributes"][0]["key"], "service.name");
        for (const json& scope_spans : resource_spans["scopeSpans"]) {
          for (const json& span : scope_spans["spans"]) spans.push_back(span);
        }
      }
    }
    return spans;
  }
  std::vector<json> SpansOf(const std::string& trace_id, size_t at_least) {
    std::vector<json> found;
    WaitFor(
        [&] {
          found.clear();
          for (const json& span : CollectedSpans()) {
            if (span["traceId"] == trace_id) found.push_back(span);
          }
          return found.size() >= at_least;
        },
        10s);
    return found;
  }

  EchoUpstream upstream_;
  Cluster cluster_;
  DataPlane* dp_ = nullptr;
  std::unique_ptr<Process> collector_;
  uint16_t collector_port_ = 0;
  std::string spans_file_;
};

uint64_t Nanos(const json& value) { return std::stoull(value.get<std::string>()); }

TEST_F(TracingTest, WithoutTheClientsTraceparentOneIsGeneratedAndTheSpansReachTheCollector) {
  AddPlugin("/routes/traced/plugins", Otel({{"resource_attributes", {{"service.name", "edge-gw"}}}}));
  const json seen = Through("/traced/x?y=1", {{"tracestate", "vendor=stale"}});
  ASSERT_TRUE(seen.is_object());
  const std::vector<std::string> parent = SplitTraceparent(seen["headers"].value("traceparent", ""));
  ASSERT_EQ(parent.size(), 3u) << seen.dump();
  EXPECT_EQ(parent[2], "01") << "sampled (sampling_rate null: every trace)";
  EXPECT_FALSE(seen["headers"].contains("tracestate")) << "a tracestate without a traceparent is dropped";
  const json plain = Through("/plain");
  EXPECT_FALSE(plain["headers"].contains("traceparent")) << "a route without the plugin gets nothing";

  const std::vector<json> spans = SpansOf(parent[0], 3);
  std::map<std::string, std::vector<json>> by_name;
  for (const json& span : spans) by_name[span["name"]].push_back(span);
  ASSERT_EQ(by_name["kong"].size(), 1u) << json(spans).dump();
  const json& root = by_name["kong"][0];
  EXPECT_EQ(root["kind"], 2);
  EXPECT_FALSE(root.contains("parentSpanId"));
  ASSERT_EQ(by_name["kong.balancer"].size(), 1u);
  const json& upstream_call = by_name["kong.balancer"][0];
  EXPECT_EQ(upstream_call["kind"], 3);
  EXPECT_EQ(upstream_call["spanId"], parent[1]) << "the upstream's parent span is the gateway's upstream call";
  EXPECT_EQ(upstream_call["parentSpanId"], root["spanId"]);
  ASSERT_EQ(by_name["kong.access.plugin.opentelemetry"].size(), 1u);
  EXPECT_EQ(by_name["kong.access.plugin.opentelemetry"][0]["parentSpanId"], root["spanId"]);
  // Times: the upstream call inside the request, both well under 10 s, and near the wall clock.
  const uint64_t start = Nanos(root["startTimeUnixNano"]), end = Nanos(root["endTimeUnixNano"]);
  EXPECT_LE(start, Nanos(upstream_call["startTimeUnixNano"]));
  EXPECT_LE(Nanos(upstream_call["endTimeUnixNano"]), end);
  EXPECT_GT(end - start, 0u);
  EXPECT_LT(end - start, 10'000'000'000ULL);
  const uint64_t now = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  EXPECT_LT(now - start, 60'000'000'000ULL) << "a wall-clock time";
  std::map<std::string, json> attributes;
  for (const json& a : root["attributes"]) attributes[a["key"]] = a["value"];
  EXPECT_EQ(attributes["http.method"], json({{"stringValue", "GET"}}));
  EXPECT_EQ(attributes["http.status_code"], json({{"intValue", "200"}}));
  EXPECT_EQ(attributes["http.url"]["stringValue"], absl::StrCat("http://127.0.0.1:", dp_->proxy_port, "/traced/x?y=1"));

  // The export's counters on the status listener.
  double delivered = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        const HttpResult metrics = Http(dp_->status_port, "GET", "/metrics");
        const size_t at = metrics.body.find("\nportico_opentelemetry_batches_delivered_total ");
        if (at == std::string::npos) return false;
        delivered = std::stod(metrics.body.substr(at + 47));
        return delivered >= 1;
      },
      10s))
      << Http(dp_->status_port, "GET", "/metrics").body;
  const HttpResult metrics = Http(dp_->status_port, "GET", "/metrics");
  EXPECT_NE(metrics.body.find("\nportico_opentelemetry_spans_dropped_total 0"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("\nportico_opentelemetry_spans_queued_total 3\n"), std::string::npos) << metrics.body;
}

TEST_F(TracingTest, TheClientsTraceContinuesWithANewParentAndItsTracestate) {
  AddPlugin("/plugins", Otel({{"sampling_rate", 0}}));
  const std::string client_trace = "0af7651916cd43dd8448eb211c80319c";
  const std::string client_span = "b7ad6b7169203331";
  const json seen = Through("/traced", {{"traceparent", absl::StrCat("00-", client_trace, "-", client_span, "-01")},
                                        {"tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}});
  const std::vector<std::string> parent = SplitTraceparent(seen["headers"].value("traceparent", ""));
  ASSERT_EQ(parent.size(), 3u) << seen.dump();
  EXPECT_EQ(parent[0], client_trace);
  EXPECT_NE(parent[1], client_span);
  EXPECT_EQ(parent[2], "01");
  EXPECT_EQ(seen["headers"]["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
  const std::vector<json> spans = SpansOf(client_trace, 3);
  bool root_found = false;
  for (const json& span : spans) {
    if (span["name"] != "kong") continue;
    root_found = true;
    EXPECT_EQ(span["parentSpanId"], client_span) << "the gateway's span is a child of the client's";
  }
  EXPECT_TRUE(root_found) << json(spans).dump();

  // An unsampled client trace continues unsampled and is not exported; an invalid traceparent
  // starts a new trace (not sampled at rate 0).
  const json unsampled = Through("/traced", {{"traceparent", absl::StrCat("00-", client_trace, "-", client_span, "-00")}});
  EXPECT_EQ(SplitTraceparent(unsampled["headers"].value("traceparent", "")).at(2), "00");
  const json invalid = Through("/traced", {{"traceparent", "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"}});
  const std::vector<std::string> fresh = SplitTraceparent(invalid["headers"].value("traceparent", ""));
  ASSERT_EQ(fresh.size(), 3u) << invalid.dump();
  EXPECT_NE(fresh[0], "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(fresh[2], "00");
  std::this_thread::sleep_for(500ms);  // batches go out within 50 ms: time enough to show none came
  for (const json& span : CollectedSpans()) EXPECT_NE(span["traceId"], fresh[0]);
  EXPECT_EQ(SpansOf(client_trace, 0).size(), spans.size()) << "the unsampled request added no span";
}

TEST_F(TracingTest, ARetriedUpstreamCallHasASpanPerAttempt) {
  // A service with two targets, the first refusing connections: one failed attempt, one answered.
  ASSERT_EQ(cluster_.Admin("POST", "/upstreams", {{"name", "pair"}}).status, 201);
  const uint16_t closed_port = PickFreePort();
  ASSERT_EQ(cluster_.Admin("POST", "/upstreams/pair/targets", {{"target", absl::StrCat("127.0.0.1:", closed_port)}, {"weight", 100}}).status, 201);
  ASSERT_EQ(cluster_.Admin("POST", "/upstreams/pair/targets", {{"target", absl::StrCat("127.0.0.1:", upstream_.port())}, {"weight", 100}}).status, 201);
  ASSERT_EQ(cluster_.Admin("POST", "/services", {{"name", "balanced"}, {"host", "pair"}, {"retries", 2}}).status, 201);
  ASSERT_EQ(cluster_.Admin("POST", "/services/balanced/routes", {{"paths", {"/balanced"}}}).status, 201);
  AddPlugin("/plugins", Otel());
  // Round robin: within a few requests one goes to the closed target first.
  std::string retried_trace, upstream_parent;
  for (int i = 0; i < 6 && retried_trace.empty(); ++i) {
    const json seen = Through("/balanced");
    const std::vector<std::string> parent = SplitTraceparent(seen["headers"].value("traceparent", ""));
    ASSERT_EQ(parent.size(), 3u);
    const std::vector<json> spans = SpansOf(parent[0], 3);
    int attempts = 0;
    for (const json& span : spans) attempts += span["name"] == "kong.balancer";
    if (attempts == 2) {
      retried_trace = parent[0];
      upstream_parent = parent[1];
    }
  }
  ASSERT_FALSE(retried_trace.empty()) << "no request was retried";
  std::vector<json> attempts;
  for (const json& span : SpansOf(retried_trace, 4)) {
    if (span["name"] == "kong.balancer") attempts.push_back(span);
  }
  ASSERT_EQ(attempts.size(), 2u);
  std::sort(attempts.begin(), attempts.end(),
            [](const json& a, const json& b) { return Nanos(a["startTimeUnixNano"]) < Nanos(b["startTimeUnixNano"]); });
  EXPECT_EQ(attempts[0]["status"]["code"], 2) << "the refused attempt is an error";
  std::map<std::string, json> first, second;
  for (const json& a : attempts[0]["attributes"]) first[a["key"]] = a["value"];
  for (const json& a : attempts[1]["attributes"]) second[a["key"]] = a["value"];
  EXPECT_EQ(first["net.peer.port"], json({{"intValue", std::to_string(closed_port)}}));
  EXPECT_EQ(second["net.peer.port"], json({{"intValue", std::to_string(upstream_.port())}}));
  EXPECT_EQ(second["http.status_code"], json({{"intValue", "200"}}));
  EXPECT_LE(Nanos(attempts[0]["endTimeUnixNano"]), Nanos(attempts[1]["startTimeUnixNano"]));
  EXPECT_EQ(attempts[1]["spanId"], upstream_parent) << "the upstream's parent span is the attempt it answered";
  EXPECT_NE(attempts[0]["spanId"], upstream_parent);
}

// Threads of a process (its /proc/PID/task entries).
size_t ThreadCount(pid_t pid) {
  size_t count = 0;
  if (DIR* dir = opendir(absl::StrCat("/proc/", pid, "/task").c_str())) {
    while (const dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
    closedir(dir);
  }
  return count;
}

TEST_F(TracingTest, ChangingTheExportTargetKeepsTheSenderThreadsBounded) {
  HttpResult created = cluster_.Admin("POST", "/plugins", Otel());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = ParseJson(created)["id"];
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  const pid_t pid = dp_->process->pid();
  // Measured once the process's lazily started threads (libuv's pool) exist: after 5 changes.
  size_t threads_before = 0;
  for (int i = 0; i < 20; ++i) {
    if (i == 5) threads_before = ThreadCount(pid);
    const std::string url = absl::StrCat("http://127.0.0.1:", collector_port_, "/v1/traces/", i);
    const json config = {{"traces_endpoint", url}, {"endpoint", url}};  // the stored endpoint is merged otherwise
    HttpResult r = cluster_.Admin("PATCH", absl::StrCat("/plugins/", id), {{"config", config}});
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
    for (int j = 0; j < 4; ++j) Through("/traced");  // both workers meet the new target
  }
  ASSERT_GT(threads_before, 0u);
  // One more publish lets the last replaced snapshot go (it may still have been held at the last).
  ASSERT_EQ(cluster_.Admin("POST", "/services/s1/routes", {{"name", "late"}, {"paths", {"/late"}}}).status, 201);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  size_t threads_after = 0;
  EXPECT_TRUE(WaitFor([&] { return (threads_after = ThreadCount(pid)) <= threads_before + 2; }, 5s))
      << "threads: " << threads_before << " after 5 targets, " << threads_after << " after 20";
  EXPECT_EQ(Through("/traced")["method"], "GET");
}

TEST_F(TracingTest, AnUnreachableCollectorCostsTheRequestsNothingAndIsCounted) {
  json plugin = Otel({{"queue", {{"max_coalescing_delay", 0.01}, {"max_retry_time", 0.3}, {"initial_retry_delay", 0.05}}}});
  plugin["config"]["traces_endpoint"] = absl::StrCat("http://127.0.0.1:", PickFreePort(), "/v1/traces");
  AddPlugin("/plugins", plugin);
  for (int i = 0; i < 5; ++i) {
    const json seen = Through("/traced");
    EXPECT_EQ(SplitTraceparent(seen["headers"].value("traceparent", "")).size(), 3u);
  }
  double lost = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        const HttpResult metrics = Http(dp_->status_port, "GET", "/metrics");
        const std::string name = "\nportico_opentelemetry_batches_lost_total ";
        const size_t at = metrics.body.find(name);
        if (at == std::string::npos) return false;
        lost = std::stod(metrics.body.substr(at + name.size()));
        return lost >= 1;
      },
      10s))
      << "batches that could not be delivered are counted";
  EXPECT_EQ(Through("/plain")["method"], "GET") << "the DP serves on";
}

TEST_F(TracingTest, AnUnsupportedConfigIsRefusedByName) {
  HttpResult https = cluster_.Admin("POST", "/plugins",
                                    {{"name", "opentelemetry"}, {"config", {{"traces_endpoint", "https://c/v1/traces"}}}});
  EXPECT_EQ(https.status, 400);
  EXPECT_NE(https.body.find("https endpoints are not supported by Portico yet"), std::string::npos) << https.body;
  HttpResult b3 = cluster_.Admin(
      "POST", "/plugins",
      {{"name", "opentelemetry"}, {"config", {{"traces_endpoint", "http://c/v1/traces"}, {"propagation", {{"inject", {"b3"}}}}}}});
  EXPECT_EQ(b3.status, 400);
  EXPECT_NE(b3.body.find("'b3' is not supported by Portico yet"), std::string::npos) << b3.body;
  HttpResult missing = cluster_.Admin("POST", "/plugins", {{"name", "opentelemetry"}});
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(ParseJson(missing)["fields"]["config"]["traces_endpoint"], "required field missing") << missing.body;
}

}  // namespace
}  // namespace portico::testing
