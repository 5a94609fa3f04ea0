// In-process CP <-> DP sync: a SyncServer with a fake store and SyncClients on 127.0.0.1,
// with certificates generated into a temp dir.
#include "control_plane/sync/sync_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <memory>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/uuid.h"
#include "common/metrics/metrics.h"
#include "common/snapshot/snapshot.h"
#include "common/tls/tls_files.h"
#include "control_plane/sync/admission.h"
#include "control_plane/sync/sync_test_hooks.h"
#include "grpcpp/grpcpp.h"
#include "portico/sync/v1/sync.grpc.pb.h"
#include "data_plane/sync/sync_client.h"
#include "data_plane/sync/sync_client_test_hooks.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico::cp {
namespace {

// The DP side of the stream, as the data plane runs it.
using dp::ApplyConfigFn;
using dp::SyncClient;
using dp::SyncClientOptions;
using dp::SyncClientStats;
using dp::SyncClientTestHooks;

using config::v1::Route;
using config::v1::Service;

using test_support::TempDir;

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

std::string IdFor(int n) { return absl::StrCat("00000000-0000-4000-8000-", absl::StrFormat("%012d", n)); }

Service MakeService(int n) {
  Service s;
  s.set_id(IdFor(n));
  s.set_protocol("http");
  s.set_host(absl::StrCat("backend", n, ".example"));
  s.set_port(80);
  s.set_retries(5);
  s.set_connect_timeout(60000);
  s.set_write_timeout(60000);
  s.set_read_timeout(60000);
  s.set_enabled(true);
  return s;
}

Route MakeRoute(int n, int service) {
  Route r;
  r.set_id(IdFor(1000 + n));
  r.add_protocols("http");
  r.mutable_paths()->add_values(absl::StrCat("/r", n));
  r.set_https_redirect_status_code(426);
  r.set_path_handling("v0");
  r.set_strip_path(true);
  r.set_service_id(IdFor(service));
  return r;
}

// What the DP's apply function saw; can be told to fail some versions.
struct ApplyRecorder {
  std::mutex mu;
  std::vector<ConfigVersion> applied;  // every call, including failed ones
  std::shared_ptr<const ConfigSet> last_ok;
  std::set<uint64_t> fail_versions;

  ApplyConfigFn Fn() {
    return [this](std::shared_ptr<const ConfigSet> config, const ConfigVersion& v) {
      std::lock_guard<std::mutex> lock(mu);
      applied.push_back(v);
      if (fail_versions.count(v.version) != 0) {
        return absl::InternalError("boom: tls certificate for sni example.com cannot be loaded");
      }
      last_ok = std::move(config);
      return absl::OkStatus();
    };
  }
  size_t CallsFor(uint64_t version) {
    std::lock_guard<std::mutex> lock(mu);
    size_t n = 0;
    for (const auto& v : applied) n += v.version == version ? 1 : 0;
    return n;
  }
  size_t Calls() {
    std::lock_guard<std::mutex> lock(mu);
    return applied.size();
  }
};

class SyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = tmp_.path() + "/certs";
    ASSERT_TRUE(GenerateClusterCertificates(certs_, {}, "dp-1").ok());
    stored_.version.epoch = std::string(16, '\x07');
    stored_.version.version = 1;
    stored_.config.services = {MakeService(1)};
    stored_.config.routes = {MakeRoute(1, 1)};
  }
  void TearDown() override {
    for (auto& c : clients_) c->Stop();
    if (server_) server_->Stop();
  }

  // Mutates the fake store (bumping the version) and notifies the server.
  void Change(const std::function<void(ConfigSet&)>& edit, bool notify = true) {
    {
      std::lock_guard<std::mutex> lock(store_mu_);
      edit(stored_.config);
      ++stored_.version.version;
    }
    if (notify && server_) server_->NotifyConfigChanged();
  }
  uint64_t StoreVersion() {
    std::lock_guard<std::mutex> lock(store_mu_);
    return stored_.version.version;
  }

  void StartServer(uint16_t port = 0,
                   const std::function<void(SyncServerOptions&)>& tweak = nullptr) {
    SyncServerOptions options;
    options.listen = absl::StrCat("127.0.0.1:", port);
    options.cert_file = certs_ + "/cp.crt";
    options.key_file = certs_ + "/cp.key";
    options.ca_file = certs_ + "/ca.crt";
    options.cp_id = "cp-test";
    options.heartbeat_interval = absl::Seconds(1);
    if (tweak) tweak(options);
    auto server = SyncServer::Start(
        options,
        [this]() -> absl::StatusOr<StoredConfig> {
          std::lock_guard<std::mutex> lock(store_mu_);
          ++reads_;
          if (fail_reads_) return absl::UnavailableError("database is locked");
          return stored_;
        },
        clock_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  SyncClientOptions ClientOptions(const std::string& prefix, const std::string& ca_dir = "") {
    SyncClientOptions options;
    options.control_plane = absl::StrCat("127.0.0.1:", server_->port());
    options.cert_file = prefix + ".crt";
    options.key_file = prefix + ".key";
    options.ca_file = (ca_dir.empty() ? certs_ : ca_dir) + "/ca.crt";
    options.hostname = "dp-host";
    options.backoff_initial = absl::Milliseconds(100);
    options.backoff_max = absl::Milliseconds(500);
    return options;
  }

  SyncClient* StartClient(SyncClientOptions options, ApplyRecorder& recorder,
                          const SyncClientTestHooks* hooks = nullptr) {
    auto client = SyncClient::Start(std::move(options), recorder.Fn(), hooks);
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return nullptr;
    clients_.push_back(std::move(*client));
    return clients_.back().get();
  }

  std::optional<DataPlaneStatus> StatusOf(const std::string& id) {
    for (const DataPlaneStatus& s : server_->ListDataPlanes()) {
      if (s.id == id) return s;
    }
    return std::nullopt;
  }
  bool StateIs(const std::string& id, const std::string& state) {
    auto s = StatusOf(id);
    return s && s->state == state;
  }

  TempDir tmp_;
  std::string certs_;
  FakeClock clock_{1700000000};
  std::mutex store_mu_;
  StoredConfig stored_;
  int reads_ = 0;
  bool fail_reads_ = false;  // guarded by store_mu_
  std::unique_ptr<SyncServer> server_;
  std::vector<std::unique_ptr<SyncClient>> clients_;
};

TEST_F(SyncTest, FirstSnapshotIsDeliveredAndAcked) {
  StartServer();
  ASSERT_FALSE(server_->latest().empty());
  EXPECT_EQ(server_->latest().version, 1u);
  ApplyRecorder rec;
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->node_id(), "dp-1");

  ASSERT_TRUE(WaitFor([&] { return client->serving() == server_->latest(); }));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_TRUE(client->connected());
  auto status = StatusOf("dp-1");
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->config_hash, ToHex(server_->latest().hash));
  EXPECT_EQ(status->config_hash.size(), 64u);
  EXPECT_EQ(status->config_version, 1u);
  EXPECT_EQ(status->sync_status, "normal");
  EXPECT_EQ(status->hostname, "dp-host");
  EXPECT_EQ(status->ip, "127.0.0.1");
  EXPECT_EQ(status->version, PORTICO_VERSION);
  EXPECT_GT(status->cert_expiry, clock_.NowSeconds());
  EXPECT_EQ(status->last_seen, clock_.NowSeconds());

  std::lock_guard<std::mutex> lock(rec.mu);
  ASSERT_EQ(rec.applied.size(), 1u);
  ASSERT_NE(rec.last_ok, nullptr);
  ASSERT_EQ(rec.last_ok->services.size(), 1u);
  EXPECT_EQ(rec.last_ok->services[0].host(), "backend1.example");
  ASSERT_EQ(rec.last_ok->routes.size(), 1u);
  EXPECT_EQ(rec.last_ok->routes[0].paths().values(0), "/r1");
}

