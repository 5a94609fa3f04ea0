#include "control_plane/store/version_watcher.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "control_plane/store/store.h"
#include "tests/common/delegating_store.h"
#include "gtest/gtest.h"
#include "portico/config/v1/config.pb.h"

namespace portico::cp {
namespace {

bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class VersionWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico_version_watcher_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto ours = Store::Open(dir_ + "/cp.db", clock_);
    ASSERT_TRUE(ours.ok()) << ours.status();
    ours_ = std::move(*ours);
    // Another process on the same file (the config CLI).
    auto theirs = Store::Open(dir_ + "/cp.db", clock_);
    ASSERT_TRUE(theirs.ok()) << theirs.status();
    theirs_ = std::move(*theirs);
  }
  void TearDown() override {
    ours_.reset();
    theirs_.reset();
    std::filesystem::remove_all(dir_);
  }
  config::v1::Service Service(const std::string& name) {
    config::v1::Service service;
    service.set_name(name);
    service.set_host("h.internal");
    return service;
  }

  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<Store> ours_, theirs_;
};

TEST_F(VersionWatcherTest, AWriteByAnotherProcessIsNoticedOnce) {
  std::atomic<uint64_t> builder_read{ours_->CurrentVersion()};
  std::atomic<int> notified{0};
  VersionWatcher watcher(*ours_, absl::Milliseconds(20), [&] { return builder_read.load(); },
                         [&] {
                           ++notified;
                           builder_read = ours_->CurrentVersion();  // the builder reads it
                         });
  ASSERT_TRUE(theirs_->Insert(Service("from-cli")).ok());
  ASSERT_TRUE(WaitFor([&] { return notified.load() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(notified.load(), 1);
  EXPECT_EQ(watcher.changes_noticed(), 1u);
}

TEST_F(VersionWatcherTest, AWriteTheBuilderReadsAtOnceIsNotExternal) {
  std::atomic<uint64_t> builder_read{ours_->CurrentVersion()};
  std::atomic<int> notified{0};
  // A long tick: the gap between a write and the builder's read here is microseconds, and must
  // stay well under one tick even on a loaded machine.
  VersionWatcher watcher(*ours_, absl::Milliseconds(200), [&] { return builder_read.load(); },
                         [&] { ++notified; });
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(ours_->Insert(Service("admin-" + std::to_string(i))).ok());
    builder_read = ours_->CurrentVersion();  // the Admin API notified, the builder read it
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(notified.load(), 0);
  // A builder that does not read what another process wrote (its reads fail) is told again, at
  // most once per interval.
  ASSERT_TRUE(theirs_->Insert(Service("cli-1")).ok());
  ASSERT_TRUE(WaitFor([&] { return notified.load() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_GE(notified.load(), 2);
  EXPECT_LE(notified.load(), 1 + 1000 / 200 + 1);
  // Once it reads, no more.
  builder_read = ours_->CurrentVersion();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int settled = notified.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(notified.load(), settled);
}

// The feed's notification arrives, but the builder's read then fails (it stays behind): it is
// told again one interval later without another notification, until it has read the version.
TEST_F(VersionWatcherTest, ANotifiedVersionTheBuilderFailedToReadIsToldAgain) {
  class Feed : public DelegatingStore {
   public:
    using DelegatingStore::DelegatingStore;
    std::atomic<bool> pending{false};
    ChangeWait WaitForChange(absl::Duration timeout) override {
      const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
      while (std::chrono::steady_clock::now() < deadline) {
        if (pending.exchange(false)) return ChangeWait::kNotified;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      return ChangeWait::kTimedOut;
    }
  } feed(*ours_);
  std::atomic<uint64_t> builder_read{feed.CurrentVersion()};
  std::atomic<int> notified{0};
  VersionWatcher watcher(feed, absl::Milliseconds(100), [&] { return builder_read.load(); },
                         [&] {
                           // The first read fails (the database blinked); the next succeeds.
                           if (++notified >= 2) builder_read = feed.CurrentVersion();
                         });
  ASSERT_TRUE(theirs_->Insert(Service("other-cp")).ok());
  feed.pending = true;
  ASSERT_TRUE(WaitFor([&] { return notified.load() == 2; })) << notified.load();
  EXPECT_EQ(builder_read.load(), feed.CurrentVersion());
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(notified.load(), 2);
  EXPECT_EQ(watcher.changes_noticed(), 2u);
}

// A store with a change feed (as PostgreSQL's) over a SQLite one: WaitForChange says kNotified
// once per Notify(), else times out after its timeout.
class FeedStore : public DelegatingStore {
 public:
  explicit FeedStore(Store& inner) : DelegatingStore(inner) {}
  void Notify() { pending_ = true; }
  int waits() const { return waits_.load(); }

  ChangeWait WaitForChange(absl::Duration timeout) override {
    ++waits_;
    const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
    while (std::chrono::steady_clock::now() < deadline) {
      if (pending_.exchange(false)) return ChangeWait::kNotified;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return ChangeWait::kTimedOut;
  }

 private:
  std::atomic<bool> pending_{false};
  std::atomic<int> waits_{0};
};

// With a feed, a write elsewhere reaches the builder at the notification, not ticks later; a
// notification of what the builder already read tells it nothing; Stop() is prompt.
TEST_F(VersionWatcherTest, ANotifiedWriteReachesTheBuilderAtOnce) {
  FeedStore feed(*ours_);
  std::atomic<uint64_t> builder_read{feed.CurrentVersion()};
  std::atomic<int> notified{0};
  // A 30 s polling interval: only the feed can explain a notice within the test's bounds.
  auto watcher = std::make_unique<VersionWatcher>(feed, absl::Seconds(30), [&] { return builder_read.load(); },
                                                  [&] {
                                                    ++notified;
                                                    builder_read = feed.CurrentVersion();
                                                  });
  ASSERT_TRUE(theirs_->Insert(Service("other-cp")).ok());
  const auto written = std::chrono::steady_clock::now();
  feed.Notify();
  ASSERT_TRUE(WaitFor([&] { return notified.load() == 1; }));
  EXPECT_LT(std::chrono::steady_clock::now() - written, std::chrono::seconds(2));
  EXPECT_EQ(watcher->changes_noticed(), 1u);

  // This CP's own write, already read by the builder: the notification changes nothing.
  ASSERT_TRUE(ours_->Insert(Service("own")).ok());
  builder_read = ours_->CurrentVersion();
  const int waits = feed.waits();
  feed.Notify();
  ASSERT_TRUE(WaitFor([&] { return feed.waits() >= waits + 2; }));  // seen, and waiting again
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(notified.load(), 1);

  ASSERT_TRUE(theirs_->Insert(Service("other-cp-2")).ok());
  feed.Notify();
  ASSERT_TRUE(WaitFor([&] { return notified.load() == 2; }));

  const auto stopping = std::chrono::steady_clock::now();
  watcher->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, std::chrono::seconds(1));
}

}  // namespace
}  // namespace portico::cp
