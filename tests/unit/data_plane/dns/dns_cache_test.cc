// The cache's rules with a fake clock (milliseconds passed in): TTL, clamping, stale while
// refreshing, last good answer on failure with backoff, negative answers, waiters, eviction.
#include "data_plane/dns/dns_cache.h"

#include <algorithm>

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

DnsAnswerPtr AnswerFor(const std::string& ip, uint16_t port = 80) {
  DnsAnswer::Record r;
  EXPECT_TRUE(MakeTarget(ip, port, &r.target));
  return std::make_shared<const DnsAnswer>(std::vector<DnsAnswer::Record>{r});
}

std::string Ip(const DnsCache::Result& r) { return r.answer == nullptr ? "none" : (*r.answer)->Pick(0)->ip; }

const DnsKeyView kKey{"app.example", 80};

TEST(DnsCacheTest, FirstGetStartsOneQueryThenTheAnswerIsServedForItsTtl) {
  DnsCache cache;
  DnsCache::Result r = cache.Get(kKey, 1000);
  EXPECT_TRUE(r.start_query);
  EXPECT_TRUE(r.pending);
  EXPECT_EQ(r.answer, nullptr);
  r = cache.Get(kKey, 1001);
  EXPECT_FALSE(r.start_query) << "one query at a time";
  EXPECT_TRUE(r.pending);

  cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), /*ttl_s=*/30, 2000);
  r = cache.Get(kKey, 2001);
  EXPECT_EQ(Ip(r), "10.0.0.1");
  EXPECT_FALSE(r.start_query);
  EXPECT_FALSE(r.pending);
  // Refreshed shortly before expiry (30 s TTL: 1 s early).
  EXPECT_FALSE(cache.Get(kKey, 2000 + 28999).start_query);
  r = cache.Get(kKey, 2000 + 29000);
  EXPECT_TRUE(r.start_query);
  EXPECT_EQ(Ip(r), "10.0.0.1") << "the old answer is served while refreshing";
  // Past expiry, still refreshing: still the old answer (stale), no second query.
  r = cache.Get(kKey, 2000 + 40000);
  EXPECT_FALSE(r.start_query);
  EXPECT_EQ(Ip(r), "10.0.0.1");
  cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.2"), 30, 42000);
  EXPECT_EQ(Ip(cache.Get(kKey, 42001)), "10.0.0.2");
}

TEST(DnsCacheTest, TtlZeroIsClampedToOneSecond) {
  DnsCache cache;
  cache.Get(kKey, 0);
  cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 0, 0);
  EXPECT_FALSE(cache.Get(kKey, 1).start_query) << "not a query per request";
  EXPECT_FALSE(cache.Get(kKey, 749).start_query);
  EXPECT_TRUE(cache.Get(kKey, 750).start_query) << "1 s, refreshed at 3/4";
}

TEST(DnsCacheTest, FailureKeepsTheLastGoodAnswerAndRetriesWithBackoff) {
  DnsCache cache;
  cache.Get(kKey, 0);
  cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 10, 0);
  ASSERT_TRUE(cache.Get(kKey, 10000).start_query);
  cache.Complete(kKey, DnsOutcome::kError, nullptr, 0, 12000);
  DnsCache::Result r = cache.Get(kKey, 12001);
  EXPECT_EQ(Ip(r), "10.0.0.1");
  EXPECT_FALSE(r.start_query) << "not before the backoff";
  EXPECT_TRUE(cache.Get(kKey, 13000).start_query) << "retried after 1 s";
  cache.Complete(kKey, DnsOutcome::kError, nullptr, 0, 13000);
  EXPECT_FALSE(cache.Get(kKey, 14999).start_query);
  EXPECT_TRUE(cache.Get(kKey, 15000).start_query) << "then 2 s";
  int64_t now = 15000;
  for (int i = 0; i < 10; ++i) {
    cache.Complete(kKey, DnsOutcome::kError, nullptr, 0, now);
    now += 16000;
    r = cache.Get(kKey, now);
    EXPECT_TRUE(r.start_query) << "the backoff stops doubling at 16 s";
    EXPECT_EQ(Ip(r), "10.0.0.1") << "still served after " << now << " ms";
  }
  // A success resets the backoff.
  cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.9"), 1, now);
  EXPECT_EQ(Ip(cache.Get(kKey, now + 1)), "10.0.0.9");
}

TEST(DnsCacheTest, NotFoundWithoutAnswerIsNoAnswerUntilTheNegativeTtl) {
  DnsCache cache;
  cache.Get(kKey, 0);
  cache.Complete(kKey, DnsOutcome::kNotFound, nullptr, 0, 100);
  DnsCache::Result r = cache.Get(kKey, 200);
  EXPECT_EQ(r.answer, nullptr);
  EXPECT_FALSE(r.pending) << "503 at once, no waiting";
  EXPECT_FALSE(r.start_query);
  EXPECT_FALSE(cache.Get(kKey, 100 + 29999).start_query);
  EXPECT_TRUE(cache.Get(kKey, 100 + 30000).start_query) << "asked again after 30 s";
}