TEST_F(SyncTest, TheDataPlanesChangedCallbackFiresWhenAStreamStartsAndEnds) {
  StartServer();
  auto calls = std::make_shared<std::atomic<int>>(0);  // the callback may run until the server stops
  server_->SetOnDataPlanesChanged([calls] { ++*calls; });
  ApplyRecorder rec;
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  ASSERT_TRUE(WaitFor([&] { return calls->load() >= 1; }));
  const int after_connect = calls->load();
  client->Stop();
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "disconnected"); }));
  EXPECT_TRUE(WaitFor([&] { return calls->load() > after_connect; }));
  server_->SetOnDataPlanesChanged(nullptr);  // an empty callback is allowed
}

TEST_F(SyncTest, ChangeAfterNotifyReachesTheClientAndHeartbeatsUpdateLastSeen) {
  StartServer();
  ApplyRecorder rec;
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 1; }));

  Change([](ConfigSet& c) {
    c.services.push_back(MakeService(2));
    c.routes.push_back(MakeRoute(2, 2));
  });
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 2; }));
  EXPECT_EQ(client->serving(), server_->latest());
  {
    std::lock_guard<std::mutex> lock(rec.mu);
    EXPECT_EQ(rec.last_ok->routes.size(), 2u);
  }
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced") && StatusOf("dp-1")->config_version == 2; }));

  clock_.Advance(100);  // the next heartbeat (every 1 s) records the new time
  EXPECT_TRUE(WaitFor([&] { return StatusOf("dp-1")->last_seen == clock_.NowSeconds(); },
                      std::chrono::seconds(3)));
}

TEST_F(SyncTest, BurstOfNotificationsBuildsFewSnapshots) {
  StartServer();
  ApplyRecorder rec;
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 1; }));
  const uint64_t before = server_->snapshots_published();
  const int reads_before = reads_;

  for (int i = 0; i < 100; ++i) {  // ~300 ms of writes, 3 ms apart
    Change([i](ConfigSet& c) { c.routes[0].mutable_paths()->set_values(0, absl::StrCat("/burst", i)); });
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
  const uint64_t final_version = StoreVersion();
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == final_version; }));
  const uint64_t built = server_->snapshots_published() - before;
  EXPECT_GE(built, 1u);
  EXPECT_LE(built, 3u) << "debounce should coalesce 100 notifications";
  EXPECT_LE(reads_ - reads_before, 3);
  std::lock_guard<std::mutex> lock(rec.mu);
  EXPECT_EQ(rec.last_ok->routes[0].paths().values(0), "/burst99");
  EXPECT_LE(rec.applied.size(), 4u);
}

TEST_F(SyncTest, NackIsRecordedAndTheVersionIsNotResent) {
  StartServer();
  ApplyRecorder rec;
  rec.fail_versions = {2};
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 1; }));

  Change([](ConfigSet& c) { c.services[0].set_host("changed.example"); });
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "nacked"); }));
  auto status = StatusOf("dp-1");
  EXPECT_NE(status->last_error.find("boom: tls certificate"), std::string::npos) << status->last_error;
  EXPECT_NE(status->last_error.find("BUILD"), std::string::npos) << status->last_error;
  EXPECT_EQ(status->config_version, 1u);  // still serving the old one
  EXPECT_EQ(client->serving().version, 1u);
  EXPECT_EQ(client->stats().snapshots_rejected, 1u);

  // Not resent on this stream (heartbeats keep flowing)...
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(rec.CallsFor(2), 1u);
  // ...nor to a new stream of the same node.
  client->Stop();
  ApplyRecorder rec2;
  SyncClient* again = StartClient(ClientOptions(certs_ + "/dp"), rec2);
  ASSERT_TRUE(WaitFor([&] { return again->connected(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(rec2.Calls(), 0u);
  EXPECT_TRUE(WaitFor([&] { return StateIs("dp-1", "nacked"); }));

  // A newer version is sent.
  Change([](ConfigSet& c) { c.services[0].set_host("fixed.example"); });
  ASSERT_TRUE(WaitFor([&] { return again->serving().version == 3; }));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->last_error, "");
}

TEST_F(SyncTest, ClientWithCertificateFromAnotherCaNeverGetsConfig) {
  StartServer();
  TempDir other;
  ASSERT_TRUE(GenerateClusterCertificates(other.path(), {}, "dp-1").ok());
  ApplyRecorder rec;
  // Trusts our CA for the server, but presents a certificate the CP cannot verify.
  SyncClientOptions options = ClientOptions(other.path() + "/dp");
  options.backoff_initial = absl::Milliseconds(200);
  options.backoff_max = absl::Seconds(5);
  SyncClient* client = StartClient(options, rec);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  SyncClientStats stats = client->stats();
  EXPECT_EQ(stats.sessions, 0u);
  EXPECT_FALSE(client->connected());
  EXPECT_EQ(rec.Calls(), 0u);
  EXPECT_TRUE(client->serving().empty());
  // 200 ms x 1.6^n with jitter: about 5 attempts in 2.5 s; a hot loop would make hundreds.
  EXPECT_GE(stats.connect_attempts, 2u);
  EXPECT_LE(stats.connect_attempts, 8u);
  EXPECT_TRUE(server_->ListDataPlanes().empty());
}

TEST_F(SyncTest, NodeIdMismatchIsRefusedAndRetriedSlowly) {
  StartServer();
  ApplyRecorder rec;
  SyncClientOptions options = ClientOptions(certs_ + "/dp");
  struct Impostor final : SyncClientTestHooks {
    std::string HelloNodeId(const std::string&) const override { return "impostor"; }
  };
  static const Impostor impostor;  // outlives the client, which reconnects until the fixture ends
  SyncClient* client = StartClient(options, rec, &impostor);
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "refused"); }));
  auto status = StatusOf("dp-1");
  EXPECT_NE(status->last_error.find("impostor"), std::string::npos) << status->last_error;
  ASSERT_TRUE(WaitFor([&] { return client->stats().refusals == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(client->stats().connect_attempts, 1u);  // refused_retry is 60 s
  EXPECT_EQ(rec.Calls(), 0u);
  EXPECT_FALSE(client->connected());
}

TEST_F(SyncTest, IncompatibleBuildIsRefused) {
  StartServer();
  ApplyRecorder rec;
  SyncClientOptions options = ClientOptions(certs_ + "/dp");
  options.dp_build = "99.0.0";
  SyncClient* client = StartClient(options, rec);
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "incompatible"); }));
  auto status = StatusOf("dp-1");
  EXPECT_EQ(status->sync_status, "kong_version_incompatible");
  EXPECT_EQ(status->version, "99.0.0");
  ASSERT_TRUE(WaitFor([&] { return client->stats().refusals == 1; }));
  EXPECT_EQ(rec.Calls(), 0u);
}

