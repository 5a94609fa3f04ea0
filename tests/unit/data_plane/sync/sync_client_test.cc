// SyncClient behaviour without a control plane: start-up checks, backoff, prompt Stop().
#include "data_plane/sync/sync_client.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <vector>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/base/file.h"
#include "common/snapshot/snapshot.h"
#include "common/tls/tls_files.h"
#include "data_plane/sync/snapshot_cache.h"
#include "gtest/gtest.h"
#include "tests/common/http_wire.h"
#include "tests/common/temp_dir.h"

namespace portico::dp {
namespace {

using test_support::ClosedLoopbackPort;  // a loopback port with nothing listening on it
using test_support::TempDir;

class SyncClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(GenerateClusterCertificates(tmp_.path(), {}, "node-7").ok()); }
  SyncClientOptions Options(uint16_t port) {
    SyncClientOptions o;
    o.control_plane = absl::StrCat("127.0.0.1:", port);
    o.cert_file = tmp_.path() + "/dp.crt";
    o.key_file = tmp_.path() + "/dp.key";
    o.ca_file = tmp_.path() + "/ca.crt";
    return o;
  }
  static ApplyConfigFn NoApply() {
    return [](std::shared_ptr<const ConfigSet>, const ConfigVersion&) { return absl::OkStatus(); };
  }
  TempDir tmp_;
};

TEST_F(SyncClientTest, StartReadsTheNodeIdFromTheCertificate) {
  auto client = SyncClient::Start(Options(ClosedLoopbackPort()), NoApply());
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->node_id(), "node-7");
  EXPECT_FALSE((*client)->connected());
  EXPECT_TRUE((*client)->serving().empty());
}

TEST_F(SyncClientTest, StartRejectsBadMaterial) {
  SyncClientOptions no_identity = Options(1);
  no_identity.cert_file = tmp_.path() + "/cp.crt";  // a server cert: no DP identity
  no_identity.key_file = tmp_.path() + "/cp.key";
  EXPECT_EQ(SyncClient::Start(no_identity, NoApply()).status().code(),
            absl::StatusCode::kInvalidArgument);
  SyncClientOptions missing = Options(1);
  missing.ca_file = tmp_.path() + "/nope.crt";
  EXPECT_EQ(SyncClient::Start(missing, NoApply()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(SyncClient::Start(Options(1), nullptr).ok());
}

TEST_F(SyncClientTest, BacksOffExponentiallyWhenTheCpIsDown) {
  SyncClientOptions o = Options(ClosedLoopbackPort());
  o.backoff_initial = absl::Milliseconds(100);
  o.backoff_max = absl::Seconds(10);
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  // Delays ~100, 160, 256, 410, 655 ms (+-20%): 4-6 attempts in 1.5 s, never dozens.
  const uint64_t attempts = (*client)->stats().connect_attempts;
  EXPECT_GE(attempts, 3u);
  EXPECT_LE(attempts, 7u);
  EXPECT_EQ((*client)->stats().sessions, 0u);
}

TEST_F(SyncClientTest, StopIsPromptDuringBackoffAndIdempotent) {
  SyncClientOptions o = Options(ClosedLoopbackPort());
  o.backoff_initial = absl::Seconds(30);
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto start = std::chrono::steady_clock::now();
  (*client)->Stop();
  (*client)->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST_F(SyncClientTest, HealthHooksAreNotCalledWithoutAStreamAndNotifyNeverBlocks) {
  SyncClientOptions o = Options(ClosedLoopbackPort());
  o.backoff_initial = absl::Milliseconds(50);
  std::atomic<int> calls{0};
  o.target_health = [&calls] {
    ++calls;
    return std::vector<TargetHealthView>{{"u1", "a.internal", "10.0.0.1:80", "HEALTHY"}};
  };
  o.on_health_override = [](const HealthOverrideCommand&) { return absl::OkStatus(); };
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok());
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) (*client)->NotifyTargetHealthChanged();  // from this thread, CP down
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(calls.load(), 0);  // reports go out on a live stream's heartbeats only
  EXPECT_EQ((*client)->stats().health_reports, 0u);
  const auto stop = std::chrono::steady_clock::now();
  (*client)->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stop, std::chrono::seconds(1));
}

