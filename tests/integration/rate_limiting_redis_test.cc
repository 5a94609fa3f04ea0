// rate-limiting with policy redis end to end: two real DPs of one CP share their counters through
// a real redis-server; Redis killed mid-test (fault_tolerant: requests go on without limit
// headers; without it: 500) and started again (limiting resumes).
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"
#include "tests/integration/redis_server.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr int kLimit = 5;  // per day: no window ends during a test, except at midnight UTC

class RedisRateLimitingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis_.Start()) << redis_.error();
    std::string log;
    ASSERT_TRUE(GenerateCerts(cluster_.certs(), "dp-2", &log)) << log;
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    dp1_ = &cluster_.StartDp();
    dp2_ = &cluster_.StartDp({.cert = cluster_.certs() + "/dp-2.crt", .key = cluster_.certs() + "/dp-2.key",
                              .log_name = "dp2.log"});
    ASSERT_TRUE(dp1_->started && dp2_->started) << cluster_.Logs();
    const std::string url = absl::StrCat("http://127.0.0.1:", upstream_.port());
    ASSERT_EQ(cluster_.Admin("POST", "/services", {{"name", "s1"}, {"url", url}}).status, 201);
    for (const char* route : {"limited", "strict", "other"}) {
      HttpResult r = cluster_.Admin("POST", "/services/s1/routes",
                                    {{"name", route}, {"paths", {absl::StrCat("/", route)}}});
      ASSERT_EQ(r.status, 201) << r.body;
    }
    for (const auto& [route, fault_tolerant] : {std::pair{"limited", true}, {"strict", false}}) {
      json plugin = {{"name", "rate-limiting"},
                     {"config",
                      {{"day", kLimit},
                       {"policy", "redis"},
                       {"limit_by", "ip"},
                       {"fault_tolerant", fault_tolerant},
                       {"redis", {{"host", "127.0.0.1"}, {"port", redis_.port()}, {"timeout", 1000}}}}}};
      HttpResult r = cluster_.Admin("POST", absl::StrCat("/routes/", route, "/plugins"), plugin);
      ASSERT_EQ(r.status, 201) << r.body;
    }
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp1_)) << cluster_.DpStatus(*dp1_).dump();
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp2_)) << cluster_.DpStatus(*dp2_).dump();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }
  HttpResult Get(const DataPlane& dp, const std::string& path) { return cluster_.Proxy(dp, path); }
  // The day count Redis holds for the one rate-limited route and client (-1: none yet).
  int StoredDayCount() const {
    const std::string keys = redis_.Command("KEYS ratelimit:*:day");
    const size_t start = keys.find("ratelimit:");
    if (start == std::string::npos) return -1;
    const std::string key = keys.substr(start, keys.find("\r\n", start) - start);
    const std::string value = redis_.Command("GET " + key);  // "$1\r\n3\r\n"
    const size_t line = value.find("\r\n");
    int count = -1;
    if (line == std::string::npos || !absl::SimpleAtoi(value.substr(line + 2, value.find("\r\n", line + 2) - line - 2), &count)) {
      return -1;
    }
    return count;
  }
  static std::string Remaining(HttpResult& r) {
    auto it = r.headers.find("x-ratelimit-remaining-day");
    return it == r.headers.end() ? "<none>" : it->second;
  }

  RedisServer redis_;
  EchoUpstream upstream_;
  Cluster cluster_;
  DataPlane* dp1_ = nullptr;
  DataPlane* dp2_ = nullptr;
};

TEST_F(RedisRateLimitingTest, TwoDataPlanesShareOneLimitThroughRedis) {
  int allowed = 0, limited = 0;
  for (int i = 0; i < 2 * kLimit; ++i) {
    HttpResult r = Get(i % 2 == 0 ? *dp1_ : *dp2_, "/limited");
    if (r.status == 200) {
      ++allowed;
      EXPECT_EQ(Remaining(r), std::to_string(kLimit - allowed)) << "request " << i << ": one count for both DPs";
      EXPECT_EQ(r.headers["x-ratelimit-limit-day"], std::to_string(kLimit));
      // The INCRBY is pipelined after the answer (Kong's redis policy reads the usage, then
      // increments): the next request, through the other DP, may read the usage before it lands.
      ASSERT_TRUE(WaitFor([&] { return StoredDayCount() == allowed; }, 2s)) << StoredDayCount();
    } else {
      EXPECT_EQ(r.status, 429) << r.body;
      EXPECT_EQ(json::parse(r.body, nullptr, false), json({{"message", "API rate limit exceeded"}}));
      EXPECT_FALSE(r.headers["retry-after"].empty());
      ++limited;
    }
  }
  EXPECT_EQ(allowed, kLimit) << "the total allowed through both DPs is the limit";
  EXPECT_EQ(limited, kLimit);
  EXPECT_EQ(upstream_.requests_served(), kLimit);
  // Kong's key: ratelimit:<route>:<service>:<identifier>:<window start ms>:day.
  const std::string keys = redis_.Command("KEYS ratelimit:*");
  EXPECT_NE(keys.find(":127.0.0.1:"), std::string::npos) << keys;
  EXPECT_NE(keys.find(":day"), std::string::npos) << keys;
}