// A refused DP is shown serving nothing, even when its Hello claims a version (here one loaded
// from its snapshot cache): the claim of a DP the CP did not admit is not trusted.
TEST_F(SyncTest, RefusedDataPlaneIsShownServingNothing) {
  StartServer();
  TempDir cache;
  ApplyRecorder rec1;
  SyncClientOptions first = ClientOptions(certs_ + "/dp");
  first.snapshot_cache_dir = cache.path();
  SyncClient* one = StartClient(first, rec1);
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->config_version, 1u);
  EXPECT_FALSE(StatusOf("dp-1")->config_hash.empty());
  one->Stop();

  ApplyRecorder rec2;
  SyncClientOptions second = ClientOptions(certs_ + "/dp");
  second.snapshot_cache_dir = cache.path();
  second.dp_build = "99.0.0";
  SyncClient* two = StartClient(second, rec2);
  ASSERT_TRUE(WaitFor([&] { return two->serving().version == 1; }));  // from its cache
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "incompatible"); }));
  EXPECT_EQ(StatusOf("dp-1")->config_version, 0u);
  EXPECT_TRUE(StatusOf("dp-1")->config_hash.empty());
}

TEST_F(SyncTest, OlderMinorIsAccepted) {
  StartServer();
  ApplyRecorder rec;
  SyncClientOptions options = ClientOptions(certs_ + "/dp");
  options.dp_build = "0.0.9";  // CP is 0.2.x
  SyncClient* client = StartClient(options, rec);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 1; }));
}

// A DP that cannot run a configured plugin (an older build announces no plugins) would serve the
// plugin's routes without it: the CP sends it no such config (Kong's plugin_set_incompatible),
// and sends again once the config no longer needs the plugin.
TEST_F(SyncTest, DataPlaneThatCannotRunAConfiguredPluginGetsNoConfigWithIt) {
  StartServer();
  ApplyRecorder rec;
  SyncClientOptions old_build = ClientOptions(certs_ + "/dp");
  old_build.dp_build = "0.1.0";  // announces no plugins
  SyncClient* client = StartClient(old_build, rec);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 1; }));
  EXPECT_EQ(StatusOf("dp-1")->sync_status, "normal");

  Change([](ConfigSet& c) {
    config::v1::Plugin p;
    p.set_id(IdFor(5000));
    p.set_name("request-termination");
    p.set_config(R"({"status_code":403})");
    p.add_protocols("http");
    p.set_enabled(true);
    c.plugins.push_back(p);
  });
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "incompatible"); }));
  auto status = StatusOf("dp-1");
  EXPECT_EQ(status->sync_status, "plugin_set_incompatible");
  EXPECT_NE(status->last_error.find("request-termination"), std::string::npos) << status->last_error;
  EXPECT_EQ(status->config_version, 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(client->serving().version, 1u);
  EXPECT_EQ(rec.CallsFor(2), 0u);

  // A build that runs the plugin gets the config.
  client->Stop();
  ApplyRecorder rec_new;
  SyncClientOptions new_build = ClientOptions(certs_ + "/dp");
  new_build.plugins = {"key-auth", "request-termination"};
  SyncClient* upgraded = StartClient(new_build, rec_new);
  ASSERT_TRUE(WaitFor([&] { return upgraded->serving().version == 2; }));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->sync_status, "normal");
  upgraded->Stop();

  // The old build again: it gets the config as soon as the plugin is gone.
  ApplyRecorder rec_old;
  SyncClient* old_again = StartClient(old_build, rec_old);
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "incompatible"); }));
  Change([](ConfigSet& c) { c.plugins.clear(); });
  ASSERT_TRUE(WaitFor([&] { return old_again->serving().version == 3; }));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->sync_status, "normal");
  EXPECT_TRUE(StatusOf("dp-1")->last_error.empty());
}

TEST_F(SyncTest, RestartedServerAnswersUpToDateOrSendsTheNewVersion) {
  StartServer();
  const uint16_t port = server_->port();
  ApplyRecorder rec;
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 1; }));
  ASSERT_EQ(rec.Calls(), 1u);

  // Same state after the restart: UpToDate, nothing resent.
  server_->Stop();
  server_.reset();
  ASSERT_TRUE(WaitFor([&] { return !client->connected(); }));
  StartServer(port);
  ASSERT_TRUE(WaitFor([&] { return client->stats().up_to_date >= 1; }));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->config_hash, ToHex(server_->latest().hash));
  EXPECT_EQ(rec.Calls(), 1u);

  // Changed while the CP was down: the new version is sent.
  server_->Stop();
  server_.reset();
  ASSERT_TRUE(WaitFor([&] { return !client->connected(); }));
  Change([](ConfigSet& c) { c.routes.push_back(MakeRoute(2, 1)); }, /*notify=*/false);
  StartServer(port);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 2; }));
  EXPECT_EQ(rec.Calls(), 2u);
  EXPECT_EQ(client->stats().snapshots_applied, 2u);
  EXPECT_EQ(client->stats().up_to_date, 1u);
}

