// Graceful stops (issue 16, "Graceful drain and restarts"), through the real binaries:
//  - a DP on SIGTERM/SIGQUIT finishes the requests in flight (last responses carry
//    `Connection: close`), closes idle keep-alive connections at once, answers /status/ready 503,
//    cuts what is left at --drain-timeout and exits 0;
//  - a second DP on the same port (SO_REUSEPORT) replaces the first under load with no failed
//    request (in a network namespace of its own, with net.ipv4.tcp_migrate_req=1);
//  - the CP on SIGTERM finishes an Admin API request in flight, tells the DP it goes away, closes
//    SQLite with its WAL checkpointed and exits 0; the DP keeps serving and comes back to the
//    restarted CP.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/common/http_wire.h"
#include "tests/integration/cluster.h"
#include "tests/integration/harness.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using test_support::HttpReply;
using test_support::RawHttpClient;
using RawClient = test_support::RawHttpClient;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

std::string EchoYaml(uint16_t upstream_port) {
  return absl::StrCat(R"(_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:)", upstream_port, R"(
    read_timeout: 60000
    routes:
      - name: echo-route
        paths: ["/"]
)");
}

const std::string kKeepAliveGet = "GET /api HTTP/1.1\r\nHost: drain.example\r\n\r\n";
const std::string kCloseGet = "GET /api HTTP/1.1\r\nHost: drain.example\r\nConnection: close\r\n\r\n";

