// The ring-balancer's picks: weighted round-robin (share and smoothness), consistent hashing
// (stability when a target comes or goes), least-connections, retries avoiding tried targets.
#include "data_plane/balancer/balancer.h"

#include <uv.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

using config::v1::Target;
using config::v1::Upstream;

Upstream MakeUpstream(const std::string& algorithm, int slots = 10000) {
  Upstream u;
  u.set_id("00000000-0000-4000-8000-000000000001");
  u.set_name("backend");
  u.set_algorithm(algorithm);
  u.set_hash_on(algorithm == "consistent-hashing" ? "header" : "none");
  u.set_hash_on_header("X-Key");
  u.set_hash_fallback("none");
  u.set_slots(slots);
  return u;
}

struct Targets {
  std::vector<Target> owned;
  void Add(const std::string& address, int weight) {
    Target t;
    t.set_id(absl::StrCat("t", owned.size()));
    t.set_upstream_id("00000000-0000-4000-8000-000000000001");
    t.set_target(address);
    t.set_weight(weight);
    owned.push_back(t);
  }
  std::vector<const Target*> Pointers() const {
    std::vector<const Target*> out;
    for (const Target& t : owned) out.push_back(&t);
    return out;
  }
};

std::unique_ptr<const Balancer> Build(const Upstream& u, const Targets& targets, int workers = 1) {
  absl::StatusOr<std::unique_ptr<const Balancer>> b = Balancer::Compile(u, targets.Pointers(), workers);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? *std::move(b) : nullptr;
}

std::string NameOf(const Balancer& b, int picked) { return picked < 0 ? "<none>" : b.target(picked).name; }

TEST(BalancerTest, RoundRobinFollowsTheWeightsWithoutBursts) {
  Targets t;
  t.Add("10.0.0.1:8000", 100);
  t.Add("10.0.0.2:8000", 200);
  t.Add("10.0.0.3:8000", 300);
  auto b = Build(MakeUpstream("round-robin"), t);
  ASSERT_NE(b, nullptr);
  std::map<std::string, int> counts;
  std::string previous;
  int longest_run = 0, run = 0;
  for (int i = 0; i < 6000; ++i) {
    const std::string name = NameOf(*b, b->Pick(0, 0, {}));
    ++counts[name];
    run = name == previous ? run + 1 : 1;
    longest_run = std::max(longest_run, run);
    previous = name;
  }
  EXPECT_EQ(counts["10.0.0.1:8000"], 1000);
  EXPECT_EQ(counts["10.0.0.2:8000"], 2000);
  EXPECT_EQ(counts["10.0.0.3:8000"], 3000);
  EXPECT_LE(longest_run, 2) << "smooth: the heaviest target never gets a burst";
}

TEST(BalancerTest, WeightZeroHostnamesAndEmptyUpstreamsTakeNoTraffic) {
  Targets t;
  t.Add("10.0.0.1:8000", 0);
  t.Add("backend.internal:8000", 0);  // a hostname of weight 0: no traffic either
  auto b = Build(MakeUpstream("round-robin"), t);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->Pick(0, 0, {}), Balancer::kNoTarget);
  auto empty = Build(MakeUpstream("least-connections"), Targets());
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->Pick(0, 0, {}), Balancer::kNoTarget);
  t.Add("[::1]:9000", 5);
  t.Add("localhost", 5);
  auto some = Build(MakeUpstream("round-robin"), t);
  ASSERT_NE(some, nullptr);
  std::map<std::string, int> counts;
  for (int i = 0; i < 10; ++i) ++counts[some->target(some->Pick(0, 0, {})).address.pool_key];
  EXPECT_EQ(counts, (std::map<std::string, int>{{"127.0.0.1:8000", 5}, {"[::1]:9000", 5}}));
}

TEST(BalancerTest, HostnameTargetsTakeTrafficAndCarryTheirNameForTheResolver) {
  Targets t;
  t.Add("Backend.Internal.:8001", 100);  // resolved per worker (data_plane/dns)
  t.Add("10.0.0.1:8000", 100);
  auto b = Build(MakeUpstream("round-robin"), t);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->eligible_count(), 2u);
  std::map<std::string, int> counts;
  for (int i = 0; i < 10; ++i) {
    const BalancerTarget& picked = b->target(b->Pick(0, 0, {}));
    ++counts[picked.dns_name.empty() ? picked.address.pool_key : picked.dns_name + ":" + std::to_string(picked.dns_port)];
  }
  EXPECT_EQ(counts, (std::map<std::string, int>{{"10.0.0.1:8000", 5}, {"backend.internal:8001", 5}}));
  for (size_t i = 0; i < b->size(); ++i) {
    if (!b->target(i).dns_name.empty()) EXPECT_EQ(b->target(i).host_header, "Backend.Internal.:8001");
  }
}