TEST_F(SyncTest, SecondStreamOfTheSameNodeReplacesTheFirst) {
  StartServer();
  ApplyRecorder rec1, rec2;
  SyncClient* first = StartClient(ClientOptions(certs_ + "/dp"), rec1);
  ASSERT_TRUE(WaitFor([&] { return first->serving().version == 1; }));
  SyncClient* second = StartClient(ClientOptions(certs_ + "/dp"), rec2);
  ASSERT_TRUE(WaitFor([&] { return second->serving().version == 1; }));
  // The first one got Goaway{DUPLICATE_NODE} and backs off slowly (refused_retry).
  ASSERT_TRUE(WaitFor([&] { return first->stats().refusals == 1 && !first->connected(); }));
  EXPECT_TRUE(second->connected());
  ASSERT_EQ(server_->ListDataPlanes().size(), 1u);
  EXPECT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));  // after the ACK
}

TEST_F(SyncTest, DisconnectedDataPlaneStaysListed) {
  StartServer();
  ASSERT_TRUE(IssueDataPlaneCertificate(certs_, "dp-2", certs_ + "/dp2").ok());
  ApplyRecorder rec1, rec2;
  SyncClient* one = StartClient(ClientOptions(certs_ + "/dp"), rec1);
  SyncClient* two = StartClient(ClientOptions(certs_ + "/dp2"), rec2);
  ASSERT_TRUE(WaitFor([&] { return one->serving().version == 1 && two->serving().version == 1; }));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced") && StateIs("dp-2", "connected_synced"); }));
  two->Stop();
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-2", "disconnected"); }));
  std::vector<DataPlaneStatus> list = server_->ListDataPlanes();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].id, "dp-1");
  EXPECT_EQ(list[1].id, "dp-2");
  EXPECT_EQ(list[1].config_version, 1u);
}

TEST_F(SyncTest, SecondServerOnTheSamePortFailsToStart) {
  StartServer();
  SyncServerOptions options;
  options.listen = absl::StrCat("127.0.0.1:", server_->port());
  options.cert_file = certs_ + "/cp.crt";
  options.key_file = certs_ + "/cp.key";
  options.ca_file = certs_ + "/ca.crt";
  auto second = SyncServer::Start(options, [this]() -> absl::StatusOr<StoredConfig> { return stored_; }, clock_);
  EXPECT_FALSE(second.ok());
  options.cert_file = certs_ + "/missing.crt";
  options.listen = "127.0.0.1:0";
  EXPECT_EQ(SyncServer::Start(options, [this]() -> absl::StatusOr<StoredConfig> { return stored_; }, clock_)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SyncTest, InvalidConfigIsNotPublished) {
  StartServer();
  const ConfigVersion before = server_->latest();
  Change([](ConfigSet& c) { c.services[0].set_host(""); });  // host is required
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(server_->latest(), before);
  Change([](ConfigSet& c) { c.services[0].set_host("ok.example"); });
  ASSERT_TRUE(WaitFor([&] { return server_->latest().version == 3; }));
}

bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// A store version the CP cannot build leaves the DPs on the last published one: they are shown
// "outdated" and lagging (not "connected_synced" with lag 0), the build status and metrics say
// why, and the next good version is published to them.
TEST_F(SyncTest, UnbuildableVersionShowsDataPlanesOutdatedUntilRepaired) {
  Registry registry;
  StartServer(0, [&](SyncServerOptions& o) { o.metrics = &registry; });
  ApplyRecorder rec;
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_FALSE(server_->BuildStatus().failing);
  EXPECT_EQ(server_->BuildStatus().store_version, 1u);

  Change([](ConfigSet& c) { c.services[0].set_host(""); });  // invalid: host is required
  ASSERT_TRUE(WaitFor([&] { return server_->BuildStatus().failing; }));
  clock_.Advance(5);
  ConfigBuildStatus build = server_->BuildStatus();
  EXPECT_EQ(build.reason, "invalid_config");
  EXPECT_TRUE(Contains(build.error, "host: required field missing")) << build.error;
  EXPECT_EQ(build.store_version, 2u);
  EXPECT_EQ(build.published_version, 1u);
  EXPECT_EQ(build.failing_since, clock_.NowSeconds() - 5);
  auto status = StatusOf("dp-1");
  EXPECT_EQ(status->state, "outdated");
  EXPECT_EQ(status->config_version, 1u);
  EXPECT_EQ(status->lag_versions, 1u);
  EXPECT_EQ(status->lag_seconds, 5);
  std::string text = registry.Render();
  EXPECT_TRUE(Contains(text, "portico_cp_config_build_failing{reason=\"invalid_config\"} 1\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_config_build_failing{reason=\"corrupt_rows\"} 0\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_store_config_version 2\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_config_version 1\n")) << text;

  // A corrupt row: never published without it, even though the rest is valid.
  Change([this](ConfigSet& c) {  // (runs under store_mu_)
    c.services[0].set_host("ok.example");
    stored_.corrupt = {CorruptRow{"routes", IdFor(1099), "does not parse"}};
  });
  ASSERT_TRUE(WaitFor([&] { return server_->BuildStatus().reason == "corrupt_rows"; }));
  build = server_->BuildStatus();
  EXPECT_EQ(build.store_version, 3u);
  EXPECT_EQ(build.corrupt_row_count, 1u);
  ASSERT_EQ(build.corrupt_rows.size(), 1u);
  EXPECT_EQ(build.corrupt_rows[0].id, IdFor(1099));
  EXPECT_TRUE(Contains(build.error, IdFor(1099))) << build.error;
  EXPECT_EQ(server_->latest().version, 1u);
  EXPECT_EQ(server_->snapshots_published(), 1u);
  EXPECT_EQ(StatusOf("dp-1")->state, "outdated");
  EXPECT_EQ(StatusOf("dp-1")->lag_versions, 2u);
  text = registry.Render();
  EXPECT_TRUE(Contains(text, "portico_cp_config_build_failing{reason=\"corrupt_rows\"} 1\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_config_build_failing{reason=\"invalid_config\"} 0\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_store_corrupt_rows 1\n")) << text;
  EXPECT_EQ(client->serving().version, 1u);
  EXPECT_EQ(rec.Calls(), 1u);

  // Repaired (the row deleted): published, delivered, converged.
  Change([this](ConfigSet&) { stored_.corrupt.clear(); });
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 4; }));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->lag_versions, 0u);
  EXPECT_EQ(StatusOf("dp-1")->lag_seconds, 0);
  build = server_->BuildStatus();
  EXPECT_FALSE(build.failing);
  EXPECT_EQ(build.reason, "");
  EXPECT_TRUE(build.published);
  EXPECT_EQ(build.published_version, 4u);
  EXPECT_EQ(build.corrupt_row_count, 0u);
  text = registry.Render();
  EXPECT_TRUE(Contains(text, "portico_cp_config_build_failing{reason=\"corrupt_rows\"} 0\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_store_corrupt_rows 0\n")) << text;
}