// A DB-less portico-dp serving EchoYaml on `proxy_port` (0: a free one), with its own status port.
class DbLessDp {
 public:
  // `tls`: a TLS listener too, on tls_port.
  DbLessDp(const TempDir& tmp, const std::string& file, uint16_t proxy_port, const std::string& name,
           std::vector<std::string> extra = {}, bool tls = false) {
    this->proxy_port = proxy_port != 0 ? proxy_port : PickFreePort();
    status_port = PickFreePort();
    if (tls) tls_port = PickFreePort();
    std::vector<std::string> argv{PORTICO_DP_BIN, "--declarative-config", file, "--proxy-listen",
                                  absl::StrCat("127.0.0.1:", this->proxy_port), "--proxy-ssl-listen",
                                  tls ? absl::StrCat("127.0.0.1:", tls_port) : std::string("off"),
                                  "--status-listen", absl::StrCat("127.0.0.1:", status_port), "--workers", "2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process = std::make_unique<Process>(name, argv, tmp.File(name + ".log"));
  }
  int Ready() { return Http(status_port, "GET", "/status/ready").status; }
  uint64_t RequestsTotal() {
    const json j = ParseJson(Http(status_port, "GET", "/status"));
    return j.is_object() && j.contains("server") ? j["server"]["total_requests"].get<uint64_t>() : 0;
  }
  std::unique_ptr<Process> process;
  uint16_t proxy_port = 0, status_port = 0, tls_port = 0;
};

// Waits for `p` to exit (no signal sent); the wait status, and how long it took.
int WaitExit(Process& p, std::chrono::milliseconds timeout, std::chrono::milliseconds* took) {
  const auto start = std::chrono::steady_clock::now();
  const int status = p.Stop(0, timeout);
  *took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  return status;
}

bool ExitedZero(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

class DpDrainTest : public ::testing::Test {
 protected:
  void SetUp() override { WriteFile(file_, EchoYaml(upstream_.port())); }

  EchoUpstream upstream_{"drain"};
  TempDir tmp_;
  std::string file_ = tmp_.File("kong.yml");
};

TEST_F(DpDrainTest, InFlightRequestsFinishWithConnectionCloseIdleOnesCloseAndReadyTurns503) {
  DbLessDp dp(tmp_, file_, 0, "dp-drain");
  ASSERT_TRUE(WaitFor([&] { return dp.Ready() == 200; }, 15s)) << dp.process->Log();

  // Keep-alive connections that served one request each: 4 will carry a slow request through the
  // drain, 2 stay idle.
  constexpr int kBusy = 4, kIdle = 2;
  std::vector<std::unique_ptr<RawHttpClient>> clients;
  for (int i = 0; i < kBusy + kIdle; ++i) {
    clients.push_back(std::make_unique<RawHttpClient>(dp.proxy_port, 15000));
    ASSERT_TRUE(clients.back()->connected());
    ASSERT_TRUE(clients.back()->Send(kKeepAliveGet));
    const HttpReply warm = clients.back()->ReadResponse();
    ASSERT_TRUE(warm.ok && warm.status == 200) << warm.error;
    ASSERT_NE(warm.Header("connection"), "close");
  }

  upstream_.set_response_delay_ms(3000);  // far above the 1400 ms allowed below for what is at once
  std::vector<HttpReply> replies(kBusy);
  std::vector<std::thread> busy;
  for (int i = 0; i < kBusy; ++i) {
    busy.emplace_back([&, i] {
      if (!clients[i]->Send(kKeepAliveGet)) return;
      replies[i] = clients[i]->ReadResponse();
    });
  }
  ASSERT_TRUE(WaitFor([&] { return dp.RequestsTotal() >= 2 * kBusy + kIdle; }, 5s));
  std::this_thread::sleep_for(200ms);  // the requests reach the upstream
  const auto signalled = std::chrono::steady_clock::now();
  dp.process->Signal(SIGTERM);

  // Readiness turns 503 at once, while the requests are still running.
  ASSERT_TRUE(WaitFor([&] { return dp.Ready() == 503; }, 1s)) << dp.process->Log();
  const HttpResult ready = Http(dp.status_port, "GET", "/status/ready");
  EXPECT_NE(ready.body.find("shutting down"), std::string::npos) << ready.body;
  // New connections are refused: the listeners are closed.
  const HttpResult refused = RawHttp(dp.proxy_port, kCloseGet, 2s);
  EXPECT_FALSE(refused.ok) << "a new connection was served during the drain: " << refused.status;
  // The idle keep-alive connections are closed at once, without a response.
  for (int i = kBusy; i < kBusy + kIdle; ++i) {
    clients[i]->set_deadline(std::chrono::steady_clock::now() + 1s);
    const HttpReply idle = clients[i]->ReadResponse();
    EXPECT_FALSE(idle.ok);
    EXPECT_TRUE(idle.peer_closed) << "idle connection " << i << " was not closed: " << idle.error;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, 1400ms) << "the drain waited for the slow requests first";

  for (std::thread& t : busy) t.join();
  for (int i = 0; i < kBusy; ++i) {
    EXPECT_TRUE(replies[i].ok) << i << ": " << replies[i].error;
    EXPECT_EQ(replies[i].status, 200) << i;
    EXPECT_EQ(replies[i].Header("connection"), "close") << "the last response of connection " << i;
  }
  std::chrono::milliseconds took{};
  const int status = WaitExit(*dp.process, 10s, &took);
  EXPECT_TRUE(ExitedZero(status)) << status << "\n" << dp.process->Log();
  const std::string log = dp.process->Log();
  EXPECT_NE(log.find("signal 15, draining"), std::string::npos) << log;
  EXPECT_NE(log.find("drained in"), std::string::npos) << log;
  EXPECT_NE(log.find("were open when the drain began; all finished"), std::string::npos) << log;
}

TEST_F(DpDrainTest, SigquitDrainsLikeSigtermAndClosesTheTlsListenerToo) {
  DbLessDp dp(tmp_, file_, 0, "dp-quit", {}, /*tls=*/true);
  ASSERT_TRUE(WaitFor([&] { return dp.Ready() == 200; }, 15s)) << dp.process->Log();
  ASSERT_TRUE(RawClient(dp.tls_port).connected());
  upstream_.set_response_delay_ms(1000);
  HttpResult reply;
  std::thread request([&] { reply = RawHttp(dp.proxy_port, kCloseGet, 10s); });
  ASSERT_TRUE(WaitFor([&] { return dp.RequestsTotal() >= 1; }, 5s));
  dp.process->Signal(SIGQUIT);
  ASSERT_TRUE(WaitFor([&] { return dp.Ready() == 503; }, 1s));
  EXPECT_TRUE(WaitFor([&] { return !RawClient(dp.tls_port).connected(); }, 500ms)) << "the TLS listener still accepts";
  request.join();
  EXPECT_TRUE(reply.ok) << reply.error;
  EXPECT_EQ(reply.status, 200);
  std::chrono::milliseconds took{};
  const int status = WaitExit(*dp.process, 10s, &took);
  EXPECT_TRUE(ExitedZero(status)) << status << "\n" << dp.process->Log();
  EXPECT_NE(dp.process->Log().find("drained in"), std::string::npos) << dp.process->Log();
}

TEST_F(DpDrainTest, RequestStillRunningAtTheDrainTimeoutIsCutAndTheDpExitsZero) {
  DbLessDp dp(tmp_, file_, 0, "dp-timeout", {"--drain-timeout", "1"});
  ASSERT_TRUE(WaitFor([&] { return dp.Ready() == 200; }, 15s)) << dp.process->Log();
  upstream_.set_response_delay_ms(3000);
  HttpResult reply;
  std::thread request([&] { reply = RawHttp(dp.proxy_port, kKeepAliveGet, 15s); });
  ASSERT_TRUE(WaitFor([&] { return dp.RequestsTotal() >= 1; }, 5s));
  std::this_thread::sleep_for(100ms);
  dp.process->Signal(SIGTERM);
  std::chrono::milliseconds took{};
  const int status = WaitExit(*dp.process, 10s, &took);
  request.join();
  EXPECT_TRUE(ExitedZero(status)) << status << "\n" << dp.process->Log();
  EXPECT_GE(took, 900ms) << "exited before the drain timeout";
  EXPECT_LT(took, 3s) << "the drain timeout (1 s) was not applied";
  EXPECT_FALSE(reply.ok) << "the request outlived the drain timeout: " << reply.status;
  const std::string log = dp.process->Log();
  EXPECT_NE(log.find("drain timeout (1000 ms) reached"), std::string::npos) << log;
  EXPECT_NE(log.find("1 still open were closed"), std::string::npos) << log;
}

// A plain listening socket on host:port (SO_REUSEPORT when `reuse_port`); -1 on error.
int ListenOn(const std::string& host, uint16_t port, bool reuse_port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1 ||
      bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 || listen(fd, 16) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST_F(DpDrainTest, OnlyAListenerOnItsOwnAddressOrTheWildcardMakesTheProxyPortShared) {
  constexpr char kShared[] = "another process listens on the proxy port";
  {
    // Another address of the same port (127.0.0.2, on lo too): not shared, accepting at start.
    const uint16_t port = PickFreePort();
    const int other = ListenOn("127.0.0.2", port, /*reuse_port=*/false);
    ASSERT_GE(other, 0) << std::strerror(errno);
    DbLessDp dp(tmp_, file_, port, "dp-other-address");
    ASSERT_TRUE(WaitFor([&] { return dp.Ready() == 200; }, 15s)) << dp.process->Log();
    EXPECT_EQ(dp.process->Log().find(kShared), std::string::npos) << dp.process->Log();
    EXPECT_TRUE(ExitedZero(dp.process->Stop(SIGTERM, 15s)));
    close(other);
  }
  {
    // The wildcard address of the same port, in the same SO_REUSEPORT group: shared.
    const uint16_t port = PickFreePort();
    const int wildcard = ListenOn("0.0.0.0", port, /*reuse_port=*/true);
    ASSERT_GE(wildcard, 0) << std::strerror(errno);
    DbLessDp dp(tmp_, file_, port, "dp-wildcard");
    ASSERT_TRUE(WaitFor([&] { return dp.Ready() == 200; }, 15s)) << dp.process->Log();
    EXPECT_NE(dp.process->Log().find(kShared), std::string::npos) << dp.process->Log();
    EXPECT_TRUE(ExitedZero(dp.process->Stop(SIGTERM, 15s)));
    close(wildcard);
  }
}

TEST_F(DpDrainTest, SigintStopsAtOnce) {
  DbLessDp dp(tmp_, file_, 0, "dp-int");
  ASSERT_TRUE(WaitFor([&] { return dp.Ready() == 200; }, 15s)) << dp.process->Log();
  upstream_.set_response_delay_ms(3000);
  HttpResult reply;
  std::thread request([&] { reply = RawHttp(dp.proxy_port, kCloseGet, 10s); });
  ASSERT_TRUE(WaitFor([&] { return dp.RequestsTotal() >= 1; }, 5s));
  dp.process->Signal(SIGINT);
  std::chrono::milliseconds took{};
  const int status = WaitExit(*dp.process, 10s, &took);
  request.join();
  EXPECT_TRUE(ExitedZero(status)) << status;
  EXPECT_LT(took, 2s);
  EXPECT_FALSE(reply.ok);
}

// ---- zero-downtime replacement ------------------------------------------------------------------

// Moves this thread (and so every thread and process it starts from now on) into a new network
// namespace with loopback up, and sets its net.ipv4.tcp_migrate_req. False (with `why`) when it
// cannot (not root).
bool EnterPrivateNetworkNamespace(int migrate_req, std::string* why) {
  if (unshare(CLONE_NEWNET) != 0) {
    *why = absl::StrCat("unshare(CLONE_NEWNET): ", std::strerror(errno));
    return false;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  const bool up = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &request) == 0 &&
                  (request.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &request) == 0);
  if (fd >= 0) close(fd);
  if (!up) {
    *why = absl::StrCat("cannot bring lo up: ", std::strerror(errno));
    return false;
  }
  std::ofstream sysctl("/proc/sys/net/ipv4/tcp_migrate_req");
  sysctl << migrate_req;
  sysctl.close();
  if (!sysctl) {
    *why = "cannot write /proc/sys/net/ipv4/tcp_migrate_req";
    return false;
  }
  return true;
}

// Client threads sending GET /api to 127.0.0.1:port until stopped: half on keep-alive
// connections (reconnecting after `Connection: close`), half on a new connection per request.
// Every failure counts (connect refused, reset, timeout, incomplete or non-200 response), except
// one: a request written on a reused keep-alive connection that the server closed while it was
// idle gets no byte back, and is sent again once on a new connection, as HTTP clients do (RFC 9112
// §9.3.1); those are counted apart.
class LoadGenerator {
 public:
  LoadGenerator(uint16_t port, int threads) : port_(port) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, i] { i % 2 == 0 ? KeepAliveLoop() : NewConnectionLoop(); });
    }
  }
  ~LoadGenerator() { Stop(); }
  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int ok() const { return ok_.load(); }
  int failed() const { return failed_.load(); }
  int retried() const { return retried_.load(); }
  std::string failures() {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }

 private:
  void Fail(const std::string& what) {
    ++failed_;
    std::lock_guard<std::mutex> lock(mu_);
    if (failures_.size() < 2000) absl::StrAppend(&failures_, what, "\n");
  }
  static bool Good(const HttpReply& r) { return r.ok && r.status == 200; }

  void KeepAliveLoop() {
    std::unique_ptr<RawHttpClient> client;
    int served_on_connection = 0;
    while (!stop_) {
      if (client == nullptr) {
        client = std::make_unique<RawHttpClient>(port_, 5000);
        served_on_connection = 0;
        if (!client->connected()) {
          Fail(absl::StrCat("keep-alive connect: ", std::strerror(client->connect_error())));
          client.reset();
          continue;
        }
      }
      HttpReply r;
      if (client->Send(kKeepAliveGet)) r = client->ReadResponse();
      if (!Good(r) && served_on_connection > 0 && r.status == 0) {
        ++retried_;  // the idle connection was closed under the request: once more, anew
        client = std::make_unique<RawHttpClient>(port_, 5000);
        served_on_connection = 0;
        r = HttpReply();
        if (client->connected() && client->Send(kKeepAliveGet)) r = client->ReadResponse();
      }
      if (!Good(r)) {
        Fail(absl::StrCat("keep-alive: status ", r.status, " ", r.error));
        client.reset();
        continue;
      }
      ++ok_;
      ++served_on_connection;
      if (r.Header("connection") == "close" || r.peer_closed) client.reset();
    }
  }

  void NewConnectionLoop() {
    while (!stop_) {
      RawHttpClient client(port_, 5000);
      if (!client.connected()) {
        Fail(absl::StrCat("connect: ", std::strerror(client.connect_error())));
        continue;
      }
      HttpReply r;
      if (client.Send(kCloseGet)) r = client.ReadResponse();
      if (!Good(r)) {
        Fail(absl::StrCat("new connection: status ", r.status, " ", r.error));
        continue;
      }
      ++ok_;
    }
  }

  const uint16_t port_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0}, retried_{0};
  std::mutex mu_;
  std::string failures_;
  std::vector<std::thread> threads_;
};

