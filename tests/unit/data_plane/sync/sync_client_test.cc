// SyncClient behaviour without a control plane (start-up checks, backoff, prompt Stop(), the
// snapshot cache) and against a scripted fake CP (FakeControlPlane below: full snapshots and
// deltas, ACK/NACK).
#include "data_plane/sync/sync_client.h"

#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <vector>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/clock.h"
#include "common/base/file.h"
#include "common/snapshot/snapshot.h"
#include "common/tls/tls_files.h"
#include "data_plane/sync/snapshot_cache.h"
#include "gtest/gtest.h"
#include "portico/sync/v1/sync.grpc.pb.h"
#include "tests/common/http_wire.h"
#include "tests/common/temp_dir.h"

namespace portico::dp {
namespace {

using test_support::ClosedLoopbackPort;  // a loopback port with nothing listening on it
using test_support::TempDir;
using sync::v1::CpMessage;
using sync::v1::DpMessage;

// A scripted control plane over mutual TLS (the cluster certificates of the test's directory):
// answers a Hello with a HelloReply, then writes what the test queues with Send()/SendSnapshot()
// and records every message of the DP. One stream at a time is enough for these tests.
class FakeControlPlane final : public sync::v1::ConfigSync::Service {
 public:
  ~FakeControlPlane() override { Stop(); }

  // Listens on `host` (127.0.0.1 by default; "[::1]" for IPv6), an ephemeral port, with dir's
  // cp.crt/cp.key, clients verified against ca.crt.
  absl::Status Start(const std::string& dir, const std::string& host = "127.0.0.1") {
    absl::StatusOr<TlsMaterial> tls = LoadTlsMaterial(dir + "/cp.crt", dir + "/cp.key", dir + "/ca.crt");
    if (!tls.ok()) return tls.status();
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = tls->ca_pem;
    ssl.pem_key_cert_pairs.push_back({tls->key_pem, tls->cert_pem});
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(host + ":0", grpc::SslServerCredentials(ssl), &port);
    builder.RegisterService(this);
    builder.SetMaxReceiveMessageSize(4 << 20);
    builder.SetMaxSendMessageSize(4 << 20);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port == 0) return absl::InternalError("fake CP did not start");
    port_ = static_cast<uint16_t>(port);
    return absl::OkStatus();
  }
  uint16_t port() const { return port_; }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }

  // Queues a message for the live stream (or the next one).
  void Send(CpMessage msg) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      outbox_.push_back(std::move(msg));
    }
    cv_.notify_all();
  }
  // Queues every chunk of `snapshot` (full or delta), tagged with `nonce`.
  void SendSnapshot(const BuiltSnapshot& snapshot, uint64_t nonce) {
    for (size_t i = 0; i < snapshot.chunk_count(); ++i) {
      CpMessage msg;
      FillSnapshotChunk(snapshot, i, nonce, msg.mutable_chunk());
      Send(std::move(msg));
    }
  }

  // The first DP message (in arrival order) that `pred` accepts, waiting up to `timeout`.
  std::optional<DpMessage> WaitFor(const std::function<bool(const DpMessage&)>& pred,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    std::optional<DpMessage> found;
    cv_.wait_for(lock, timeout, [&] {
      for (const DpMessage& m : received_) {
        if (pred(m)) {
          found = m;
          return true;
        }
      }
      return false;
    });
    return found;
  }
  std::optional<DpMessage> WaitForAck(uint64_t nonce) {
    return WaitFor([nonce](const DpMessage& m) { return m.has_ack() && m.ack().nonce() == nonce; });
  }
  std::optional<DpMessage> WaitForNack(uint64_t nonce) {
    return WaitFor([nonce](const DpMessage& m) { return m.has_nack() && m.nack().nonce() == nonce; });
  }
  // ACKs and NACKs received so far.
  size_t Answers() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<size_t>(std::count_if(received_.begin(), received_.end(),
                                              [](const DpMessage& m) { return m.has_ack() || m.has_nack(); }));
  }

  grpc::Status Stream(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<CpMessage, DpMessage>* stream) override {
    DpMessage first;
    if (!stream->Read(&first) || !first.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "expected a Hello");
    }
    Record(first);
    CpMessage reply;
    reply.mutable_hello_reply()->set_protocol_version(1);
    reply.mutable_hello_reply()->set_cp_id("fake-cp");
    reply.mutable_hello_reply()->set_heartbeat_interval_s(30);
    if (!stream->Write(reply)) return grpc::Status::OK;
    bool reader_done = false;  // guarded by mu_
    std::thread reader([&] {
      DpMessage m;
      while (stream->Read(&m)) Record(m);
      {
        std::lock_guard<std::mutex> lock(mu_);
        reader_done = true;
      }
      cv_.notify_all();
    });
    while (true) {
      CpMessage next;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || reader_done || !outbox_.empty(); });
        if (stopping_ || reader_done) break;
        next = std::move(outbox_.front());
        outbox_.pop_front();
      }
      if (!stream->Write(next)) break;
    }
    context->TryCancel();  // ends the reader's Read
    reader.join();
    return grpc::Status::OK;
  }

 private:
  void Record(const DpMessage& m) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      received_.push_back(m);
    }
    cv_.notify_all();
  }

  std::unique_ptr<grpc::Server> server_;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;           // guarded by mu_
  std::deque<CpMessage> outbox_;    // guarded by mu_
  std::vector<DpMessage> received_; // guarded by mu_ (Hello included)
};