TEST(DnsCacheTest, NotFoundDropsAPreviousAnswerButAnErrorWithoutAnswerStaysEmpty) {
  DnsCache cache;
  cache.Get(kKey, 0);
  cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 1, 0);
  ASSERT_TRUE(cache.Get(kKey, 1000).start_query);
  cache.Complete(kKey, DnsOutcome::kNotFound, nullptr, 0, 1000);
  EXPECT_EQ(cache.Get(kKey, 1001).answer, nullptr) << "an authoritative no removes the name";

  const DnsKeyView other{"down.example", 80};
  cache.Get(other, 0);
  cache.Complete(other, DnsOutcome::kError, nullptr, 0, 0);
  EXPECT_EQ(cache.Get(other, 1).answer, nullptr);
}

TEST(DnsCacheTest, AnAnswerHeldByARequestOutlivesItsReplacement) {
  DnsCache cache;
  cache.Get(kKey, 0);
  cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 1, 0);
  DnsAnswerPtr held = *cache.Get(kKey, 1).answer;  // what a request keeps
  const Target* in_use = held->Pick(0);
  ASSERT_TRUE(cache.Get(kKey, 1000).start_query);
  cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.2"), 1, 1000);
  EXPECT_EQ(Ip(cache.Get(kKey, 1001)), "10.0.0.2");
  EXPECT_EQ(in_use->ip, "10.0.0.1") << "still valid: the request holds the old answer";
  EXPECT_EQ(held.use_count(), 1);
}

TEST(DnsCacheTest, WaitersAreCalledOnceOnCompletionAndCancelledOnesNever) {
  DnsCache cache;
  ASSERT_TRUE(cache.Get(kKey, 0).pending);
  int a = 0, b = 0;
  cache.Wait(kKey, [&] { ++a; });
  const uint64_t ticket = cache.Wait(kKey, [&] { ++b; });
  cache.CancelWait(ticket);
  std::vector<DnsCache::Waiter> waiters = cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 5, 10);
  ASSERT_EQ(waiters.size(), 1u);
  for (auto& w : waiters) w();
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 0);
  cache.CancelWait(ticket);  // harmless twice
  EXPECT_TRUE(cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 5, 20).empty());
}

TEST(DnsCacheTest, ConfigNamesAreWarmedRefreshedAndNeverEvicted) {
  DnsCacheOptions options;
  DnsCache cache(options);
  const std::vector<DnsKey> names{{"a.example", 80}, {"b.example", 8080}};
  std::vector<DnsKey> due = cache.SetConfigNames(names, 0);
  ASSERT_EQ(due.size(), 2u) << "both looked up at once";
  EXPECT_TRUE(cache.SetConfigNames(names, 1).empty()) << "already in flight";
  for (const DnsKey& k : due) cache.Complete(k.view(), DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 2, 10);
  EXPECT_TRUE(cache.Maintain(1000).empty());
  due = cache.Maintain(10 + 1500);  // 2 s TTL: refreshed at 1.5 s, unused by requests
  EXPECT_EQ(due.size(), 2u);
  for (const DnsKey& k : due) cache.Complete(k.view(), DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 2, 1510);
  // An hour without a request: still there and refreshed (they are the config's).
  int64_t now = 1510;
  for (int i = 0; i < 3600; ++i) {
    now += 1000;
    for (const DnsKey& k : cache.Maintain(now)) {
      cache.Complete(k.view(), DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 2, now);
    }
  }
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_NE(cache.Peek({"a.example", 80}), nullptr);
}

TEST(DnsCacheTest, NamesNoLongerUsedStopBeingRefreshedThenAreEvicted) {
  DnsCache cache;
  cache.SetConfigNames({{"old.example", 80}}, 0);
  cache.Complete({"old.example", 80}, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 1, 0);
  cache.SetConfigNames({}, 10);  // a new config without it
  // Used within the last minute: refreshed.
  EXPECT_EQ(cache.Maintain(30000).size(), 1u);
  cache.Complete({"old.example", 80}, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 1, 30000);
  EXPECT_TRUE(cache.Maintain(70000).empty()) << "unused for over a minute: not refreshed";
  EXPECT_EQ(cache.size(), 1u);
  cache.Maintain(10 * 60 * 1000 + 11);
  EXPECT_EQ(cache.size(), 0u) << "evicted after 10 minutes unused";
}

TEST(DnsCacheTest, ExpireAllMakesEveryNameDue) {
  DnsCache cache;
  cache.Get(kKey, 0);
  cache.Complete(kKey, DnsOutcome::kAnswer, AnswerFor("10.0.0.1"), 3600, 0);
  EXPECT_FALSE(cache.Get(kKey, 1).start_query);
  cache.ExpireAll();
  DnsCache::Result r = cache.Get(kKey, 2);
  EXPECT_TRUE(r.start_query);
  EXPECT_EQ(Ip(r), "10.0.0.1");
}

}  // namespace
}  // namespace portico::dp
