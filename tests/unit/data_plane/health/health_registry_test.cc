// Target health records: Kong's consecutive counters, state changes, what survives a recompile,
// the report and the manual override.
#include "data_plane/health/health_registry.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

constexpr char kOn[] = R"({"passive":{"unhealthy":{"tcp_failures":3,"timeouts":2,"http_failures":2}}})";

HealthLimits Limits(uint32_t successes, uint32_t tcp, uint32_t timeouts, uint32_t http) {
  HealthLimits l;
  l.successes = successes;
  l.tcp_failures = tcp;
  l.timeouts = timeouts;
  l.http_failures = http;
  return l;
}

HealthTarget Entry(HealthRegistry& registry, const std::string& upstream_id, const std::string& upstream_name,
                   const std::string& target, const std::string& config) {
  HealthTarget t;
  t.upstream_id = upstream_id;
  t.upstream_name = upstream_name;
  t.target = target;
  t.config = *ParseHealthConfig(config);
  t.record = registry.Acquire(upstream_id, upstream_name, target, config);
  return t;
}

TEST(TargetHealthTest, FailuresCountUntilASuccessAndEachKindHasItsOwnCount) {
  HealthRegistry registry;
  std::shared_ptr<TargetHealth> r = registry.Acquire("u1", "api", "10.0.0.1:80", kOn);
  const HealthLimits limits = Limits(0, 3, 2, 2);
  r->Report(HealthEvent::kTcpFailure, limits, "passive");
  r->Report(HealthEvent::kTcpFailure, limits, "passive");
  EXPECT_EQ(r->count(HealthEvent::kTcpFailure), 2u);
  // Another failure kind keeps the tcp count (lua-resty-healthcheck resets only successes on a
  // failure): a target alternating refused and timed-out attempts still reaches a limit.
  r->Report(HealthEvent::kTimeout, limits, "passive");
  EXPECT_EQ(r->count(HealthEvent::kTcpFailure), 2u);
  EXPECT_EQ(r->count(HealthEvent::kTimeout), 1u);
  r->Report(HealthEvent::kSuccess, limits, "passive");  // a success ends every failure streak
  EXPECT_EQ(r->count(HealthEvent::kTimeout), 0u);
  EXPECT_TRUE(r->healthy());
  r->Report(HealthEvent::kTcpFailure, limits, "passive");
  r->Report(HealthEvent::kTcpFailure, limits, "passive");
  EXPECT_TRUE(r->healthy());
  r->Report(HealthEvent::kTcpFailure, limits, "passive");
  EXPECT_FALSE(r->healthy()) << "3 consecutive tcp failures";
  EXPECT_EQ(r->count(HealthEvent::kTcpFailure), 0u) << "a state change zeroes the counters";
}

TEST(TargetHealthTest, AZeroLimitNeverChangesTheState) {
  HealthRegistry registry;
  std::shared_ptr<TargetHealth> r = registry.Acquire("u1", "api", "10.0.0.1:80", kOn);
  for (int i = 0; i < 300; ++i) r->Report(HealthEvent::kHttpFailure, Limits(0, 1, 1, 0), "passive", 500);
  EXPECT_TRUE(r->healthy());
  EXPECT_EQ(r->count(HealthEvent::kHttpFailure), 0u) << "a kind that is not checked is not counted";
}

TEST(TargetHealthTest, PassiveChecksNeverBringATargetBackWithKongsDefaults) {
  HealthRegistry registry;
  std::shared_ptr<TargetHealth> r = registry.Acquire("u1", "api", "10.0.0.1:80", kOn);
  const HealthLimits passive = Limits(/*successes=*/0, 1, 1, 1);
  r->Report(HealthEvent::kTimeout, passive, "passive");
  ASSERT_FALSE(r->healthy());
  for (int i = 0; i < 100; ++i) r->Report(HealthEvent::kSuccess, passive, "passive");
  EXPECT_FALSE(r->healthy()) << "passive healthy.successes 0: successes do not count";
  // Active checks with healthy.successes 2 do, counting consecutive successes.
  const HealthLimits active = Limits(2, 1, 1, 1);
  r->Report(HealthEvent::kSuccess, active, "active");
  EXPECT_EQ(r->count(HealthEvent::kSuccess), 1u);
  r->Report(HealthEvent::kHttpFailure, active, "active", 500);  // the streak ends
  EXPECT_EQ(r->count(HealthEvent::kSuccess), 0u);
  EXPECT_FALSE(r->healthy());
  r->Report(HealthEvent::kSuccess, active, "active");
  EXPECT_FALSE(r->healthy());
  r->Report(HealthEvent::kSuccess, active, "active");
  EXPECT_TRUE(r->healthy());
}