constexpr char kEpoch[] = "\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07";

std::string ServiceId() { return "00000000-0000-4000-8000-000000000001"; }
std::string RouteId(int i) { return absl::StrFormat("00000000-0000-4000-8000-1000000000%02d", i); }

// Version `version` of a config: one service and the routes numbered in `routes`.
StoredConfig MakeConfig(uint64_t version, const std::vector<int>& routes) {
  StoredConfig stored;
  stored.version.epoch = std::string(kEpoch, 16);
  stored.version.version = version;
  config::v1::Service svc;
  svc.set_id(ServiceId());
  svc.set_name("svc");
  svc.set_protocol("http");
  svc.set_host("127.0.0.1");
  svc.set_port(80);
  svc.set_enabled(true);
  stored.config.services.push_back(svc);
  for (int i : routes) {
    config::v1::Route route;
    route.set_id(RouteId(i));
    route.set_name(absl::StrCat("r", i));
    route.set_service_id(ServiceId());
    route.mutable_paths()->add_values(absl::StrCat("/r", i));
    stored.config.routes.push_back(route);
  }
  return stored;
}

std::shared_ptr<BuiltSnapshot> Build(const StoredConfig& stored) {
  FakeClock clock;
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> built = BuildSnapshot(stored, clock);
  EXPECT_TRUE(built.ok()) << built.status();
  return built.ok() ? *built : nullptr;
}

// The delta from `from` to `to` as the CP builds it.
std::shared_ptr<const BuiltSnapshot> Delta(const BuiltSnapshot& from, const BuiltSnapshot& to) {
  FakeClock clock;
  auto delta = BuildDeltaSnapshot(to, from.version, DiffResources(*from.resources, *to.resources), clock);
  EXPECT_TRUE(delta.ok()) << delta.status();
  return delta.ok() ? *delta : nullptr;
}

std::set<std::string> RouteIds(const ConfigSet& config) {
  std::set<std::string> ids;
  for (const auto& r : config.routes) ids.insert(r.id());
  return ids;
}

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

TEST_F(SyncClientTest, MovesToTheNextControlPlaneWhenTheStreamEnds) {
  FakeControlPlane a, b;
  ASSERT_TRUE(a.Start(tmp_.path()).ok());
  ASSERT_TRUE(b.Start(tmp_.path()).ok());
  const std::string at_a = absl::StrCat("127.0.0.1:", a.port()), at_b = absl::StrCat("127.0.0.1:", b.port());
  SyncClientOptions o = Options(0);
  o.control_plane = absl::StrCat(at_a, ",", at_b);
  o.rotation_start = 0;
  o.backoff_initial = absl::Milliseconds(100);
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok()) << client.status();
  auto connected_to = [&](const std::string& address) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if ((*client)->connected() && (*client)->control_plane().address == address) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  ASSERT_TRUE(connected_to(at_a));
  EXPECT_EQ((*client)->control_plane().entry, at_a);
  EXPECT_EQ((*client)->control_plane().cp_id, "fake-cp");
  EXPECT_EQ((*client)->stats().control_plane_moves, 0u);
  ASSERT_TRUE(b.WaitFor([](const DpMessage& m) { return m.has_hello(); }, std::chrono::milliseconds(1)) ==
              std::nullopt);
  a.Stop();  // the stream ends: the next attempt goes to B
  ASSERT_TRUE(connected_to(at_b));
  EXPECT_EQ((*client)->stats().control_plane_moves, 1u);
  EXPECT_EQ((*client)->stats().sessions, 2u);
  EXPECT_TRUE(b.WaitFor([](const DpMessage& m) { return m.has_hello() && m.hello().node_id() == "node-7"; }));
}

