#include "data_plane/telemetry/record_ring.h"

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

std::vector<std::string> DrainAll(RecordRing& ring) {
  std::vector<std::string> out;
  std::string scratch;
  ring.Drain(&scratch, [&](absl::string_view r) { out.emplace_back(r); });
  return out;
}

TEST(RecordRingTest, RecordsComeOutInOrderAndWholeAcrossTheWrap) {
  RecordRing ring(64);
  ASSERT_EQ(ring.capacity(), 64u);
  for (int round = 0; round < 20; ++round) {
    const std::string a(10 + round % 7, static_cast<char>('a' + round % 26));
    const std::string b = "line-" + std::to_string(round);
    ASSERT_TRUE(ring.TryPush(a));
    ASSERT_TRUE(ring.TryPush(b));
    EXPECT_EQ(DrainAll(ring), (std::vector<std::string>{a, b})) << "round " << round;
  }
  EXPECT_EQ(ring.dropped(), 0u);
  EXPECT_EQ(ring.used(), 0u);
}

TEST(RecordRingTest, AFullRingDropsAndCountsUntilDrained) {
  RecordRing ring(64);
  const std::string record(20, 'x');  // 24 bytes with its length
  EXPECT_TRUE(ring.TryPush(record));
  EXPECT_TRUE(ring.TryPush(record));
  EXPECT_FALSE(ring.TryPush(record));  // 48 used, 16 free
  EXPECT_FALSE(ring.TryPush(std::string(100, 'y')));  // longer than the ring
  EXPECT_EQ(ring.dropped(), 2u);
  EXPECT_EQ(DrainAll(ring).size(), 2u);
  EXPECT_TRUE(ring.TryPush(record));
  EXPECT_EQ(ring.dropped(), 2u);
}

TEST(RecordRingTest, OneProducerAndOneConsumerThreadLoseNothingButWhatIsCounted) {
  RecordRing ring(4096);
  constexpr int kRecords = 200000;
  std::thread producer([&] {
    for (int i = 0; i < kRecords; ++i) ring.TryPush(std::to_string(i));
  });
  std::vector<int> got;
  std::string scratch;
  while (true) {
    const bool done = got.size() + ring.dropped() >= static_cast<size_t>(kRecords);
    ring.Drain(&scratch, [&](absl::string_view r) { got.push_back(std::stoi(std::string(r))); });
    if (done && ring.used() == 0) break;
  }
  producer.join();
  ring.Drain(&scratch, [&](absl::string_view r) { got.push_back(std::stoi(std::string(r))); });
  EXPECT_EQ(got.size() + ring.dropped(), static_cast<size_t>(kRecords));
  for (size_t i = 1; i < got.size(); ++i) ASSERT_LT(got[i - 1], got[i]);  // in order, no duplicates
}

}  // namespace
}  // namespace portico::dp
