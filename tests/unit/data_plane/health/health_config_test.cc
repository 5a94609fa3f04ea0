// The healthchecks record compiled for the data plane: Kong's defaults, the CP's normalized form,
// refusals with the field path, and Kong's "checks on" rule.
#include "data_plane/health/health_config.h"

#include "common/config/upstreams.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

TEST(HealthConfigTest, EmptyRecordTakesKongsDefaults) {
  for (const char* text : {"", "{}", "null"}) {
    absl::StatusOr<std::shared_ptr<const HealthConfig>> c = ParseHealthConfig(text);
    ASSERT_TRUE(c.ok()) << text << ": " << c.status();
    const HealthConfig& h = **c;
    EXPECT_EQ(h.active.type, HealthCheckType::kHttp);
    EXPECT_EQ(h.active.timeout, absl::Seconds(1));
    EXPECT_EQ(h.active.concurrency, 10);
    EXPECT_EQ(h.active.http_path, "/");
    EXPECT_TRUE(h.active.https_verify_certificate);
    EXPECT_EQ(h.active.healthy_interval, absl::ZeroDuration());
    EXPECT_EQ(h.active.unhealthy_interval, absl::ZeroDuration());
    EXPECT_TRUE(h.active.healthy_statuses.Contains(200));
    EXPECT_TRUE(h.active.healthy_statuses.Contains(302));
    EXPECT_FALSE(h.active.healthy_statuses.Contains(201));
    for (int s : {429, 404, 500, 501, 502, 503, 504, 505}) EXPECT_TRUE(h.active.unhealthy_statuses.Contains(s)) << s;
    EXPECT_TRUE(h.passive.healthy_statuses.Contains(226));
    EXPECT_TRUE(h.passive.healthy_statuses.Contains(308));
    EXPECT_FALSE(h.passive.healthy_statuses.Contains(404));
    EXPECT_TRUE(h.passive.unhealthy_statuses.Contains(503));
    EXPECT_FALSE(h.passive.unhealthy_statuses.Contains(502));
    EXPECT_EQ(h.passive.limits.tcp_failures, 0u);
    EXPECT_EQ(h.threshold, 0);
    EXPECT_FALSE(h.enabled()) << "all zero: checks off (Kong)";
  }
}

TEST(HealthConfigTest, TheCpsNormalizedDefaultsCompileLikeAnEmptyRecord) {
  absl::StatusOr<std::shared_ptr<const HealthConfig>> normalized = ParseHealthConfig(DefaultUpstreamHealthchecksJson());
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  const HealthConfig defaults;
  EXPECT_EQ((*normalized)->active.timeout, defaults.active.timeout);
  EXPECT_TRUE((*normalized)->active.unhealthy_statuses == defaults.active.unhealthy_statuses);
  EXPECT_TRUE((*normalized)->passive.healthy_statuses == defaults.passive.healthy_statuses);
  EXPECT_FALSE((*normalized)->enabled());
}