// A failed read is reported like a failed build, and cleared by the next read even when that one
// finds the published version (nothing to build).
TEST_F(SyncTest, ReadErrorIsReportedUntilTheNextGoodRead) {
  StartServer();
  ApplyRecorder rec;
  StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    fail_reads_ = true;
  }
  server_->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return server_->BuildStatus().failing; }));
  EXPECT_EQ(server_->BuildStatus().reason, "read_error");
  EXPECT_TRUE(Contains(server_->BuildStatus().error, "database is locked"));
  EXPECT_TRUE(Contains(server_->metrics_text(), "portico_cp_config_build_failing{reason=\"read_error\"} 1\n"));
  EXPECT_EQ(StatusOf("dp-1")->state, "outdated");
  {
    std::lock_guard<std::mutex> lock(store_mu_);
    fail_reads_ = false;
  }
  server_->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return !server_->BuildStatus().failing; }));
  EXPECT_EQ(StatusOf("dp-1")->state, "connected_synced");
  EXPECT_TRUE(Contains(server_->metrics_text(), "portico_cp_config_build_failing{reason=\"read_error\"} 0\n"));
}

// A CP restarted on a store with a corrupt row starts (it used to refuse), publishes nothing,
// keeps the DP on what it serves and shows it outdated; after the repair the DP converges.
TEST_F(SyncTest, StartsOnAStoreWithACorruptRowAndPublishesOnceRepaired) {
  StartServer();
  const uint16_t port = server_->port();
  ApplyRecorder rec;
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 1; }));
  server_->Stop();
  server_.reset();
  ASSERT_TRUE(WaitFor([&] { return !client->connected(); }));
  Change([](ConfigSet&) {}, /*notify=*/false);
  stored_.corrupt = {CorruptRow{"services", IdFor(99), "does not parse"}};

  StartServer(port);
  EXPECT_TRUE(server_->latest().empty());
  ConfigBuildStatus build = server_->BuildStatus();
  EXPECT_TRUE(build.failing);
  EXPECT_EQ(build.reason, "corrupt_rows");
  EXPECT_FALSE(build.published);
  EXPECT_EQ(build.store_version, 2u);
  ASSERT_TRUE(WaitFor([&] { return client->connected() && StateIs("dp-1", "outdated"); }));
  EXPECT_EQ(StatusOf("dp-1")->lag_versions, 1u);
  EXPECT_EQ(StatusOf("dp-1")->config_version, 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(client->serving().version, 1u);  // keeps serving its last snapshot
  EXPECT_EQ(rec.Calls(), 1u);

  Change([this](ConfigSet&) { stored_.corrupt.clear(); });
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 3; }));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->lag_versions, 0u);
  EXPECT_FALSE(server_->BuildStatus().failing);
}

// gRPC holds a TCP connection that never starts TLS for its handshake timeout (120 s by
// default); the CP sets its own (here 1 s), so a silent connection is closed quickly.
TEST_F(SyncTest, ConnectionThatNeverHandshakesIsClosedAfterTheHandshakeTimeout) {
  StartServer(0, [](SyncServerOptions& o) { o.handshake_timeout = absl::Seconds(1); });
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server_->port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{20, 0};  // a bound the 120 s default could not meet
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const auto start = std::chrono::steady_clock::now();
  char byte = 0;
  const ssize_t n = read(fd, &byte, 1);  // sends nothing; waits for the CP to close
  const int error = errno;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  close(fd);
  EXPECT_TRUE(n == 0 || (n < 0 && error == ECONNRESET)) << "read returned " << n << " errno " << error;
  EXPECT_LT(seconds, 10.0);
  EXPECT_GT(seconds, 0.5);
}

// --- Admission bucket (pure logic, injected time) ---

TEST(AdmissionBucketTest, BurstThenRateThenSpreadRetries) {
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  AdmissionBucket bucket(/*rate_per_s=*/2, /*burst=*/3, t0);
  uint32_t retry = 0;
  EXPECT_TRUE(bucket.TryAdmit(t0, &retry));
  EXPECT_TRUE(bucket.TryAdmit(t0, &retry));
  EXPECT_TRUE(bucket.TryAdmit(t0, &retry));
  // Empty: each refusal is told a later slot (0.5 s apart at 2/s, rounded up to whole seconds).
  std::vector<uint32_t> retries;
  for (int i = 0; i < 6; ++i) {
    ASSERT_FALSE(bucket.TryAdmit(t0, &retry));
    retries.push_back(retry);
  }
  EXPECT_EQ(retries, (std::vector<uint32_t>{1, 1, 2, 2, 3, 3}));
  // Half a second later one token is back.
  EXPECT_TRUE(bucket.TryAdmit(t0 + std::chrono::milliseconds(500), &retry));
  EXPECT_FALSE(bucket.TryAdmit(t0 + std::chrono::milliseconds(500), &retry));
  // Refill is capped at the burst.
  EXPECT_DOUBLE_EQ(bucket.tokens(t0 + std::chrono::hours(1)), 3.0);
}

TEST(AdmissionBucketTest, RetryAfterIsCappedAndZeroRateDisablesTheLimit) {
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  AdmissionBucket slow(/*rate_per_s=*/0.001, /*burst=*/1, t0);
  uint32_t retry = 0;
  EXPECT_TRUE(slow.TryAdmit(t0, &retry));
  EXPECT_FALSE(slow.TryAdmit(t0, &retry, /*max_retry_s=*/60));
  EXPECT_EQ(retry, 60u);
  AdmissionBucket off(/*rate_per_s=*/0, /*burst=*/1, t0);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(off.TryAdmit(t0, &retry));
}

// --- Server-side limits, timeouts, lag and metrics ---