TEST(DpReplacementTest, NewDpOnTheSamePortTakesOverUnderLoadWithoutAFailedRequest) {
  // PORTICO_TEST_MIGRATE_REQ=0 runs the same replacement without migration, to measure what it
  // costs (docs/operations.md "Upgrades and restarts"); only the default (1) expects zero.
  const char* env = std::getenv("PORTICO_TEST_MIGRATE_REQ");
  const int migrate_req = env != nullptr ? std::atoi(env) : 1;
  std::string why;
  if (!EnterPrivateNetworkNamespace(migrate_req, &why)) GTEST_SKIP() << "needs root: " << why;

  EchoUpstream upstream("replacement");
  TempDir tmp;
  const std::string file = tmp.File("kong.yml");
  WriteFile(file, EchoYaml(upstream.port()));
  auto old_dp = std::make_unique<DbLessDp>(tmp, file, 0, "dp-old");
  const uint16_t port = old_dp->proxy_port;
  ASSERT_TRUE(WaitFor([&] { return old_dp->Ready() == 200; }, 15s)) << old_dp->process->Log();

  constexpr int kLoadThreads = 6;  // half keep-alive
  LoadGenerator load(port, kLoadThreads);
  ASSERT_TRUE(WaitFor([&] { return load.ok() >= 200; }, 10s)) << load.failures();
  std::this_thread::sleep_for(1s);

  // The procedure of docs/operations.md: the new DP on the same port, ready, then SIGTERM the old.
  DbLessDp new_dp(tmp, file, port, "dp-new");
  ASSERT_TRUE(WaitFor([&] { return new_dp.Ready() == 200; }, 15s)) << new_dp.process->Log();
  std::this_thread::sleep_for(1s);  // both serve (the kernel spreads new connections)
  const int before_drain = load.ok();
  old_dp->process->Signal(SIGTERM);
  std::chrono::milliseconds took{};
  const int status = WaitExit(*old_dp->process, 15s, &took);
  EXPECT_TRUE(ExitedZero(status)) << status << "\n" << old_dp->process->Log();
  const int after_drain = load.ok();
  ASSERT_TRUE(WaitFor([&] { return load.ok() >= after_drain + 200; }, 10s)) << load.failures();
  std::this_thread::sleep_for(1s);
  load.Stop();

  std::printf("replacement (tcp_migrate_req=%d): %d requests ok, %d failed, %d resent on a new connection; "
              "%d ok during the %lld ms drain\n",
              migrate_req, load.ok(), load.failed(), load.retried(), after_drain - before_drain,
              static_cast<long long>(took.count()));
  const uint64_t new_served = new_dp.RequestsTotal();
  EXPECT_GT(new_served, 200u) << "the new DP took no traffic";
  // A request resent on a new connection is one that met an idle keep-alive connection the old DP
  // closed at its drain: at most once per keep-alive thread (each had one connection open there).
  EXPECT_LE(load.retried(), kLoadThreads / 2) << "resends beyond the drain's idle closes";
  if (migrate_req == 1) {
    EXPECT_EQ(load.failed(), 0) << load.failures() << "\nold DP:\n" << old_dp->process->Log();
  } else {
    std::printf("%s", load.failures().c_str());
  }
  const int new_status = new_dp.process->Stop(SIGTERM, 15s);
  EXPECT_TRUE(ExitedZero(new_status)) << new_status;
}