TEST_F(RedisRateLimitingTest, RedisKilledThenStartedAgain) {
  HttpResult warm = Get(*dp1_, "/limited");
  ASSERT_EQ(warm.status, 200);
  ASSERT_EQ(Remaining(warm), std::to_string(kLimit - 1));
  ASSERT_EQ(Get(*dp2_, "/strict").status, 200);

  redis_.Kill();
  // More requests than the limit: none is limited (nothing can be counted), none has headers.
  int failures = 0;
  for (int i = 0; i < 2 * kLimit; ++i) {
    DataPlane& dp = i % 2 == 0 ? *dp1_ : *dp2_;
    HttpResult tolerant = Get(dp, "/limited");
    EXPECT_EQ(tolerant.status, 200) << i << " " << tolerant.body;
    EXPECT_EQ(Remaining(tolerant), "<none>") << i;
    EXPECT_EQ(tolerant.headers.count("ratelimit-limit"), 0u) << i;
    HttpResult strict = Get(dp, "/strict");
    EXPECT_EQ(strict.status, 500) << i;
    EXPECT_EQ(json::parse(strict.body, nullptr, false), json({{"message", "An unexpected error occurred"}}));
    EXPECT_EQ(Get(dp, "/other").status, 200) << "other routes are served";
    failures += 2;
  }
  EXPECT_TRUE(dp1_->process->Running() && dp2_->process->Running());
  // The error is logged, but not once per request.
  for (const DataPlane* dp : {dp1_, dp2_}) {
    int lines = 0;
    for (absl::string_view line : absl::StrSplit(dp->process->Log(), '\n')) {
      lines += absl::StrContains(line, "Redis 127.0.0.1:") && absl::StrContains(line, "rate-limiting") ? 1 : 0;
    }
    EXPECT_GE(lines, 1);
    EXPECT_LT(lines, failures / 2) << dp->process->Log();
  }

  ASSERT_TRUE(redis_.Start()) << redis_.error();  // same port, no data (persistence is off)
  // Each DP worker reconnects after its backoff (at most 2 s): wait until counting shows again.
  std::string first_remaining;
  ASSERT_TRUE(WaitFor(
      [&] {
        HttpResult r = Get(*dp1_, "/limited");
        first_remaining = Remaining(r);
        return r.status == 200 && first_remaining != "<none>";
      },
      15s));
  EXPECT_EQ(first_remaining, std::to_string(kLimit - 1)) << "counting from the restarted, empty Redis";
  int allowed = 1, limited = 0;
  // Each count lands in Redis after its answer (the pipelined INCRBY): wait for it before the
  // next request, which may go through the other DP.
  ASSERT_TRUE(WaitFor([&] { return StoredDayCount() == allowed; }, 2s)) << StoredDayCount();
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (limited == 0 && std::chrono::steady_clock::now() < deadline) {
    // dp2's workers may still be in their backoff: a 200 without headers is not counted.
    HttpResult r = Get(allowed % 2 == 0 ? *dp1_ : *dp2_, "/limited");
    if (r.status == 429) {
      ++limited;
    } else if (r.status == 200 && Remaining(r) != "<none>") {
      ++allowed;
      ASSERT_TRUE(WaitFor([&] { return StoredDayCount() == allowed; }, 2s)) << StoredDayCount();
    } else if (r.status != 200) {
      ADD_FAILURE() << r.status << " " << r.body;
      break;
    }
  }
  EXPECT_EQ(allowed, kLimit);
  EXPECT_EQ(limited, 1) << "limiting resumed";
}

}  // namespace
}  // namespace portico::testing