TEST_F(SyncTest, AdmissionLimitRefusesNewStreamsWithRetryAfter) {
  StartServer(0, [](SyncServerOptions& o) {
    o.admission_rate = 0.01;  // one token per 100 s
    o.admission_burst = 1;
  });
  ASSERT_TRUE(IssueDataPlaneCertificate(certs_, "dp-2", certs_ + "/dp2").ok());
  ApplyRecorder rec1, rec2;
  SyncClient* one = StartClient(ClientOptions(certs_ + "/dp"), rec1);
  ASSERT_TRUE(WaitFor([&] { return one->serving().version == 1; }));
  SyncClient* two = StartClient(ClientOptions(certs_ + "/dp2"), rec2);
  ASSERT_TRUE(WaitFor([&] { return server_->stats().admission_rejects >= 1; }));
  // retry_after_s (>= 1 s, here capped at 60 s) is honoured: no hot retry loop.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(two->stats().connect_attempts, 1u);
  EXPECT_EQ(two->stats().refusals, 0u);  // an overload is not a refusal
  EXPECT_FALSE(two->connected());
  EXPECT_EQ(rec2.Calls(), 0u);
  EXPECT_FALSE(StatusOf("dp-2").has_value());
  EXPECT_EQ(server_->stats().admission_rejects, 1u);
  EXPECT_TRUE(Contains(server_->metrics_text(), "portico_cp_admission_rejects_total 1\n"))
      << server_->metrics_text();
  EXPECT_TRUE(one->connected());
}

TEST_F(SyncTest, HelloTimeoutClosesAStreamThatNeverSaysHello) {
  StartServer(0, [](SyncServerOptions& o) { o.hello_timeout = absl::Milliseconds(300); });
  auto read = [](const std::string& path) { return *ReadFileToString(path); };
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = read(certs_ + "/ca.crt");
  ssl.pem_private_key = read(certs_ + "/dp.key");
  ssl.pem_cert_chain = read(certs_ + "/dp.crt");
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::SslCredentials(ssl));
  auto stub = sync::v1::ConfigSync::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->Stream(&context);
  sync::v1::CpMessage msg;
  ASSERT_TRUE(stream->Read(&msg));  // sends nothing; the CP gives up after 300 ms
  ASSERT_TRUE(msg.has_goaway());
  EXPECT_EQ(msg.goaway().code(), sync::v1::Goaway::HELLO_TIMEOUT);
  EXPECT_FALSE(stream->Read(&msg));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_EQ(server_->stats().hello_timeouts, 1u);
  EXPECT_TRUE(WaitFor([&] { return server_->stats().streams_live == 0; }));
}

TEST_F(SyncTest, MissingAckMarksTheDataPlaneStaleUntilItAcks) {
  StartServer(0, [](SyncServerOptions& o) {
    o.ack_timeout = absl::Milliseconds(300);
    o.ack_timeout_per_mib = absl::ZeroDuration();
  });
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool open = false;
  std::atomic<int> calls{0};
  auto client = SyncClient::Start(ClientOptions(certs_ + "/dp"),
                                  [&](std::shared_ptr<const ConfigSet>, const ConfigVersion& v) {
                                    ++calls;
                                    if (v.version == 2) {  // hold version 2 until released
                                      std::unique_lock<std::mutex> lock(gate_mu);
                                      gate_cv.wait(lock, [&] { return open; });
                                    }
                                    return absl::OkStatus();
                                  });
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(WaitFor([&] { return (*client)->serving().version == 1; }));
  Change([](ConfigSet& c) { c.services[0].set_host("slow.example"); });
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "stale"); }));
  EXPECT_EQ(server_->stats().stale_transitions, 1u);
  EXPECT_EQ(StatusOf("dp-1")->lag_versions, 1u);
  {
    std::lock_guard<std::mutex> lock(gate_mu);
    open = true;
  }
  gate_cv.notify_all();
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->config_version, 2u);
  EXPECT_EQ(StatusOf("dp-1")->lag_versions, 0u);
  EXPECT_EQ(calls.load(), 2);  // stale does not resend
  (*client)->Stop();
}

TEST_F(SyncTest, FullSendCapSerializesSendsAndEveryDataPlaneConverges) {
  StartServer(0, [](SyncServerOptions& o) { o.max_concurrent_full_sends = 1; });
  std::vector<std::unique_ptr<ApplyRecorder>> recs;
  std::vector<SyncClient*> dps;
  for (int i = 1; i <= 5; ++i) {
    std::string prefix = certs_ + "/dp";
    if (i > 1) {
      prefix = absl::StrCat(certs_, "/dp", i);
      ASSERT_TRUE(IssueDataPlaneCertificate(certs_, absl::StrCat("dp-", i), prefix).ok());
    }
    recs.push_back(std::make_unique<ApplyRecorder>());
    dps.push_back(StartClient(ClientOptions(prefix), *recs.back()));
  }
  for (int round = 0; round < 3; ++round) {
    Change([round](ConfigSet& c) { c.routes.push_back(MakeRoute(10 + round, 1)); });
    const uint64_t v = StoreVersion();
    ASSERT_TRUE(WaitFor([&] {
      for (SyncClient* dp : dps) {
        if (dp->serving().version != v) return false;
      }
      return true;
    })) << "round " << round;
  }
  SyncServerStats stats = server_->stats();
  EXPECT_EQ(stats.full_sends_peak, 1);
  EXPECT_TRUE(WaitFor([&] { return server_->stats().full_sends_in_progress == 0; }));
  // A DP serves a version before the CP has its ACK: wait for the ACKs to be recorded.
  for (int i = 1; i <= 5; ++i) {
    EXPECT_TRUE(WaitFor([&] { return StateIs(absl::StrCat("dp-", i), "connected_synced"); })) << i;
  }
}

TEST_F(SyncTest, LagAndMetricsFollowNacksAndAcks) {
  Registry registry;
  StartServer(0, [&](SyncServerOptions& o) { o.metrics = &registry; });
  ApplyRecorder rec;
  rec.fail_versions = {2};
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->lag_versions, 0u);
  EXPECT_EQ(StatusOf("dp-1")->lag_seconds, 0);
  EXPECT_EQ(StatusOf("dp-1")->connected_since, clock_.NowSeconds());

  Change([](ConfigSet& c) { c.services[0].set_host("v2.example"); });  // committed at T
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "nacked"); }));
  clock_.Advance(7);
  auto status = StatusOf("dp-1");
  EXPECT_EQ(status->lag_versions, 1u);
  EXPECT_EQ(status->lag_seconds, 7);
  EXPECT_EQ(status->nack_count, 1u);

  std::string text = registry.Render();
  EXPECT_TRUE(Contains(text, "portico_cp_snapshot_builds_total 2\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_sync_pushes_total{result=\"sent\"} 2\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_sync_pushes_total{result=\"ack\"} 1\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_sync_pushes_total{result=\"nack\"} 1\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_config_version 2\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_connected_data_planes 1\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_snapshot_bytes{encoding=\"gzip\"} ")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_snapshot_build_seconds_count 2\n")) << text;
  EXPECT_TRUE(Contains(text, "# TYPE portico_cp_sync_convergence_seconds histogram")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_sync_convergence_seconds_count 0\n")) << text;

  // Version 3 is ACKed: a commit -> ACK observation, lag back to zero.
  Change([](ConfigSet& c) { c.services[0].set_host("v3.example"); });
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 3; }));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->lag_versions, 0u);
  EXPECT_EQ(StatusOf("dp-1")->lag_seconds, 0);
  text = registry.Render();
  EXPECT_TRUE(Contains(text, "portico_cp_sync_convergence_seconds_count 1\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_sync_convergence_seconds_bucket{le=\"+Inf\"} 1\n")) << text;
  EXPECT_TRUE(Contains(text, "portico_cp_sync_pushes_total{result=\"ack\"} 2\n")) << text;

  client->Stop();
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "disconnected"); }));
  EXPECT_TRUE(Contains(registry.Render(), "portico_cp_connected_data_planes 0\n"));
}