TEST(BalancerTest, RetriesAvoidTriedTargetsWhileAnotherCanTakeTraffic) {
  Targets t;
  t.Add("10.0.0.1:8000", 100);
  t.Add("10.0.0.2:8000", 100);
  t.Add("10.0.0.3:8000", 100);
  for (const char* algorithm : {"round-robin", "consistent-hashing", "least-connections"}) {
    auto b = Build(MakeUpstream(algorithm), t);
    ASSERT_NE(b, nullptr);
    const uint64_t key = Balancer::HashKey("user-7");
    std::vector<uint32_t> tried;
    for (int attempt = 0; attempt < 3; ++attempt) {
      const int picked = b->Pick(0, key, tried);
      ASSERT_GE(picked, 0);
      EXPECT_EQ(std::count(tried.begin(), tried.end(), static_cast<uint32_t>(picked)), 0) << algorithm;
      tried.push_back(static_cast<uint32_t>(picked));
    }
    EXPECT_GE(b->Pick(0, key, tried), 0) << algorithm << ": every target tried: one is used again";
  }
}

TEST(BalancerTest, ConsistentHashingMovesOnlyTheKeysOfATargetAddedOrRemoved) {
  Targets three;
  three.Add("10.0.0.1:8000", 100);
  three.Add("10.0.0.2:8000", 100);
  three.Add("10.0.0.3:8000", 100);
  Targets four = three;
  four.Add("10.0.0.4:8000", 100);
  auto before = Build(MakeUpstream("consistent-hashing"), three);
  auto after = Build(MakeUpstream("consistent-hashing"), four);
  ASSERT_NE(before, nullptr);
  ASSERT_NE(after, nullptr);
  constexpr int kKeys = 20000;
  int moved = 0, moved_elsewhere = 0;
  std::map<std::string, int> share;
  for (int k = 0; k < kKeys; ++k) {
    const uint64_t h = Balancer::HashKey(absl::StrCat("key-", k));
    const std::string a = NameOf(*before, before->Pick(0, h, {}));
    const std::string b = NameOf(*after, after->Pick(0, h, {}));
    EXPECT_EQ(a, NameOf(*before, before->Pick(0, h, {}))) << "the same key, the same target";
    ++share[b];
    if (a != b) {
      ++moved;
      if (b != "10.0.0.4:8000") ++moved_elsewhere;
    }
  }
  // The new target takes about a quarter, and keys move only to it.
  EXPECT_NEAR(moved, kKeys / 4, kKeys / 20);
  EXPECT_EQ(moved_elsewhere, 0);
  for (const auto& [name, n] : share) EXPECT_NEAR(n, kKeys / 4, kKeys / 20) << name;
  // Removing it again gives every key its old target back.
  auto again = Build(MakeUpstream("consistent-hashing"), three);
  for (int k = 0; k < 1000; ++k) {
    const uint64_t h = Balancer::HashKey(absl::StrCat("key-", k));
    EXPECT_EQ(NameOf(*again, again->Pick(0, h, {})), NameOf(*before, before->Pick(0, h, {})));
  }
}

TEST(BalancerTest, HashKeyIsStableAcrossProcesses) {
  // Fixed values: every DP (and every build) must send a key to the same target.
  EXPECT_NE(Balancer::HashKey("user-7"), Balancer::HashKey("user-8"));
  EXPECT_EQ(Balancer::HashKey("user-7"), 11390250626036819534ULL);
}

TEST(BalancerTest, LeastConnectionsPrefersFewestOpenAttemptsPerWeight) {
  Targets t;
  t.Add("10.0.0.1:8000", 100);
  t.Add("10.0.0.2:8000", 300);
  auto b = Build(MakeUpstream("least-connections"), t, /*workers=*/2);
  ASSERT_NE(b, nullptr);
  std::map<std::string, int> open;
  std::vector<int> held;
  for (int i = 0; i < 8; ++i) {  // none released: 2 to the first, 6 to the heavier one
    const int picked = b->Pick(0, 0, {});
    ++open[NameOf(*b, picked)];
    held.push_back(picked);
  }
  EXPECT_EQ(open["10.0.0.1:8000"], 2);
  EXPECT_EQ(open["10.0.0.2:8000"], 6);
  // Releasing the heavier target's attempts sends the next ones there.
  for (int picked : held) {
    if (NameOf(*b, picked) == "10.0.0.2:8000") b->Release(0, picked);
  }
  EXPECT_EQ(NameOf(*b, b->Pick(0, 0, {})), "10.0.0.2:8000");
}