TEST_F(SyncClientTest, AnIpv6EntryIsDialledAndItsCertificateCheckedAgainstTheAddress) {
  FakeControlPlane cp;  // cp.crt carries IP:::1
  ASSERT_TRUE(cp.Start(tmp_.path(), "[::1]").ok());
  SyncClientOptions o = Options(0);
  o.control_plane = absl::StrCat("127.0.0.1:", ClosedLoopbackPort(), ",[::1]:", cp.port());
  o.rotation_start = 0;
  o.backoff_initial = absl::Milliseconds(100);
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok()) << client.status();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(*client)->connected() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE((*client)->connected());
  EXPECT_EQ((*client)->control_plane().address, absl::StrCat("[::1]:", cp.port()));
  EXPECT_EQ((*client)->control_plane().entry, absl::StrCat("[::1]:", cp.port()));
}

TEST_F(SyncClientTest, ACertificateWithoutTheEntrysNameIsRefused) {
  FakeControlPlane cp;  // cp.crt names localhost, 127.0.0.1 and ::1 only
  ASSERT_TRUE(cp.Start(tmp_.path()).ok());
  SyncClientOptions o = Options(0);
  o.control_plane = absl::StrCat("cp.other.test:", cp.port());
  o.resolve = [](const std::string&) -> absl::StatusOr<std::vector<std::string>> {
    return std::vector<std::string>{"127.0.0.1"};
  };
  o.backoff_initial = absl::Milliseconds(100);
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  EXPECT_FALSE((*client)->connected());
  EXPECT_GE((*client)->stats().connect_attempts, 2u);
  EXPECT_EQ((*client)->stats().sessions, 0u);
  (*client)->Stop();
  // The same CP with the name override: accepted.
  o.server_name = "localhost";
  auto named = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(named.ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(*named)->connected() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE((*named)->connected());
}

TEST_F(SyncClientTest, EveryControlPlaneDownStillBacksOffAcrossTheList) {
  SyncClientOptions o = Options(0);
  o.control_plane = absl::StrCat("127.0.0.1:", ClosedLoopbackPort(), ",127.0.0.1:", ClosedLoopbackPort());
  o.rotation_start = 0;
  o.backoff_initial = absl::Milliseconds(100);
  o.backoff_max = absl::Seconds(10);
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  // The same delays as with one CP (~100, 160, 256, 410, 655 ms): moving is no reason to reset them.
  const SyncClientStats stats = (*client)->stats();
  EXPECT_GE(stats.connect_attempts, 3u);
  EXPECT_LE(stats.connect_attempts, 7u);
  EXPECT_EQ(stats.control_plane_moves, stats.connect_attempts - 1) << "every attempt goes to the other CP";
  EXPECT_TRUE((*client)->control_plane().address.empty());
}

TEST_F(SyncClientTest, ANameWithSeveralAddressesIsTriedAddressByAddress) {
  FakeControlPlane cp;  // listens on 127.0.0.1 only: 127.0.0.2 refuses the connection
  ASSERT_TRUE(cp.Start(tmp_.path()).ok());
  SyncClientOptions o = Options(0);
  o.control_plane = absl::StrCat("cps.test:", cp.port());
  o.server_name = "localhost";  // the certificate's name (it does not name cps.test)
  o.rotation_start = 0;
  o.backoff_initial = absl::Milliseconds(100);
  std::atomic<int> lookups{0};
  o.resolve = [&lookups](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
    ++lookups;
    if (host != "cps.test") return absl::NotFoundError(host);
    return std::vector<std::string>{"127.0.0.2", "127.0.0.1"};
  };
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(*client)->connected() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE((*client)->connected());
  const ControlPlaneLink link = (*client)->control_plane();
  EXPECT_EQ(link.address, absl::StrCat("127.0.0.1:", cp.port()));
  EXPECT_EQ(link.entry, absl::StrCat("cps.test:", cp.port()));
  EXPECT_EQ((*client)->stats().connect_attempts, 2u);  // 127.0.0.2 first, refused
  EXPECT_EQ(lookups.load(), 1);                        // both addresses from one lookup
}

TEST_F(SyncClientTest, StopIsPromptWhileTheResolverHangsAndBadListsAreRefused) {
  SyncClientOptions o = Options(0);
  o.control_plane = "stuck.test:8005";
  o.resolve = [](const std::string&) -> absl::StatusOr<std::vector<std::string>> {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    return absl::UnavailableError("timed out");
  };
  auto client = SyncClient::Start(o, NoApply());
  ASSERT_TRUE(client.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto start = std::chrono::steady_clock::now();
  (*client)->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));

  o.control_plane = "127.0.0.1:8005,,127.0.0.1:9005";
  absl::StatusOr<std::unique_ptr<SyncClient>> bad = SyncClient::Start(o, NoApply());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("empty entry"), std::string::npos) << bad.status();
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