// ---- the control plane ----------------------------------------------------------------------

TEST(CpStopTest, SigtermFinishesAnAdminRequestClosesTheStoreAndTheDpComesBackToTheRestartedCp) {
  EchoUpstream upstream("cp-stop");
  Cluster cluster;
  ASSERT_TRUE(cluster.StartCp()) << cluster.Logs();
  DataPlane& dp = cluster.StartDp();
  ASSERT_TRUE(dp.started) << cluster.Logs();
  ASSERT_EQ(cluster.Admin("POST", "/services", {{"name", "echo"}, {"url", absl::StrCat("http://127.0.0.1:", upstream.port())}}).status, 201);
  ASSERT_EQ(cluster.Admin("POST", "/services/echo/routes", {{"name", "one"}, {"paths", {"/one"}}}).status, 201);
  ASSERT_TRUE(cluster.WaitDpSynced(dp)) << cluster.Logs();
  ASSERT_EQ(cluster.Proxy(dp, "/one").status, 200);

  // An Admin API request in flight: its head and half its body are in when SIGTERM comes.
  const std::string body = json{{"name", "two"}, {"paths", {"/two"}}}.dump();
  RawHttpClient admin(cluster.admin_port(), 10000);
  ASSERT_TRUE(admin.connected());
  ASSERT_TRUE(admin.Send(absl::StrCat("POST /services/echo/routes HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\n"
                                      "Content-Length: ", body.size(), "\r\n\r\n", body.substr(0, body.size() / 2))));
  std::this_thread::sleep_for(200ms);
  cluster.cp()->Signal(SIGTERM);
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(Http(cluster.admin_port(), "GET", "/status").ok) << "the Admin API still accepts connections";
  ASSERT_TRUE(admin.Send(body.substr(body.size() / 2)));
  const HttpReply created = admin.ReadResponse();
  EXPECT_TRUE(created.ok) << created.error;
  EXPECT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.Header("connection"), "close");

  std::chrono::milliseconds took{};
  const int status = WaitExit(*cluster.cp(), 15s, &took);
  EXPECT_TRUE(ExitedZero(status)) << status << "\n" << cluster.cp()->Log();
  EXPECT_LT(took, 5s);
  EXPECT_NE(cluster.cp()->Log().find("closed (WAL checkpointed)"), std::string::npos) << cluster.cp()->Log();
  struct stat wal {};
  const std::string wal_file = cluster.tmp().File("portico.db-wal");
  EXPECT_TRUE(stat(wal_file.c_str(), &wal) != 0 || wal.st_size == 0) << wal_file << " holds " << wal.st_size << " bytes";

  // The DP was told the CP goes away, keeps serving, and reconnects to the restarted CP.
  ASSERT_TRUE(WaitFor([&] { return cluster.DpStatus(dp)["control_plane_connected"] == false; }, 10s));
  EXPECT_NE(dp.process->Log().find("DRAINING"), std::string::npos) << dp.process->Log();
  EXPECT_EQ(cluster.Proxy(dp, "/one").status, 200);
  ASSERT_TRUE(cluster.StartCp()) << cluster.Logs();
  ASSERT_TRUE(WaitFor([&] { return cluster.DpStatus(dp)["control_plane_connected"] == true; }, 30s)) << cluster.Logs();
  // The route written during the stop was committed: the restarted CP has it and the DP gets it.
  ASSERT_TRUE(cluster.WaitDpSynced(dp, 30s)) << cluster.Logs();
  EXPECT_EQ(cluster.Proxy(dp, "/two").status, 200);
  const json planes = ParseJson(cluster.Admin("GET", "/clustering/data-planes"));
  ASSERT_TRUE(planes.is_object() && planes["data"].is_array() && !planes["data"].empty()) << planes.dump();
  EXPECT_EQ(planes["data"][0]["id"], "dp-it");
}

}  // namespace
}  // namespace portico::testing