TEST(BalancerTest, LeastConnectionsCountsEachWorkersOwnAttempts) {
  Targets t;
  t.Add("10.0.0.1:8000", 100);
  t.Add("10.0.0.2:8000", 200);
  auto b = Build(MakeUpstream("least-connections"), t, /*workers=*/2);
  ASSERT_NE(b, nullptr);
  // Worker 0: the lighter load per weight each time: .2, .2 (tie, taken in turn), .1, .2.
  std::vector<int> picks;
  for (int i = 0; i < 4; ++i) picks.push_back(b->Pick(0, 0, {}));
  ASSERT_EQ(NameOf(*b, picks[2]), "10.0.0.1:8000");
  b->Release(0, picks[2]);  // worker 0 now has 0 open on .1 and 3 on .2
  EXPECT_EQ(NameOf(*b, b->Pick(0, 0, {})), "10.0.0.1:8000");
  // Worker 1 has none open: the heavier target is the lighter load for it.
  EXPECT_EQ(NameOf(*b, b->Pick(1, 0, {})), "10.0.0.2:8000");
}

TEST(BalancerTest, LatencyPrefersTheFasterTargetAndForgetsAnOldPeak) {
  Targets t;
  t.Add("10.0.0.1:8000", 100);
  t.Add("10.0.0.2:8000", 100);
  t.Add("10.0.0.3:8000", 100);
  auto b = Build(MakeUpstream("latency"), t);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(b->algorithm(), Balancer::Algorithm::kLatency);
  const uint64_t ms = 1000000;
  uint64_t now = 1000 * ms;
  // Targets sorted by name: 0 = .1 answers in 20 ms, 1 = .2 in 1 ms, 2 = .3 in 5 ms.
  const uint64_t answer_ns[] = {20 * ms, 1 * ms, 5 * ms};
  for (int target = 0; target < 3; ++target) b->RecordLatency(0, target, answer_ns[target], now);
  std::map<std::string, int> picks;
  for (int i = 0; i < 3000; ++i) {
    now += ms;
    const int picked = b->Pick(0, 0, {}, now);
    ASSERT_GE(picked, 0);
    ++picks[NameOf(*b, picked)];
    b->RecordLatency(0, picked, answer_ns[picked], now);
    b->Release(0, picked);
  }
  // Two random candidates: the fastest wins every draw it is in (2/3 of them), the slowest none.
  EXPECT_GT(picks["10.0.0.2:8000"], 1800) << picks["10.0.0.2:8000"];
  EXPECT_EQ(picks["10.0.0.1:8000"], 0);
  // A peak is taken at once: the fast target turns slow for one answer and loses its place.
  b->RecordLatency(0, 1, 200 * ms, now);
  picks.clear();
  for (int i = 0; i < 100; ++i) {
    const int picked = b->Pick(0, 0, {}, now + 1);
    ++picks[NameOf(*b, picked)];
    b->Release(0, picked);
  }
  EXPECT_EQ(picks["10.0.0.2:8000"], 0);
  // Without answers the estimates decay toward 0, so a target slow long ago is tried again.
  const uint64_t later = now + 60000 * ms;
  b->RecordLatency(0, 2, 5 * ms, later);  // .3 still answers in 5 ms
  picks.clear();
  for (int i = 0; i < 100; ++i) {
    const int picked = b->Pick(0, 0, {}, later + 1);
    ++picks[NameOf(*b, picked)];
    b->Release(0, picked);
  }
  EXPECT_GT(picks["10.0.0.1:8000"] + picks["10.0.0.2:8000"], 50) << "old peaks forgotten";
}

