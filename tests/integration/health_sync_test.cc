// Target health through the real portico-cp binary (its main.cc wiring: /metrics and the
// overrides): a real portico-dp (its health registry reports and applies overrides) and an
// in-process DP SyncClient whose hooks say what the test wants. Targets are loopback ports
// nothing listens on (the real DP's active checks probe them; unhealthy limits are 0, so they stay
// HEALTHY there).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/tls/tls_files.h"
#include "data_plane/sync/sync_client.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

TEST(HealthSyncIntegration, CpBinaryShowsDataPlaneViewsAndSendsOverrides) {
  Cluster cluster;
  ASSERT_TRUE(cluster.StartCp()) << cluster.Logs();
  DataPlane& real_dp = cluster.StartDp();
  ASSERT_TRUE(real_dp.started) << cluster.Logs();

  HttpResult u = cluster.Admin("POST", "/upstreams",
                               json::parse(R"({"name":"a.internal","healthchecks":{"active":{"healthy":{"interval":5}}}})"));
  ASSERT_EQ(u.status, 201) << u.body;
  const std::string upstream_id = ParseJson(u)["id"];
  ASSERT_EQ(cluster.Admin("POST", "/upstreams/a.internal/targets", {{"target", "127.0.0.1:1"}}).status, 201);
  ASSERT_EQ(cluster.Admin("POST", "/upstreams/a.internal/targets", {{"target", "127.0.0.1:2"}}).status, 201);

  ASSERT_TRUE(IssueDataPlaneCertificate(cluster.certs(), "dp-hooks", cluster.certs() + "/dp-hooks").ok());
  std::mutex mu;
  std::vector<dp::HealthOverrideCommand> overrides;
  dp::SyncClientOptions options;
  options.control_plane = absl::StrCat("127.0.0.1:", cluster.cluster_port());
  options.cert_file = cluster.certs() + "/dp-hooks.crt";
  options.key_file = cluster.certs() + "/dp-hooks.key";
  options.ca_file = cluster.certs() + "/ca.crt";
  options.hostname = "edge-hooks";
  options.backoff_initial = absl::Milliseconds(100);
  options.target_health = [upstream_id] {
    return std::vector<dp::TargetHealthView>{{upstream_id, "a.internal", "127.0.0.1:1", "HEALTHY"},
                                             {upstream_id, "a.internal", "127.0.0.1:2", "UNHEALTHY"}};
  };
  options.on_health_override = [&](const dp::HealthOverrideCommand& command) {
    std::lock_guard<std::mutex> lock(mu);
    overrides.push_back(command);
    return absl::OkStatus();
  };
  auto client = dp::SyncClient::Start(
      options, [](std::shared_ptr<const ConfigSet>, const ConfigVersion&) { return absl::OkStatus(); });
  ASSERT_TRUE(client.ok()) << client.status();

  json row;
  ASSERT_TRUE(WaitFor(
      [&] {
        HttpResult h = cluster.Admin("GET", "/upstreams/a.internal/health?per_data_plane=true");
        if (h.status != 200) return false;
        const json body = ParseJson(h);  // kept: the loop refers into it
        for (const json& r : body["data"]) {
          if (r["target"] == "127.0.0.1:2") row = r;
        }
        return row.is_object() && row["health"] == "UNHEALTHY" && row["data"]["per_data_plane"].size() == 2;
      },
      10s))
      << row.dump() << cluster.Logs();
  std::map<std::string, json> by_dp;
  for (const json& d : row["data"]["per_data_plane"]) by_dp[d["id"]] = d;
  EXPECT_EQ(by_dp["dp-hooks"]["hostname"], "edge-hooks");
  EXPECT_EQ(by_dp["dp-hooks"]["health"], "UNHEALTHY");
  EXPECT_EQ(by_dp["dp-it"]["health"], "HEALTHY") << "the real DP's registry";
  EXPECT_EQ(row["data"]["data_planes"], (json{{"HEALTHY", 1}, {"UNHEALTHY", 1}}));

  HttpResult metrics = cluster.Admin("GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_TRUE(absl::StrContains(metrics.body, "# TYPE portico_upstream_target_health gauge\n")) << metrics.body;
  EXPECT_TRUE(absl::StrContains(
      metrics.body,
      "portico_upstream_target_health{upstream=\"a.internal\",target=\"127.0.0.1:2\",data_plane=\"dp-hooks\"} 0\n"))
      << metrics.body;
  EXPECT_TRUE(absl::StrContains(
      metrics.body,
      "portico_upstream_target_health{upstream=\"a.internal\",target=\"127.0.0.1:1\",data_plane=\"dp-hooks\"} 1\n"))
      << metrics.body;
  EXPECT_TRUE(absl::StrContains(
      metrics.body,
      "portico_upstream_target_health{upstream=\"a.internal\",target=\"127.0.0.1:2\",data_plane=\"dp-it\"} 1\n"))
      << metrics.body;

  // The exposition passes promtool's checks when promtool is installed (Debian `prometheus`).
  if (::access("/usr/bin/promtool", X_OK) == 0) {
    const std::string file = cluster.tmp().path() + "/metrics.txt";
    {
      std::ofstream out(file);
      out << metrics.body;
    }
    const std::string cmd = absl::StrCat("/usr/bin/promtool check metrics < ", file, " > ", file, ".out 2>&1");
    const int rc = std::system(cmd.c_str());
    std::ifstream in(file + ".out");
    std::stringstream said;
    said << in.rdbuf();
    EXPECT_EQ(rc, 0) << said.str();
  } else {
    std::fprintf(stderr, "promtool not installed: exposition format not checked\n");
  }

  // The override goes to both connected DPs: the hook gets it; the real DP applies it.
  ASSERT_TRUE(WaitFor([&] { return ParseJson(cluster.Admin("GET", "/clustering/data-planes"))["data"].size() == 2; },
                      10s));
  HttpResult set = cluster.Admin("POST", "/upstreams/a.internal/targets/127.0.0.1:2/healthy");
  EXPECT_EQ(set.status, 204) << set.body;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return overrides.size() == 1;
      },
      10s));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(overrides[0].upstream_id, upstream_id);
    EXPECT_EQ(overrides[0].upstream_name, "a.internal");
    EXPECT_EQ(overrides[0].target, "127.0.0.1:2");
    EXPECT_TRUE(overrides[0].healthy);
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(real_dp.process->Log(),
                                 "health override from the control plane: target 127.0.0.1:2 of upstream "
                                 "a.internal set healthy");
      },
      10s))
      << cluster.Logs();
  const json dp_sync = cluster.DpStatus(real_dp)["sync"];
  EXPECT_EQ(dp_sync["health_overrides"], 1) << dp_sync.dump();
  EXPECT_EQ(dp_sync["health_override_failures"], 0) << dp_sync.dump();
  EXPECT_GE(dp_sync["health_reports"], 1) << dp_sync.dump();
  EXPECT_TRUE(absl::StrContains(cluster.cp()->Log(), "sent to 2 data plane(s): dp-hooks, dp-it")) << cluster.Logs();
  EXPECT_EQ(cluster.Admin("POST", "/upstreams/a.internal/targets/127.0.0.1:9/healthy").status, 404);
  (*client)->Stop();
}

}  // namespace
}  // namespace portico::testing