TEST_F(SyncClientTest, StopIsPromptWhileConnectingToABlackhole) {
  // A listening socket that never accepts: the TCP connect succeeds, TLS never completes.
  uint16_t port = 0;
  const int fd = test_support::ListenOnLoopback(0, 1, &port);
  ASSERT_GE(fd, 0);
  auto client = SyncClient::Start(Options(port), NoApply());
  ASSERT_TRUE(client.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto start = std::chrono::steady_clock::now();
  (*client)->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  ::close(fd);
}

TEST_F(SyncClientTest, AStreamTheCpNeverAnswersIsCancelledAndRetried) {
  // The TCP connect succeeds and nothing more ever happens: without the Hello watchdog the
  // client would wait on this one attempt for gRPC's own connect timeout (20 s and more).
  uint16_t port = 0;
  const int fd = test_support::ListenOnLoopback(0, 8, &port);
  ASSERT_GE(fd, 0);
  SyncClientOptions o = Options(port);
  o.hello_reply_timeout = absl::Milliseconds(300);
  o.backoff_initial = absl::Milliseconds(100);
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_GE((*client)->stats().connect_attempts, 3u);
  EXPECT_FALSE((*client)->connected());
  (*client)->Stop();
  ::close(fd);
}

TEST_F(SyncClientTest, ServesTheCachedSnapshotBeforeTheCpAnswers) {
  StoredConfig stored;
  stored.version.epoch = std::string(16, '\x07');
  stored.version.version = 42;
  config::v1::Service svc;
  svc.set_id("00000000-0000-4000-8000-000000000001");
  svc.set_name("svc");
  svc.set_protocol("http");
  svc.set_host("127.0.0.1");
  svc.set_port(80);
  svc.set_enabled(true);
  stored.config.services.push_back(svc);
  FakeClock clock;
  auto built = BuildSnapshot(stored, clock);
  ASSERT_TRUE(built.ok()) << built.status();
  const std::string dir = tmp_.path() + "/cache";
  SnapshotCache cache(dir);
  ASSERT_TRUE(cache.Prepare().ok());
  ASSERT_TRUE(cache.Store({(*built)->version, true, (*built)->uncompressed_size,
                           (*built)->compressed}).ok());

  std::mutex mu;
  std::vector<uint64_t> applied;
  SyncClientOptions o = Options(ClosedLoopbackPort());
  o.snapshot_cache_dir = dir;
  auto client = SyncClient::Start(o, [&](std::shared_ptr<const ConfigSet> config,
                                         const ConfigVersion& version) {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(config->services.size(), 1u);
    applied.push_back(version.version);
    return absl::OkStatus();
  });
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE([&] {
    for (int i = 0; i < 100 && (*client)->serving().empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return !(*client)->serving().empty();
  }());
  EXPECT_EQ((*client)->serving(), (*built)->version);
  EXPECT_TRUE((*client)->stats().loaded_from_cache);
  EXPECT_GT((*client)->last_sync_unix(), 0);  // the cache file's mtime
  EXPECT_FALSE((*client)->connected());
  (*client)->Stop();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(applied, std::vector<uint64_t>{42});
}

TEST_F(SyncClientTest, CorruptedCacheIsNotApplied) {
  const std::string dir = tmp_.path() + "/cache";
  ASSERT_TRUE(SnapshotCache(dir).Prepare().ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/snapshot.cur", "PORTICO-SNAPSHOT-CACHE/1\n garbage", 0600).ok());
  bool called = false;
  SyncClientOptions o = Options(ClosedLoopbackPort());
  o.snapshot_cache_dir = dir;
  auto client = SyncClient::Start(o, [&](std::shared_ptr<const ConfigSet>, const ConfigVersion&) {
    called = true;
    return absl::OkStatus();
  });
  ASSERT_TRUE(client.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  (*client)->Stop();
  EXPECT_FALSE(called);
  EXPECT_TRUE((*client)->serving().empty());
  EXPECT_FALSE((*client)->stats().loaded_from_cache);
  // The file was read and refused (moved out of the rotation), not merely never looked at.
  EXPECT_TRUE(std::filesystem::exists(dir + "/snapshot.cur.bad"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/snapshot.cur"));
}

}  // namespace
}  // namespace portico::dp
