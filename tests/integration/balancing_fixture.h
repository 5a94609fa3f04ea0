#pragma once
// The fixture of the load-balancing and health-check tests: a real CP and one DP, Admin API calls
// that must answer a given status, targets on loopback echo upstreams, and which upstream answered
// a run of requests.
#include <cstdio>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/http_wire.h"
#include "tests/integration/cluster.h"

namespace portico::testing {

class BalancingFixture : public ::testing::Test {
 protected:
  using json = nlohmann::json;

  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    dp_ = &cluster_.StartDp();
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }
  void Admin(const std::string& method, const std::string& path, const json& body, int status) {
    HttpResult r = cluster_.Admin(method, path, body);
    ASSERT_EQ(r.status, status) << method << " " << path << " " << body.dump() << " -> " << r.body;
  }
  void AddTarget(const std::string& upstream, uint16_t port, int weight = 100) {
    Admin("POST", absl::StrCat("/upstreams/", upstream, "/targets"),
          {{"target", absl::StrCat("127.0.0.1:", port)}, {"weight", weight}}, 201);
  }
  // Which echo upstream answered `count` sequential requests on one keep-alive connection (one
  // worker, so per-worker balancer state is deterministic): "status N" for other answers, "error"
  // once when the connection failed.
  std::map<std::string, int> Spread(const std::string& path, int count, const std::string& extra_header = "") {
    std::map<std::string, int> seen;
    test_support::RawHttpClient client(dp_->proxy_port);
    for (int i = 0; i < count; ++i) {
      if (!client.Send(absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\n", extra_header, "\r\n"))) {
        ++seen["error"];
        break;
      }
      test_support::HttpReply reply = client.ReadResponse();
      if (!reply.ok) {
        ++seen["error"];
        break;
      }
      ++seen[reply.status == 200 ? reply.Header("X-Upstream") : absl::StrCat("status ", reply.status)];
    }
    return seen;
  }

  Cluster cluster_;
  DataPlane* dp_ = nullptr;
};

}  // namespace portico::testing