TEST(HealthConfigTest, ReadsEveryField) {
  absl::StatusOr<std::shared_ptr<const HealthConfig>> c = ParseHealthConfig(R"({
    "threshold": 33.5,
    "active": {"type": "tcp", "timeout": 0.25, "concurrency": 3, "http_path": "/status",
               "https_sni": "api.example", "https_verify_certificate": false,
               "headers": {"X-A": ["1", "2"], "X-B": ["3"]},
               "healthy": {"interval": 0.5, "http_statuses": [200], "successes": 2},
               "unhealthy": {"interval": 1.5, "http_statuses": [500], "tcp_failures": 3, "timeouts": 4,
                             "http_failures": 5}},
    "passive": {"type": "tcp", "healthy": {"http_statuses": [201], "successes": 6},
                "unhealthy": {"http_statuses": [502], "tcp_failures": 7, "timeouts": 8, "http_failures": 9}}})");
  ASSERT_TRUE(c.ok()) << c.status();
  const HealthConfig& h = **c;
  EXPECT_EQ(h.threshold, 33.5);
  EXPECT_EQ(h.active.type, HealthCheckType::kTcp);
  EXPECT_EQ(h.active.timeout, absl::Milliseconds(250));
  EXPECT_EQ(h.active.concurrency, 3);
  EXPECT_EQ(h.active.http_path, "/status");
  EXPECT_EQ(h.active.https_sni, "api.example");
  EXPECT_FALSE(h.active.https_verify_certificate);
  ASSERT_EQ(h.active.headers.size(), 3u);
  EXPECT_EQ(h.active.headers[1], (std::pair<std::string, std::string>("X-A", "2")));
  EXPECT_EQ(h.active.healthy_interval, absl::Milliseconds(500));
  EXPECT_EQ(h.active.unhealthy_interval, absl::Milliseconds(1500));
  EXPECT_TRUE(h.active.healthy_statuses.Contains(200));
  EXPECT_FALSE(h.active.healthy_statuses.Contains(302)) << "a list replaces the default";
  EXPECT_EQ(h.active.limits.successes, 2u);
  EXPECT_EQ(h.active.limits.tcp_failures, 3u);
  EXPECT_EQ(h.active.limits.timeouts, 4u);
  EXPECT_EQ(h.active.limits.http_failures, 5u);
  EXPECT_EQ(h.passive.type, HealthCheckType::kTcp);
  EXPECT_TRUE(h.passive.healthy_statuses.Contains(201));
  EXPECT_TRUE(h.passive.unhealthy_statuses.Contains(502));
  EXPECT_EQ(h.passive.limits.successes, 6u);
  EXPECT_EQ(h.passive.limits.tcp_failures, 7u);
  EXPECT_EQ(h.passive.limits.timeouts, 8u);
  EXPECT_EQ(h.passive.limits.http_failures, 9u);
  EXPECT_TRUE(h.active_enabled());
  EXPECT_TRUE(h.passive_enabled());
}

TEST(HealthConfigTest, OnWhenAnIntervalOrAPassiveFailureLimitIsSet) {
  EXPECT_TRUE((*ParseHealthConfig(R"({"active":{"unhealthy":{"interval":1}}})"))->enabled());
  EXPECT_TRUE((*ParseHealthConfig(R"({"passive":{"unhealthy":{"timeouts":1}}})"))->enabled());
  EXPECT_FALSE((*ParseHealthConfig(R"({"active":{"unhealthy":{"tcp_failures":3}}})"))->enabled())
      << "limits without an interval: nothing probes";
  EXPECT_FALSE((*ParseHealthConfig(R"({"passive":{"healthy":{"successes":3}}})"))->enabled());
}

TEST(HealthConfigTest, RefusesBadRecordsNamingTheField) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"{", "healthchecks: not valid JSON"},
      {"[1]", "healthchecks: expected a record"},
      {R"({"active": 3})", "healthchecks.active: expected a record"},
      {R"({"active": {"timeout": "1"}})", "healthchecks.active.timeout: expected a number"},
      {R"({"active": {"timeout": -1}})", "healthchecks.active.timeout: value should be between 0 and 65535"},
      {R"({"active": {"type": "udp"}})", "healthchecks.active.type: expected one of: tcp, http, https, grpc, grpcs"},
      {R"({"active": {"concurrency": 0}})", "healthchecks.active.concurrency: value should be between 1 and 2147483648"},
      {R"({"active": {"http_path": "x"}})", "healthchecks.active.http_path: should start with: /"},
      {R"({"active": {"headers": {"X": [1]}}})", "healthchecks.active.headers: 'X': expected an array of strings"},
      {R"({"active": {"healthy": {"successes": 256}}})",
       "healthchecks.active.healthy.successes: value should be between 0 and 255"},
      {R"({"passive": {"unhealthy": {"tcp_failures": 1.5}}})",
       "healthchecks.passive.unhealthy.tcp_failures: expected an integer"},
      {R"({"passive": {"unhealthy": {"http_statuses": [99]}}})",
       "healthchecks.passive.unhealthy.http_statuses: expected integers between 100 and 999"},
      {R"({"threshold": 101})", "healthchecks.threshold: value should be between 0 and 100"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::shared_ptr<const HealthConfig>> parsed = ParseHealthConfig(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(parsed.status().message(), c.message) << c.text;
  }
}

}  // namespace
}  // namespace portico::dp