TEST(BalancerTest, LatencyCountsOpenAttemptsAndAvoidsTriedTargets) {
  Targets t;
  t.Add("10.0.0.1:8000", 100);
  t.Add("10.0.0.2:8000", 100);
  auto b = Build(MakeUpstream("latency"), t);
  ASSERT_NE(b, nullptr);
  const uint64_t now = 5000000000ULL;
  b->RecordLatency(0, 0, 1000000, now);
  b->RecordLatency(0, 1, 1500000, now);
  // Scores are latency x (open attempts + 1): 1 ms x 1 < 1.5 ms x 1, then 1 ms x 2 > 1.5 ms x 1,
  // then 1 ms x 2 < 1.5 ms x 2.
  EXPECT_EQ(b->Pick(0, 0, {}, now), 0);
  EXPECT_EQ(b->Pick(0, 0, {}, now), 1);
  EXPECT_EQ(b->Pick(0, 0, {}, now), 0);
  b->Release(0, 0);  // open: 1 on target 0, 1 on target 1: target 0 is better
  const uint32_t tried[] = {0};
  EXPECT_EQ(b->Pick(0, 0, tried, now), 1) << "a retry goes to another target";
}

TEST(BalancerTest, AFailedAttemptCountsAsASlowAnswerForLatency) {
  Targets t;
  t.Add("10.0.0.1:8000", 100);
  t.Add("10.0.0.2:8000", 100);
  auto b = Build(MakeUpstream("latency"), t);
  ASSERT_NE(b, nullptr);
  const uint64_t picked = uv_hrtime();
  b->AttemptFailed(0, 0, HealthEvent::kTcpFailure, picked);  // refused at once
  b->AttemptAnswered(0, 1, 200, picked);                       // answered at once
  // Both took about no time; the failure counts as a 1 s answer, so the live target wins.
  for (int i = 0; i < 20; ++i) {
    const int chosen = b->Pick(0, 0, {});
    EXPECT_EQ(NameOf(*b, chosen), "10.0.0.2:8000");
    b->Release(0, chosen);
  }
}

TEST(BalancerTest, WorkersStartAtDifferentPlacesOfTheSequence) {
  Targets t;
  for (int i = 1; i <= 4; ++i) t.Add(absl::StrCat("10.0.0.", i, ":8000"), 100);
  auto b = Build(MakeUpstream("round-robin"), t, /*workers=*/4);
  ASSERT_NE(b, nullptr);
  std::map<int, int> first;
  for (int w = 0; w < 4; ++w) ++first[b->Pick(w, 0, {})];
  EXPECT_EQ(first.size(), 4u) << "four workers' first requests go to four targets";
}


// ---- health (data_plane/health/): picks skip unhealthy targets when the upstream's checks are on

constexpr char kPassiveOn[] = R"({"passive":{"unhealthy":{"tcp_failures":1,"http_failures":1}}})";

Upstream WithChecks(Upstream u, const std::string& healthchecks) {
  u.set_healthchecks(healthchecks);
  return u;
}

std::unique_ptr<const Balancer> BuildChecked(const Upstream& u, const Targets& targets, HealthRegistry* registry,
                                             int workers = 1) {
  absl::StatusOr<std::unique_ptr<const Balancer>> b = Balancer::Compile(u, targets.Pointers(), workers, registry);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? *std::move(b) : nullptr;
}

int IndexOf(const Balancer& b, const std::string& name) {
  for (size_t i = 0; i < b.size(); ++i) {
    if (b.target(i).name == name) return static_cast<int>(i);
  }
  return -1;
}

void SetHealthy(const Balancer& b, const std::string& name, bool healthy) {
  b.target(static_cast<size_t>(IndexOf(b, name))).health->Set(healthy, "test");
}

Targets ThreeTargets() {
  Targets t;
  t.Add("10.0.0.1:8000", 100);
  t.Add("10.0.0.2:8000", 100);
  t.Add("10.0.0.3:8000", 100);
  return t;
}

TEST(BalancerHealthTest, RoundRobinWalksPastUnhealthyTargets) {
  HealthRegistry registry;
  auto b = BuildChecked(WithChecks(MakeUpstream("round-robin"), kPassiveOn), ThreeTargets(), &registry);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->health_checked());
  SetHealthy(*b, "10.0.0.2:8000", false);
  std::map<std::string, int> counts;
  for (int i = 0; i < 300; ++i) ++counts[NameOf(*b, b->Pick(0, 0, {}))];
  EXPECT_EQ(counts, (std::map<std::string, int>{{"10.0.0.1:8000", 150}, {"10.0.0.3:8000", 150}}));
  SetHealthy(*b, "10.0.0.2:8000", true);
  counts.clear();
  for (int i = 0; i < 300; ++i) ++counts[NameOf(*b, b->Pick(0, 0, {}))];
  EXPECT_EQ(counts["10.0.0.2:8000"], 100) << "healthy again: back in the sequence";
}