// A DP connected to a FakeControlPlane, with an apply function that records what it is given.
class SyncClientDeltaTest : public SyncClientTest {
 protected:
  void SetUp() override {
    SyncClientTest::SetUp();
    ASSERT_TRUE(cp_.Start(tmp_.path()).ok());
  }
  void TearDown() override {
    if (client_) client_->Stop();
    cp_.Stop();
  }
  void StartClient(const std::string& cache_dir = "", std::function<void(SyncClientOptions&)> tweak = nullptr) {
    SyncClientOptions o = Options(cp_.port());
    o.backoff_initial = absl::Milliseconds(50);
    o.snapshot_cache_dir = cache_dir;
    if (tweak) tweak(o);
    auto client = SyncClient::Start(o, [this](std::shared_ptr<const ConfigSet> config, const ConfigVersion& version) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!keep_all_applied_) applied_.clear();  // as a DP's runtime: only the last one is held
      applied_.push_back({version, std::move(config)});
      return absl::OkStatus();
    });
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }
  // Sends `snapshot` with `nonce` and expects an ACK of its version.
  void ExpectAcked(const BuiltSnapshot& snapshot, uint64_t nonce) {
    cp_.SendSnapshot(snapshot, nonce);
    std::optional<DpMessage> ack = cp_.WaitForAck(nonce);
    ASSERT_TRUE(ack.has_value()) << "no ACK of nonce " << nonce;
    EXPECT_EQ(FromVersionRef(ack->ack().serving()), snapshot.version);
    EXPECT_EQ(client_->serving(), snapshot.version);
  }
  size_t AppliedCount() {
    std::lock_guard<std::mutex> lock(mu_);
    return applied_.size();
  }
  std::pair<ConfigVersion, std::shared_ptr<const ConfigSet>> LastApplied() {
    std::lock_guard<std::mutex> lock(mu_);
    return applied_.empty() ? std::pair<ConfigVersion, std::shared_ptr<const ConfigSet>>{} : applied_.back();
  }

  // The route ids of the config last applied (empty, and a failure, if none was).
  std::set<std::string> LastRouteIds() {
    std::shared_ptr<const ConfigSet> config = LastApplied().second;
    if (config == nullptr) {
      ADD_FAILURE() << "nothing applied";
      return {};
    }
    return RouteIds(*config);
  }

  FakeControlPlane cp_;
  std::unique_ptr<SyncClient> client_;
  std::mutex mu_;
  std::vector<std::pair<ConfigVersion, std::shared_ptr<const ConfigSet>>> applied_;  // guarded by mu_
  bool keep_all_applied_ = true;  // set before StartClient
};

