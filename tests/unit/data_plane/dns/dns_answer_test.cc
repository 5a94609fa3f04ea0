#include "data_plane/dns/dns_answer.h"

#include <map>

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

DnsAnswer::Record Rec(const std::string& ip, uint16_t port, uint16_t priority = 0, uint16_t weight = 1) {
  DnsAnswer::Record r;
  EXPECT_TRUE(MakeTarget(ip, port, &r.target)) << ip;
  r.priority = priority;
  r.weight = weight;
  return r;
}

TEST(DnsAnswerTest, MakeTargetBuildsPoolKeysAndSockaddrs) {
  Target t;
  ASSERT_TRUE(MakeTarget("10.1.2.3", 8080, &t));
  EXPECT_EQ(t.pool_key, "10.1.2.3:8080");
  EXPECT_EQ(t.address.ss_family, AF_INET);
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(&t.address)->sin_port), 8080);
  ASSERT_TRUE(MakeTarget("::1", 443, &t));
  EXPECT_EQ(t.pool_key, "[::1]:443");
  EXPECT_EQ(t.address.ss_family, AF_INET6);
  EXPECT_FALSE(MakeTarget("example.com", 80, &t));
}

TEST(DnsAnswerTest, AddressRecordsGoRoundRobin) {
  DnsAnswer a({Rec("10.0.0.1", 80), Rec("10.0.0.2", 80), Rec("10.0.0.3", 80)});
  EXPECT_EQ(a.Pick(0)->pool_key, "10.0.0.1:80");
  EXPECT_EQ(a.Pick(1)->pool_key, "10.0.0.2:80");
  EXPECT_EQ(a.Pick(2)->pool_key, "10.0.0.3:80");
  EXPECT_EQ(a.Pick(3)->pool_key, "10.0.0.1:80");
}

TEST(DnsAnswerTest, SrvUsesTheLowestPriorityByWeight) {
  DnsAnswer a({Rec("10.0.0.1", 81, 5, 10), Rec("10.0.0.2", 82, 5, 30), Rec("10.0.0.3", 83, 1, 20),
               Rec("10.0.0.4", 84, 1, 60), Rec("10.0.0.5", 85, 1, 0)},
              /*from_srv=*/true);
  std::map<std::string, int> seen;
  for (uint64_t c = 0; c < 500 * a.schedule_size(); ++c) ++seen[a.Pick(c)->pool_key];
  EXPECT_EQ(seen.count("10.0.0.1:81"), 0u);
  EXPECT_EQ(seen.count("10.0.0.2:82"), 0u);
  // weights 20, 60 and 0 (counts as 1): reduced by their gcd to 20:60:1
  EXPECT_EQ(a.schedule_size(), 81u);
  EXPECT_EQ(seen["10.0.0.3:83"], 20 * 500);
  EXPECT_EQ(seen["10.0.0.4:84"], 60 * 500);
  EXPECT_EQ(seen["10.0.0.5:85"], 1 * 500);
}

TEST(DnsAnswerTest, HugeSrvWeightsAreScaledToTheScheduleCap) {
  DnsAnswer a({Rec("10.0.0.1", 1, 0, 65535), Rec("10.0.0.2", 2, 0, 65534), Rec("10.0.0.3", 3, 0, 1)}, true);
  EXPECT_LE(a.schedule_size(), DnsAnswer::kMaxSchedule + 3);
  std::map<std::string, int> seen;
  for (uint64_t c = 0; c < a.schedule_size(); ++c) ++seen[a.Pick(c)->pool_key];
  EXPECT_EQ(seen.size(), 3u) << "every record keeps an entry";
}

}  // namespace
}  // namespace portico::dp