TEST(BalancerHealthTest, ConsistentHashingMovesOnlyTheKeysOfAnUnhealthyTarget) {
  HealthRegistry registry;
  auto b = BuildChecked(WithChecks(MakeUpstream("consistent-hashing"), kPassiveOn), ThreeTargets(), &registry);
  ASSERT_NE(b, nullptr);
  std::map<int, std::string> before;
  for (int k = 0; k < 3000; ++k) before[k] = NameOf(*b, b->Pick(0, Balancer::HashKey(absl::StrCat("key-", k)), {}));
  SetHealthy(*b, "10.0.0.3:8000", false);
  int moved = 0;
  for (const auto& [k, name] : before) {
    const std::string now = NameOf(*b, b->Pick(0, Balancer::HashKey(absl::StrCat("key-", k)), {}));
    if (name == "10.0.0.3:8000") {
      EXPECT_NE(now, name);
      EXPECT_NE(now, "<none>");
      ++moved;
    } else {
      EXPECT_EQ(now, name) << "a healthy target keeps its keys";
    }
  }
  EXPECT_NEAR(moved, 1000, 200);
  SetHealthy(*b, "10.0.0.3:8000", true);
  for (const auto& [k, name] : before) {
    EXPECT_EQ(NameOf(*b, b->Pick(0, Balancer::HashKey(absl::StrCat("key-", k)), {})), name);
  }
}

TEST(BalancerHealthTest, LeastConnectionsIgnoresUnhealthyTargets) {
  HealthRegistry registry;
  auto b = BuildChecked(WithChecks(MakeUpstream("least-connections"), kPassiveOn), ThreeTargets(), &registry);
  ASSERT_NE(b, nullptr);
  SetHealthy(*b, "10.0.0.1:8000", false);
  std::map<std::string, int> open;
  for (int i = 0; i < 10; ++i) ++open[NameOf(*b, b->Pick(0, 0, {}))];  // none released
  EXPECT_EQ(open, (std::map<std::string, int>{{"10.0.0.2:8000", 5}, {"10.0.0.3:8000", 5}}));
  // A retry that tried both healthy targets gets one of them again, never the unhealthy one.
  const std::vector<uint32_t> tried = {static_cast<uint32_t>(IndexOf(*b, "10.0.0.2:8000")),
                                       static_cast<uint32_t>(IndexOf(*b, "10.0.0.3:8000"))};
  EXPECT_NE(NameOf(*b, b->Pick(0, 0, tried)), "10.0.0.1:8000");
  EXPECT_FALSE(b->HasUntriedTarget(tried)) << "the untried target is unhealthy";
  EXPECT_TRUE(b->HasUntriedTarget({tried.data(), 1}));
}

TEST(BalancerHealthTest, NoHealthyTargetOrHealthyWeightBelowThresholdFindsNoTarget) {
  HealthRegistry registry;
  for (const char* algorithm : {"round-robin", "consistent-hashing", "least-connections"}) {
    SCOPED_TRACE(algorithm);
    auto b = BuildChecked(WithChecks(MakeUpstream(algorithm), R"({"threshold":50,
        "passive":{"unhealthy":{"tcp_failures":1}}})"), ThreeTargets(), &registry, /*workers=*/2);
    ASSERT_NE(b, nullptr);
    SetHealthy(*b, "10.0.0.1:8000", false);  // 66 % healthy
    EXPECT_NE(b->Pick(0, 7, {}), Balancer::kNoTarget);
    EXPECT_NE(b->Pick(1, 7, {}), Balancer::kNoTarget);
    SetHealthy(*b, "10.0.0.2:8000", false);  // 33 % < 50 %
    EXPECT_EQ(b->Pick(0, 7, {}), Balancer::kNoTarget);
    EXPECT_EQ(b->Pick(1, 7, {}), Balancer::kNoTarget);
    SetHealthy(*b, "10.0.0.2:8000", true);  // each worker sees the change
    EXPECT_NE(b->Pick(0, 7, {}), Balancer::kNoTarget);
    EXPECT_NE(b->Pick(1, 7, {}), Balancer::kNoTarget);
    for (int i = 1; i <= 3; ++i) SetHealthy(*b, absl::StrCat("10.0.0.", i, ":8000"), true);
  }
  auto zero = BuildChecked(WithChecks(MakeUpstream("round-robin"), kPassiveOn), ThreeTargets(), &registry);
  for (int i = 1; i <= 3; ++i) SetHealthy(*zero, absl::StrCat("10.0.0.", i, ":8000"), false);
  EXPECT_EQ(zero->Pick(0, 0, {}), Balancer::kNoTarget) << "threshold 0: none healthy, none picked";
}