TEST_F(SyncTest, UpToDateAfterRestartIsCounted) {
  StartServer();
  const uint16_t port = server_->port();
  ApplyRecorder rec;
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 1; }));
  server_->Stop();
  server_.reset();
  StartServer(port);
  ASSERT_TRUE(WaitFor([&] { return client->stats().up_to_date >= 1; }));
  EXPECT_TRUE(Contains(server_->metrics_text(), "portico_cp_sync_pushes_total{result=\"up_to_date\"} 1\n"));
  EXPECT_TRUE(Contains(server_->metrics_text(), "portico_cp_sync_pushes_total{result=\"sent\"} 0\n"));
  EXPECT_EQ(rec.Calls(), 1u);
}

// The test hooks (sync_test_hooks.h) see every chunk written to a data plane, in order; they are
// how a test injects faults (main.cc's PORTICO_TEST_CP_CRASH_AFTER_CHUNKS) without an option in
// SyncServerOptions.
TEST_F(SyncTest, TestHooksSeeEveryChunkWrittenToADataPlane) {
  struct Recorder : SyncTestHooks {
    void OnChunkWritten(size_t written, size_t count, uint64_t version) override {
      std::lock_guard<std::mutex> lock(mu);
      calls.push_back({written, count, version});
    }
    std::mutex mu;
    std::vector<std::tuple<size_t, size_t, uint64_t>> calls;
  } hooks;
  for (int i = 2; i <= 500; ++i) stored_.config.services.push_back(MakeService(i));
  SyncServerOptions options;
  options.listen = "127.0.0.1:0";
  options.cert_file = certs_ + "/cp.crt";
  options.key_file = certs_ + "/cp.key";
  options.ca_file = certs_ + "/ca.crt";
  options.chunk_bytes = 1024;
  auto server = SyncServer::Start(options, [this]() -> absl::StatusOr<StoredConfig> { return stored_; }, clock_, &hooks);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  const size_t chunks = server_->latest_snapshot()->chunk_count();
  ASSERT_GE(chunks, 3u);
  ApplyRecorder rec;
  SyncClient* client = StartClient(ClientOptions(certs_ + "/dp"), rec);
  ASSERT_TRUE(WaitFor([&] { return client->serving().version == 1; }));
  server_->Stop();  // no write is in flight after this
  std::lock_guard<std::mutex> lock(hooks.mu);
  ASSERT_EQ(hooks.calls.size(), chunks);
  for (size_t i = 0; i < chunks; ++i) EXPECT_EQ(hooks.calls[i], std::make_tuple(i + 1, chunks, uint64_t{1}));
}


// --- Delta sync (docs/sync.md "Delta sync"), against a DP written on the raw stream ---

// One DP stream driven by hand: it announces "delta.v1" (or not), assembles what the CP sends,
// applies deltas to what it holds, and ACKs or NACKs.
class RawDp {
 public:
  RawDp(const std::string& certs, uint16_t port) {
    auto read = [](const std::string& path) { return *ReadFileToString(path); };
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read(certs + "/ca.crt");
    ssl.pem_private_key = read(certs + "/dp.key");
    ssl.pem_cert_chain = read(certs + "/dp.crt");
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::SslCredentials(ssl));
    stub_ = sync::v1::ConfigSync::NewStub(channel_);
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    stream_ = stub_->Stream(&context_);
  }
  ~RawDp() {
    context_.TryCancel();
    stream_->Finish();
  }

  // Sends Hello (serving what it holds, or `serving` when set) and reads the HelloReply.
  void Hello(bool delta, const ConfigVersion* serving = nullptr) {
    sync::v1::DpMessage msg;
    sync::v1::Hello* h = msg.mutable_hello();
    h->set_node_id("dp-1");
    h->set_protocol_version(1);
    h->set_dp_build(PORTICO_VERSION);
    h->add_capabilities("enc.gzip");
    if (delta) h->add_capabilities("delta.v1");
    const ConfigVersion& v = serving != nullptr ? *serving : held_.version;
    if (!v.empty()) ToVersionRef(v, h->mutable_serving());
    ASSERT_TRUE(stream_->Write(msg));
    sync::v1::CpMessage reply;
    ASSERT_TRUE(stream_->Read(&reply));
    ASSERT_TRUE(reply.has_hello_reply());
    reply_capabilities_.assign(reply.hello_reply().capabilities().begin(), reply.hello_reply().capabilities().end());
  }

  // Reads until one whole payload arrived; *delta says whether it was one. Decodes it (a delta is
  // applied to what is held) into *decoded.
  void Receive(bool* delta, absl::StatusOr<DecodedSnapshot>* decoded) {
    SnapshotAssembler assembler;
    sync::v1::CpMessage msg;
    while (true) {
      ASSERT_TRUE(stream_->Read(&msg)) << "stream ended";
      if (!msg.has_chunk()) continue;  // UpToDate, health overrides
      ASSERT_TRUE(assembler.Add(msg.chunk()).ok());
      if (assembler.complete()) break;
    }
    nonce_ = assembler.nonce();
    target_ = assembler.target();
    *delta = assembler.delta();
    *decoded = *delta ? assembler.FinishDelta(held_) : assembler.Finish();
  }
  void Ack(DecodedSnapshot decoded) {
    held_ = std::move(decoded);
    sync::v1::DpMessage msg;
    msg.mutable_ack()->set_nonce(nonce_);
    ToVersionRef(held_.version, msg.mutable_ack()->mutable_serving());
    ASSERT_TRUE(stream_->Write(msg));
  }
  void Nack(sync::v1::Nack::Code code, const std::string& message) {
    sync::v1::DpMessage msg;
    sync::v1::Nack* n = msg.mutable_nack();
    n->set_nonce(nonce_);
    ToVersionRef(target_, n->mutable_rejected());
    if (!held_.version.empty()) ToVersionRef(held_.version, n->mutable_serving());
    n->set_code(code);
    n->set_message(message);
    ASSERT_TRUE(stream_->Write(msg));
  }

  const DecodedSnapshot& held() const { return held_; }
  void set_held(DecodedSnapshot held) { held_ = std::move(held); }
  const std::vector<std::string>& reply_capabilities() const { return reply_capabilities_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<sync::v1::ConfigSync::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<sync::v1::DpMessage, sync::v1::CpMessage>> stream_;
  DecodedSnapshot held_;
  uint64_t nonce_ = 0;
  ConfigVersion target_;
  std::vector<std::string> reply_capabilities_;
};

