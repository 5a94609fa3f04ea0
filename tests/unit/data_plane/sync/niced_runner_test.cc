#include "data_plane/sync/niced_runner.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

int ThreadNice() {
  errno = 0;
  return getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
}

TEST(NicedRunnerTest, RunsTasksOnALoweredThreadAndLeavesTheCallerAsItWas) {
  const int caller_before = ThreadNice();
  NicedRunner runner(10);
  int seen = -100;
  pid_t task_tid = 0;
  absl::Status status = runner.Run([&] {
    seen = ThreadNice();
    task_tid = static_cast<pid_t>(syscall(SYS_gettid));
    return absl::InvalidArgumentError("refused");
  });
  EXPECT_EQ(status, absl::InvalidArgumentError("refused"));  // the task's status comes back
  EXPECT_EQ(seen, std::min(caller_before + 10, 19));
  EXPECT_NE(task_tid, static_cast<pid_t>(syscall(SYS_gettid)));
  EXPECT_EQ(ThreadNice(), caller_before);
  EXPECT_TRUE(runner.Run([] { return absl::OkStatus(); }).ok());
}

TEST(NicedRunnerTest, ConcurrentCallersAreServedOneAtATime) {
  NicedRunner runner(0);
  std::atomic<int> inside{0}, most{0}, done{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back([&] {
      for (int j = 0; j < 25; ++j) {
        EXPECT_TRUE(runner
                        .Run([&] {
                          const int now = ++inside;
                          int seen = most.load();
                          while (now > seen && !most.compare_exchange_weak(seen, now)) {
                          }
                          --inside;
                          ++done;
                          return absl::OkStatus();
                        })
                        .ok());
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(done.load(), 100);
  EXPECT_EQ(most.load(), 1);
}

}  // namespace
}  // namespace portico::dp