TEST(BalancerHealthTest, ChecksOffOrNoRegistryIgnoreHealth) {
  HealthRegistry registry;
  auto off = BuildChecked(MakeUpstream("round-robin"), ThreeTargets(), &registry);  // healthchecks ""
  ASSERT_NE(off, nullptr);
  EXPECT_FALSE(off->health_checked());
  ASSERT_NE(off->target(0).health, nullptr) << "a record exists (reported HEALTHCHECKS_OFF)";
  for (size_t i = 0; i < 3; ++i) off->target(i).health->Set(false, "test");
  EXPECT_NE(off->Pick(0, 0, {}), Balancer::kNoTarget);
  auto none = Build(WithChecks(MakeUpstream("round-robin"), kPassiveOn), ThreeTargets());
  ASSERT_NE(none, nullptr);
  EXPECT_FALSE(none->health_checked());
  none->ReportTcpFailure(0);  // no record: nothing happens
  EXPECT_NE(none->Pick(0, 0, {}), Balancer::kNoTarget);
}

TEST(BalancerHealthTest, PassiveReportsMarkTargetsAndStateSurvivesARecompile) {
  HealthRegistry registry;
  const Upstream u = WithChecks(MakeUpstream("round-robin"), kPassiveOn);
  auto first = BuildChecked(u, ThreeTargets(), &registry);
  ASSERT_NE(first, nullptr);
  std::vector<HealthTarget> installed;
  first->AppendHealthTargets(&installed);
  ASSERT_EQ(installed.size(), 3u);
  registry.Install(installed);
  first->ReportHttpStatus(IndexOf(*first, "10.0.0.1:8000"), 200);
  first->ReportHttpStatus(IndexOf(*first, "10.0.0.1:8000"), 404);  // in neither passive list
  EXPECT_TRUE(first->target(static_cast<size_t>(IndexOf(*first, "10.0.0.1:8000"))).health->healthy());
  first->ReportHttpStatus(IndexOf(*first, "10.0.0.1:8000"), 500);
  first->ReportTcpFailure(IndexOf(*first, "10.0.0.2:8000"));
  // The next snapshot (same upstream, same checks) keeps both targets unhealthy.
  auto second = BuildChecked(u, ThreeTargets(), &registry);
  ASSERT_NE(second, nullptr);
  std::map<std::string, int> counts;
  for (int i = 0; i < 30; ++i) ++counts[NameOf(*second, second->Pick(0, 0, {}))];
  EXPECT_EQ(counts, (std::map<std::string, int>{{"10.0.0.3:8000", 30}}));
  std::vector<TargetHealthReport> report = registry.Report();
  ASSERT_EQ(report.size(), 3u);
  EXPECT_EQ(report[0].health, TargetHealthState::kUnhealthy);
  EXPECT_EQ(report[1].health, TargetHealthState::kUnhealthy);
  EXPECT_EQ(report[2].health, TargetHealthState::kHealthy);
  // Passive type tcp: statuses are not looked at.
  auto tcp = BuildChecked(WithChecks(MakeUpstream("round-robin"),
                                     R"({"passive":{"type":"tcp","unhealthy":{"tcp_failures":1,"http_failures":1}}})"),
                          ThreeTargets(), &registry);
  tcp->ReportHttpStatus(0, 500);
  EXPECT_TRUE(tcp->target(0).health->healthy());
}

TEST(BalancerHealthTest, ABadHealthchecksRecordFailsTheCompile) {
  Targets t = ThreeTargets();
  absl::StatusOr<std::unique_ptr<const Balancer>> b =
      Balancer::Compile(WithChecks(MakeUpstream("round-robin"), R"({"active":{"timeout":"soon"}})"), t.Pointers(), 1);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("healthchecks.active.timeout: expected a number"), absl::string_view::npos)
      << b.status();
}

}  // namespace
}  // namespace portico::dp