TEST_F(SyncClientDeltaTest, ADeltaFromTheServedVersionIsAppliedAndAcked) {
  auto v = Build(MakeConfig(1, {1, 2, 3}));
  auto w = Build(MakeConfig(2, {1, 3, 4, 5}));  // r2 deleted, r4 and r5 added
  ASSERT_TRUE(v && w);
  auto delta = Delta(*v, *w);
  ASSERT_TRUE(delta);
  ASSERT_TRUE(delta->is_delta());
  StartClient();
  std::optional<DpMessage> hello = cp_.WaitFor([](const DpMessage& m) { return m.has_hello(); });
  ASSERT_TRUE(hello.has_value());
  const auto& caps = hello->hello().capabilities();
  EXPECT_NE(std::find(caps.begin(), caps.end(), "delta.v1"), caps.end());

  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*v, 1));
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*delta, 2));
  const SyncClientStats stats = client_->stats();
  EXPECT_EQ(stats.snapshots_applied, 2u);
  EXPECT_EQ(stats.deltas_applied, 1u);
  EXPECT_EQ(stats.deltas_rejected, 0u);
  EXPECT_EQ(stats.snapshots_rejected, 0u);
  ASSERT_EQ(AppliedCount(), 2u);
  auto [version, config] = LastApplied();
  EXPECT_EQ(version, w->version);
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(RouteIds(*config), (std::set<std::string>{RouteId(1), RouteId(3), RouteId(4), RouteId(5)}));
  EXPECT_EQ(config->services.size(), 1u);
  // Equal to what a full snapshot of W decodes to, in order too.
  auto full = DecodeSnapshot(w->compressed, true, w->uncompressed_size, w->version);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(config->routes.size(), (*full).config->routes.size());
  for (size_t i = 0; i < config->routes.size(); ++i) {
    EXPECT_EQ(config->routes[i].SerializeAsString(), (*full).config->routes[i].SerializeAsString());
  }

  // The next delta applies to the held result of the first (W -> X).
  auto x = Build(MakeConfig(3, {3, 4, 5, 6}));
  ASSERT_TRUE(x);
  auto delta2 = Delta(*w, *x);
  ASSERT_TRUE(delta2);
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*delta2, 3));
  EXPECT_EQ(client_->stats().deltas_applied, 2u);
  EXPECT_EQ(LastRouteIds(),
            (std::set<std::string>{RouteId(3), RouteId(4), RouteId(5), RouteId(6)}));
}

// With options.release, the previous version's config and resource index go there (after the
// ACK of the next version) instead of being freed on the client thread.
// After a delta, the version it replaced is kept (RecycledBase): the next delta is built in it
// when nothing else holds it any more, and it goes to the release hook when it was not used.
TEST_F(SyncClientDeltaTest, TheReplacedVersionIsBroughtForwardInPlaceOrGoesToTheReleaseHook) {
  auto v = Build(MakeConfig(1, {1, 2}));
  auto w = Build(MakeConfig(2, {1, 2, 3}));
  auto x = Build(MakeConfig(3, {1, 2, 3, 4}));
  auto y = Build(MakeConfig(4, {2, 3, 4}));
  ASSERT_TRUE(v && w && x && y);
  auto vw = Delta(*v, *w);
  auto wx = Delta(*w, *x);
  auto xy = Delta(*x, *y);
  ASSERT_TRUE(vw && wx && xy);
  std::mutex released_mu;
  std::vector<std::shared_ptr<const void>> released;  // guarded by released_mu
  auto released_count = [&] {
    std::lock_guard<std::mutex> lock(released_mu);
    return released.size();
  };
  // The hook is called right after the ACK is written: wait for it.
  auto wait_released = [&](size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (released_count() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  };
  keep_all_applied_ = false;
  StartClient("", [&](SyncClientOptions& o) {
    o.release = [&](std::shared_ptr<const void> object) {
      std::lock_guard<std::mutex> lock(released_mu);
      released.push_back(std::move(object));
    };
  });
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*v, 1));
  std::shared_ptr<const ConfigSet> v_config = LastApplied().second;  // as a runtime still serving V
  ASSERT_NE(v_config, nullptr);
  // The first delta after a full snapshot is built in a copy of it, made after that ACK.
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*vw, 2));
  const ConfigSet* w_config = LastApplied().second.get();
  EXPECT_NE(w_config, v_config.get());
  EXPECT_EQ(client_->stats().deltas_in_place, 1u);

  // V is still held elsewhere: W -> X is applied to a copy, and V, now two versions behind, goes
  // to the hook (its config and its index).
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*wx, 3));
  ASSERT_TRUE(wait_released(2)) << "the release hook was not called";
  {
    std::lock_guard<std::mutex> lock(released_mu);
    ASSERT_EQ(released.size(), 2u);
    EXPECT_EQ(released[0].get(), static_cast<const void*>(v_config.get()));
    EXPECT_NE(released[1], nullptr);
    EXPECT_NE(released[1].get(), static_cast<const void*>(v_config.get()));
  }
  v_config.reset();
  EXPECT_EQ(client_->stats().deltas_in_place, 1u);

  // Nothing holds W any more (the runtime serves X): X -> Y is built in W's config.
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*xy, 4));
  EXPECT_EQ(LastApplied().second.get(), w_config) << "not brought forward in place";
  EXPECT_EQ(LastRouteIds(), (std::set<std::string>{RouteId(2), RouteId(3), RouteId(4)}));
  EXPECT_EQ(client_->stats().deltas_in_place, 2u);
  EXPECT_EQ(client_->stats().deltas_applied, 3u);
  const std::shared_ptr<const ConfigSet> y_config = LastApplied().second;

  // The served version sent again (e.g. after a reconnect): its fresh copy goes to the hook, and
  // what the runtime uses stays held. Nothing else was released since V.
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*y, 5));
  EXPECT_EQ(LastApplied().second, y_config) << "not applied again";
  ASSERT_TRUE(wait_released(4)) << "the copy was not handed to the hook";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::lock_guard<std::mutex> lock(released_mu);
  ASSERT_EQ(released.size(), 4u);
  EXPECT_NE(released[2].get(), static_cast<const void*>(y_config.get())) << "the held config was released";
  EXPECT_NE(released[3].get(), static_cast<const void*>(y_config.get()));
}