TEST_F(SyncTest, DeltaCapableDataPlaneGetsDeltasAndTheFullSnapshotAfterRefusingOne) {
  // Enough routes that a one-route change is well under half of the full snapshot.
  for (int i = 2; i <= 30; ++i) stored_.config.routes.push_back(MakeRoute(i, 1));
  StartServer(0, [](SyncServerOptions& o) { o.heartbeat_interval = absl::Seconds(10); });
  RawDp dp(certs_, server_->port());
  ASSERT_NO_FATAL_FAILURE(dp.Hello(/*delta=*/true));
  EXPECT_NE(std::find(dp.reply_capabilities().begin(), dp.reply_capabilities().end(), "delta.v1"),
            dp.reply_capabilities().end());

  // First contact: the full snapshot.
  bool delta = true;
  absl::StatusOr<DecodedSnapshot> got = absl::UnknownError("unset");
  ASSERT_NO_FATAL_FAILURE(dp.Receive(&delta, &got));
  EXPECT_FALSE(delta);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->version.version, 1u);
  ASSERT_NO_FATAL_FAILURE(dp.Ack(*std::move(got)));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));

  // One route added: a delta from version 1, which rebuilds exactly version 2.
  Change([](ConfigSet& c) { c.routes.push_back(MakeRoute(100, 1)); });
  ASSERT_NO_FATAL_FAILURE(dp.Receive(&delta, &got));
  EXPECT_TRUE(delta);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->version.version, 2u);
  EXPECT_EQ(got->version, server_->latest());
  EXPECT_EQ(got->config->routes.size(), 31u);
  ASSERT_NO_FATAL_FAILURE(dp.Ack(*std::move(got)));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(server_->stats().delta_sends, 1u);
  EXPECT_TRUE(Contains(server_->metrics_text(), "portico_cp_deltas_sent_total 1\n")) << server_->metrics_text();

  // The DP refuses the next delta: not parked; the full snapshot of that version follows.
  Change([](ConfigSet& c) { c.routes.push_back(MakeRoute(101, 1)); });
  ASSERT_NO_FATAL_FAILURE(dp.Receive(&delta, &got));
  EXPECT_TRUE(delta);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_NO_FATAL_FAILURE(dp.Nack(sync::v1::Nack::HASH_MISMATCH, "config hash after the delta differs"));
  ASSERT_NO_FATAL_FAILURE(dp.Receive(&delta, &got));
  EXPECT_FALSE(delta);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->version.version, 3u);
  auto status = StatusOf("dp-1");
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->nack_count, 1u);
  EXPECT_NE(status->last_error.find("delta rejected (HASH_MISMATCH"), std::string::npos) << status->last_error;
  EXPECT_NE(status->last_error.find("sending the full snapshot"), std::string::npos) << status->last_error;
  EXPECT_NE(status->state, "nacked");
  ASSERT_NO_FATAL_FAILURE(dp.Ack(*std::move(got)));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(StatusOf("dp-1")->last_error, "");
  EXPECT_EQ(server_->stats().delta_sends, 2u);

  // Deltas again after that full snapshot.
  Change([](ConfigSet& c) { c.routes.erase(c.routes.begin() + 3); });
  ASSERT_NO_FATAL_FAILURE(dp.Receive(&delta, &got));
  EXPECT_TRUE(delta);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->version.version, 4u);
  EXPECT_EQ(got->config->routes.size(), 31u);
  ASSERT_NO_FATAL_FAILURE(dp.Ack(*std::move(got)));
  ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
  EXPECT_EQ(server_->stats().delta_sends, 3u);
}

TEST_F(SyncTest, FullSnapshotWhenTheDataPlaneTakesNoDeltasOrServesAVersionTheLogLacks) {
  for (int i = 2; i <= 30; ++i) stored_.config.routes.push_back(MakeRoute(i, 1));
  StartServer(0, [](SyncServerOptions& o) { o.heartbeat_interval = absl::Seconds(10); });
  DecodedSnapshot v1;
  {
    RawDp dp(certs_, server_->port());
    ASSERT_NO_FATAL_FAILURE(dp.Hello(/*delta=*/false));
    bool delta = true;
    absl::StatusOr<DecodedSnapshot> got = absl::UnknownError("unset");
    ASSERT_NO_FATAL_FAILURE(dp.Receive(&delta, &got));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_NO_FATAL_FAILURE(dp.Ack(*got));
    v1 = *got;
    ASSERT_TRUE(WaitFor([&] { return StateIs("dp-1", "connected_synced"); }));
    // Without "delta.v1" in its Hello, a change comes as the full snapshot.
    Change([](ConfigSet& c) { c.routes.push_back(MakeRoute(100, 1)); });
    ASSERT_NO_FATAL_FAILURE(dp.Receive(&delta, &got));
    EXPECT_FALSE(delta);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->version.version, 2u);
  }
  // A delta-capable DP back from a version the change log has (v1): a delta to v2.
  {
    RawDp dp(certs_, server_->port());
    dp.set_held(v1);
    ASSERT_NO_FATAL_FAILURE(dp.Hello(/*delta=*/true));
    bool delta = false;
    absl::StatusOr<DecodedSnapshot> got = absl::UnknownError("unset");
    ASSERT_NO_FATAL_FAILURE(dp.Receive(&delta, &got));
    EXPECT_TRUE(delta);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->version, server_->latest());
  }
  // One that claims version 1 with another hash (not what the CP published): the full snapshot.
  {
    RawDp dp(certs_, server_->port());
    ConfigVersion forged = v1.version;
    forged.hash[0] ^= 1;
    ASSERT_NO_FATAL_FAILURE(dp.Hello(/*delta=*/true, &forged));
    bool delta = true;
    absl::StatusOr<DecodedSnapshot> got = absl::UnknownError("unset");
    ASSERT_NO_FATAL_FAILURE(dp.Receive(&delta, &got));
    EXPECT_FALSE(delta);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->version.version, 2u);
  }
  EXPECT_EQ(server_->stats().delta_sends, 1u);
}

}  // namespace
}  // namespace portico::cp