TEST(TargetHealthTest, ConcurrentReportsFromManyThreadsFlipOnce) {
  HealthRegistry registry;
  std::atomic<int> changes{0};
  registry.SetOnChange([&changes] { ++changes; });
  std::shared_ptr<TargetHealth> r = registry.Acquire("u1", "api", "10.0.0.1:80", kOn);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r] {
      for (int i = 0; i < 10000; ++i) r->Report(HealthEvent::kTcpFailure, Limits(0, 200, 0, 0), "passive");
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_FALSE(r->healthy());
  EXPECT_EQ(changes.load(), 1);
  EXPECT_EQ(registry.epoch().load(), 1u);
}

TEST(HealthRegistryTest, RecordsSurviveARecompileUnlessTheirConfigChanges) {
  HealthRegistry registry;
  HealthTarget a = Entry(registry, "u1", "api", "10.0.0.1:80", kOn);
  HealthTarget b = Entry(registry, "u1", "api", "10.0.0.2:80", kOn);
  std::shared_ptr<TargetHealth> a_record = a.record, b_record = b.record;
  registry.Install({a, b});
  a_record->Set(false, "test");
  // The next snapshot: the same upstream and config get the same records (state kept).
  EXPECT_EQ(registry.Acquire("u1", "api", "10.0.0.1:80", kOn), a_record);
  EXPECT_FALSE(registry.Acquire("u1", "api", "10.0.0.1:80", kOn)->healthy());
  // Another healthchecks record, or a renamed upstream: a fresh record.
  const std::string other = R"({"passive":{"unhealthy":{"tcp_failures":5}}})";
  std::shared_ptr<TargetHealth> changed = registry.Acquire("u1", "api", "10.0.0.1:80", other);
  EXPECT_NE(changed, a_record);
  EXPECT_TRUE(changed->healthy());
  EXPECT_NE(registry.Acquire("u1", "api2", "10.0.0.1:80", kOn), a_record);
  // A snapshot without b: its record is dropped, a target coming back starts afresh.
  registry.Install({Entry(registry, "u1", "api", "10.0.0.1:80", kOn)});
  EXPECT_NE(registry.Acquire("u1", "api", "10.0.0.2:80", kOn), b_record);
  EXPECT_EQ(registry.Acquire("u1", "api", "10.0.0.1:80", kOn), a_record);
}

TEST(HealthRegistryTest, ReportGivesEachTargetsStateOrHealthchecksOff) {
  HealthRegistry registry;
  HealthTarget a = Entry(registry, "u1", "zeta", "10.0.0.1:80", kOn);
  HealthTarget b = Entry(registry, "u1", "zeta", "10.0.0.2:80", kOn);
  HealthTarget c = Entry(registry, "u2", "alpha", "10.0.0.3:80", "{}");
  b.record->Set(false, "test");
  c.record->Set(false, "test");
  registry.Install({a, b, c});
  std::vector<TargetHealthReport> report = registry.Report();
  ASSERT_EQ(report.size(), 3u);
  EXPECT_EQ(report[0].upstream_name, "alpha");
  EXPECT_EQ(report[0].upstream_id, "u2");
  EXPECT_EQ(report[0].target, "10.0.0.3:80");
  EXPECT_EQ(TargetHealthName(report[0].health), "HEALTHCHECKS_OFF");
  EXPECT_EQ(TargetHealthName(report[1].health), "HEALTHY");
  EXPECT_EQ(report[1].target, "10.0.0.1:80");
  EXPECT_EQ(TargetHealthName(report[2].health), "UNHEALTHY");
  EXPECT_EQ(TargetHealthName(TargetHealthState::kDnsError), "DNS_ERROR");
}

TEST(HealthRegistryTest, SetManualByIdOrNameResetsCountersAndNotifies) {
  HealthRegistry registry;
  int changes = 0;
  registry.SetOnChange([&changes] { ++changes; });
  HealthTarget a = Entry(registry, "u1", "api", "10.0.0.1:8000", kOn);
  HealthTarget off = Entry(registry, "u2", "plain", "10.0.0.2:8000", "{}");
  registry.Install({a, off});
  a.record->Report(HealthEvent::kTcpFailure, Limits(0, 3, 0, 0), "passive");
  EXPECT_TRUE(registry.SetManual("api", "10.0.0.1:8000", false).ok());
  EXPECT_FALSE(a.record->healthy());
  EXPECT_EQ(changes, 1);
  EXPECT_TRUE(registry.SetManual("u1", "10.0.0.1", true).ok()) << "Kong's forms of a target: port 8000 implied";
  EXPECT_TRUE(a.record->healthy());
  EXPECT_EQ(a.record->count(HealthEvent::kTcpFailure), 0u);
  EXPECT_EQ(changes, 2);
  EXPECT_TRUE(registry.SetManual("api", "10.0.0.1:8000", true).ok());
  EXPECT_EQ(changes, 2) << "no change, no notification";
  EXPECT_EQ(registry.SetManual("api", "10.0.0.9:8000", false).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.SetManual("nope", "10.0.0.1:8000", false).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.SetManual("plain", "10.0.0.2:8000", false).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace portico::dp