TEST_F(SyncClientDeltaTest, ADeltaWithAWrongResultIsNackedAsHashMismatchThenAFullSnapshotApplies) {
  auto v = Build(MakeConfig(1, {1, 2}));
  auto w = Build(MakeConfig(2, {1, 2, 3, 4}));
  ASSERT_TRUE(v && w);
  // The CP's change list lacks one change: the DP reconstructs something else than W.
  ChangeList changes = DiffResources(*v->resources, *w->resources);
  ASSERT_EQ(changes.size(), 2u);
  changes.pop_back();
  FakeClock clock;
  auto bad = BuildDeltaSnapshot(*w, v->version, changes, clock);
  ASSERT_TRUE(bad.ok()) << bad.status();
  StartClient();
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*v, 1));
  cp_.SendSnapshot(**bad, 2);
  std::optional<DpMessage> nack = cp_.WaitForNack(2);
  ASSERT_TRUE(nack.has_value());
  EXPECT_EQ(nack->nack().code(), sync::v1::Nack::HASH_MISMATCH);
  EXPECT_EQ(FromVersionRef(nack->nack().rejected()), w->version);
  EXPECT_EQ(FromVersionRef(nack->nack().serving()), v->version);
  EXPECT_EQ(client_->serving(), v->version);
  EXPECT_EQ(AppliedCount(), 1u);  // apply never saw the wrong result
  EXPECT_EQ(client_->stats().deltas_rejected, 1u);
  EXPECT_EQ(client_->stats().snapshots_rejected, 1u);

  // The fallback: a full snapshot of W.
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*w, 3));
  EXPECT_EQ(AppliedCount(), 2u);
  EXPECT_EQ(LastRouteIds(),
            (std::set<std::string>{RouteId(1), RouteId(2), RouteId(3), RouteId(4)}));
  EXPECT_EQ(client_->stats().deltas_applied, 0u);
  // And the held config is W's: a delta from W applies.
  auto x = Build(MakeConfig(3, {4}));
  ASSERT_TRUE(x);
  auto delta = Delta(*w, *x);
  ASSERT_TRUE(delta);
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*delta, 4));
  EXPECT_EQ(LastRouteIds(), (std::set<std::string>{RouteId(4)}));
}

