#include "data_plane/proxy/deferred_release.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

pid_t Tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// Records the thread (and its nice value) it is destroyed on.
struct Tracked {
  Tracked(std::atomic<pid_t>* destroyed_on, std::atomic<int>* nice_at_destruction)
      : destroyed_on(destroyed_on), nice_at_destruction(nice_at_destruction) {}
  Tracked(const Tracked&) = delete;
  std::atomic<pid_t>* destroyed_on;
  std::atomic<int>* nice_at_destruction;
  ~Tracked() {
    errno = 0;
    nice_at_destruction->store(getpriority(PRIO_PROCESS, static_cast<id_t>(Tid())));
    destroyed_on->store(Tid());
  }
};

bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(DeferredReleaseTest, FreesOnItsOwnLoweredThreadOnlyOnceNothingElseHoldsIt) {
  std::atomic<pid_t> destroyed_on{0};
  std::atomic<int> nice{-100};
  std::atomic<int> released_calls{0};
  DeferredRelease release(10, absl::Milliseconds(1));
  release.SetOnReleased([&] { released_calls.fetch_add(1); });
  auto object = std::make_shared<const Tracked>(&destroyed_on, &nice);
  std::shared_ptr<const Tracked> user = object;  // a worker or a request still using it
  release.Retire(std::move(object));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(destroyed_on.load(), 0) << "freed while still in use";
  EXPECT_EQ(release.held(), 1u);
  EXPECT_EQ(released_calls.load(), 0);

  user.reset();  // the last user lets go: not freed here
  EXPECT_EQ(destroyed_on.load(), 0);
  ASSERT_TRUE(WaitFor([&] { return destroyed_on.load() != 0; }));
  EXPECT_NE(destroyed_on.load(), Tid());
  EXPECT_EQ(nice.load(), 10);
  ASSERT_TRUE(WaitFor([&] { return released_calls.load() == 1; }));
  EXPECT_EQ(release.held(), 0u);
}

// While nothing it holds can be freed (a long-lived connection keeps an old config), it looks
// less and less often; a new retirement brings the short poll back.
TEST(DeferredReleaseTest, PollsLessOftenWhileNothingCanBeFreed) {
  std::atomic<pid_t> destroyed_on{0};
  std::atomic<int> nice{-100};
  DeferredRelease release(0, absl::Milliseconds(10));
  auto object = std::make_shared<const Tracked>(&destroyed_on, &nice);
  std::shared_ptr<const Tracked> user = object;
  release.Retire(std::move(object));
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  // Every 10 ms would be about 120 scans; doubling up to 1 s is about 8.
  const size_t pinned_scans = release.scans();
  EXPECT_GE(pinned_scans, 3u);
  EXPECT_LT(pinned_scans, 30u);
  EXPECT_EQ(destroyed_on.load(), 0);

  auto second = std::make_shared<const Tracked>(&destroyed_on, &nice);
  std::shared_ptr<const Tracked> second_user = second;
  release.Retire(std::move(second));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_GE(release.scans(), pinned_scans + 2) << "a new retirement is looked at at once, then at the short poll";

  user.reset();
  second_user.reset();
  ASSERT_TRUE(WaitFor([&] { return release.held() == 0; }));
  EXPECT_NE(destroyed_on.load(), 0);
}

TEST(DeferredReleaseTest, DropsWhatItStillHoldsWhenDestroyed) {
  std::atomic<pid_t> destroyed_on{0};
  std::atomic<int> nice{-100};
  auto user = std::make_shared<const Tracked>(&destroyed_on, &nice);
  {
    DeferredRelease release(0, absl::Seconds(60));
    release.Retire(user);
    release.Retire(nullptr);  // ignored
    EXPECT_EQ(release.held(), 1u);
  }
  EXPECT_EQ(user.use_count(), 1);  // its reference went with it
  EXPECT_EQ(destroyed_on.load(), 0);
}

}  // namespace
}  // namespace portico::dp
