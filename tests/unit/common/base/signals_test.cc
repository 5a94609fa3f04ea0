// The daemons' signal waits (common/base/signals.h), with signals raised on the test's own thread
// (thread-directed, so they stay pending for this thread's sigtimedwait).
#include "common/base/signals.h"

#include <signal.h>

#include <chrono>

#include "gtest/gtest.h"

namespace portico {
namespace {

using Clock = std::chrono::steady_clock;

class SignalsTest : public ::testing::Test {
 protected:
  void SetUp() override { BlockTerminationSignals(); }
};

TEST_F(SignalsTest, TimedWaitReturnsZeroWhenNoSignalCame) {
  const auto start = Clock::now();
  EXPECT_EQ(WaitForTerminationSignalFor(80), 0);
  const auto took = Clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(70));
  EXPECT_LT(took, std::chrono::milliseconds(1000));
}

TEST_F(SignalsTest, TimedWaitReturnsSigquitSigtermAndSigintButSkipsSighup) {
  raise(SIGHUP);
  EXPECT_EQ(WaitForTerminationSignalFor(50), 0) << "SIGHUP is consumed, not returned";
  raise(SIGQUIT);
  EXPECT_EQ(WaitForTerminationSignalFor(1000), SIGQUIT);
  raise(SIGTERM);
  EXPECT_EQ(WaitForTerminationSignalFor(1000), SIGTERM);
  raise(SIGINT);
  EXPECT_EQ(WaitForTerminationSignalFor(1000), SIGINT);
}

TEST_F(SignalsTest, TimedWaitRunsTheReopenHandlerOnSigusr1) {
  int reopened = 0;
  raise(SIGUSR1);
  EXPECT_EQ(WaitForTerminationSignalFor(50, [&] { ++reopened; }), 0) << "SIGUSR1 is consumed, not returned";
  EXPECT_EQ(reopened, 1);
  raise(SIGUSR1);
  EXPECT_EQ(WaitForTerminationSignalFor(50), 0) << "without a handler SIGUSR1 is ignored";
  EXPECT_EQ(reopened, 1);
}

TEST_F(SignalsTest, BlockingWaitReturnsSigquitAndRunsTheHangupHandler) {
  int hangups = 0;
  raise(SIGHUP);
  raise(SIGQUIT);
  EXPECT_EQ(WaitForTerminationSignal([&] { ++hangups; }), SIGQUIT);
  EXPECT_EQ(hangups, 1);
}

TEST(SignalsClassTest, TermAndQuitAreGracefulIntIsNot) {
  EXPECT_TRUE(IsGracefulStopSignal(SIGTERM));
  EXPECT_TRUE(IsGracefulStopSignal(SIGQUIT));
  EXPECT_FALSE(IsGracefulStopSignal(SIGINT));
  EXPECT_FALSE(IsGracefulStopSignal(SIGHUP));
}

}  // namespace
}  // namespace portico