TEST_F(SyncClientDeltaTest, ADeltaFromAVersionThatIsNotServedIsNacked) {
  auto u = Build(MakeConfig(1, {1}));
  auto v = Build(MakeConfig(2, {1, 2}));
  auto w = Build(MakeConfig(3, {1, 2, 3}));
  ASSERT_TRUE(u && v && w);
  StartClient();
  // Nothing served yet.
  cp_.SendSnapshot(*Delta(*v, *w), 1);
  std::optional<DpMessage> nack = cp_.WaitForNack(1);
  ASSERT_TRUE(nack.has_value());
  EXPECT_EQ(nack->nack().code(), sync::v1::Nack::INTERNAL);
  EXPECT_TRUE(absl::StrContains(nack->nack().message(), "base is not the served version")) << nack->nack().message();
  EXPECT_TRUE(client_->serving().empty());

  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*v, 2));
  cp_.SendSnapshot(*Delta(*u, *w), 3);  // base U, but the DP serves V
  nack = cp_.WaitForNack(3);
  ASSERT_TRUE(nack.has_value());
  EXPECT_EQ(nack->nack().code(), sync::v1::Nack::INTERNAL);
  EXPECT_TRUE(absl::StrContains(nack->nack().message(), "base is not the served version")) << nack->nack().message();
  EXPECT_EQ(FromVersionRef(nack->nack().serving()), v->version);
  EXPECT_EQ(client_->serving(), v->version);
  EXPECT_EQ(AppliedCount(), 1u);
  EXPECT_EQ(client_->stats().deltas_rejected, 2u);
  EXPECT_EQ(client_->stats().deltas_applied, 0u);

  // Same version number as V, another hash: not V either.
  auto v_other = Build(MakeConfig(2, {7}));
  ASSERT_TRUE(v_other);
  cp_.SendSnapshot(*Delta(*v_other, *w), 4);
  ASSERT_TRUE(cp_.WaitForNack(4).has_value());
  EXPECT_EQ(client_->serving(), v->version);
  EXPECT_EQ(client_->stats().deltas_rejected, 3u);
}

TEST_F(SyncClientDeltaTest, ADeltaToTheServedVersionIsAckedWithoutApply) {
  auto u = Build(MakeConfig(1, {1}));
  auto v = Build(MakeConfig(2, {1, 2}));
  ASSERT_TRUE(u && v);
  StartClient();
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*v, 1));
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*Delta(*u, *v), 2));  // its base is not served, but its target is
  EXPECT_EQ(AppliedCount(), 1u);
  EXPECT_EQ(client_->stats().deltas_rejected, 0u);
}

TEST_F(SyncClientDeltaTest, TheConfigADeltaYieldsIsPersistedAndServedAfterARestart) {
  const std::string dir = tmp_.path() + "/cache";
  auto v = Build(MakeConfig(1, {1, 2}));
  auto w = Build(MakeConfig(2, {2, 3}));
  ASSERT_TRUE(v && w);
  StartClient(dir);
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*v, 1));
  cp_.SendSnapshot(*Delta(*v, *w), 2);
  std::optional<DpMessage> ack = cp_.WaitForAck(2);
  ASSERT_TRUE(ack.has_value());
  EXPECT_TRUE(ack->ack().persisted());
  EXPECT_EQ(client_->stats().persisted, 2u);
  EXPECT_EQ(client_->stats().persist_failures, 0u);
  auto loaded = SnapshotCache(dir).LoadFile(dir + "/snapshot.cur");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->version, w->version);
  EXPECT_EQ(RouteIds(*loaded->config), (std::set<std::string>{RouteId(2), RouteId(3)}));

  // A restarted DP serves W from the cache, and a delta from W applies to it.
  client_->Stop();
  client_.reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    applied_.clear();
  }
  StartClient(dir);
  for (int i = 0; i < 100 && client_->serving().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(client_->stats().loaded_from_cache);
  EXPECT_EQ(client_->serving(), w->version);
  auto x = Build(MakeConfig(3, {3}));
  ASSERT_TRUE(x);
  ASSERT_NO_FATAL_FAILURE(ExpectAcked(*Delta(*w, *x), 3));
  EXPECT_EQ(client_->stats().deltas_applied, 1u);
  EXPECT_EQ(client_->stats().deltas_in_place, 1u);  // in the copy kept after the cache load
  EXPECT_EQ(LastRouteIds(), (std::set<std::string>{RouteId(3)}));
}

}  // namespace
}  // namespace portico::dp
