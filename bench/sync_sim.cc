// sync_sim: N simulated data planes against a real portico-cp (SYNC-PROTOCOL.md §5.13 "1,000 DPs
// simulated"). Each simulated DP has its own channel (local subchannel pool, so its own TCP +
// mTLS connection) and its own certificate, speaks the real protocol with a gRPC callback
// reactor, reassembles, decodes and verifies every snapshot (SnapshotAssembler: inflate + hash
// check + parse), then ACKs. Admission refusals (RESOURCE_EXHAUSTED + retry_after_s) are honoured.
//
//   sync_sim --cp-bin build/control_plane/portico-cp [--n 10,100,1000] [--rounds 20]
//            [--routes 100] [--gap-ms 300] [--modes delta,full] [--cps 1] [--store sqlite]
//            [--burst 1] [--burst-gap-ms 0] [--cp-flags '--cluster-debounce-first-ms 50']
// --burst K: each round writes K routes, --burst-gap-ms apart, and is timed from the last commit.
// --cp-flags: more flags for portico-cp (split at spaces).
// --cps 2 --store postgres: two CPs on one PostgreSQL database (started for the run with
// tests/postgres_fixture.sh), the simulated DPs spread over them (DP i on CP i % 2), every write
// through the first CP: the second CP's DPs get it through the database's notification.
// Mode "delta": the simulated DPs announce "delta.v1" and apply deltas (from the second one on, in
// place in the version before, as portico-dp does once its runtime let go of it); "full": they do
// not (as an older DP), so every change reaches them as a full snapshot.
//
// For each N: start a CP, connect N DPs (time to all synced is the admission ramp), then
// `rounds` times: POST one route to the Admin API and wait until every DP has ACKed the new
// version. Prints commit -> ACK latency over all (DP, round) pairs and commit -> all-ACKed per
// round (p50/p99/max), plus CP RSS and CPU.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bench/postgres_util.h"
#include "common/base/absl_mutex.h"
#include "common/snapshot/snapshot.h"
#include "common/tls/tls_files.h"
#include "portico/sync/v1/sync.grpc.pb.h"
#include "tests/integration/harness.h"

namespace portico::bench {
namespace {

using testing::CurrentVersion;
using testing::Percentile;

using SteadyClock = std::chrono::steady_clock;
using sync::v1::CpMessage;
using sync::v1::DpMessage;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs delayed tasks on one thread (reconnects after retry_after_s).
class Scheduler {
 public:
  Scheduler() : thread_([this] { Loop(); }) {}
  ~Scheduler() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void After(std::chrono::milliseconds delay, std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push(Task{SteadyClock::now() + delay, seq_++, std::move(fn)});
    }
    cv_.notify_all();
  }

 private:
  struct Task {
    SteadyClock::time_point at;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Task& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (tasks_.empty()) {
        cv_.wait(lock);
        continue;
      }
      if (SteadyClock::now() < tasks_.top().at) {
        cv_.wait_until(lock, tasks_.top().at);
        continue;
      }
      std::function<void()> fn = tasks_.top().fn;
      tasks_.pop();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Task, std::vector<Task>, std::greater<Task>> tasks_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

struct SimDp;

// Shared state of one run.
struct Fleet {
  std::string target;  // 127.0.0.1:port
  Scheduler scheduler;
  std::atomic<bool> stopping{false};
  std::atomic<int> live_reactors{0};
  std::atomic<uint64_t> admission_refusals{0};
  std::atomic<uint64_t> decode_failures{0};
  std::atomic<uint64_t> deltas_applied{0}, fulls_applied{0}, deltas_nacked{0};
  bool delta = true;  // the simulated DPs announce "delta.v1" and apply deltas
  std::vector<std::unique_ptr<SimDp>> dps;
};

// One simulated DP: identity + what it serves + when it ACKed each version.
struct SimDp {
  std::string node_id;
  grpc::SslCredentialsOptions ssl;
  std::mutex mu;
  ConfigVersion serving;                         // guarded by mu
  // What it serves, decoded (the base of the next delta). Touched only by the stream's read
  // callbacks, and one stream of a DP lives at a time.
  DecodedSnapshot held;
  // The version `held` replaced when it came from a delta: the next delta is applied to it in
  // place, as portico-dp's sync client does (RecycledBase). Touched as `held` is.
  RecycledBase previous;
  std::map<uint64_t, SteadyClock::time_point> acked_at;  // version -> ACK sent; guarded by mu
  // version -> its last chunk read (before decoding); guarded by mu
  std::map<uint64_t, SteadyClock::time_point> received_at;
  bool connected = false;                        // guarded by mu
  // Heartbeats as portico-dp sends them: every HelloReply.heartbeat_interval_s from the reply on
  // (so the DPs' heartbeats are spread as their connects were). Guarded by mu.
  std::chrono::seconds heartbeat_interval{15};
  SteadyClock::time_point next_heartbeat;
  class Reactor* reactor = nullptr;              // guarded by mu; live stream
  // Its own channel (local subchannel pool: its own TCP + TLS connection), kept for the whole
  // run and destroyed on the main thread: gRPC must not tear a channel's completion queue down
  // from that queue's own callback thread (which OnDone runs on).
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<sync::v1::ConfigSync::Stub> stub;
};

class Reactor final : public grpc::ClientBidiReactor<DpMessage, CpMessage> {
 public:
  Reactor(Fleet& fleet, SimDp& dp) : fleet_(fleet), dp_(dp) {
    ++fleet_.live_reactors;
    dp.stub->async()->Stream(&context_, this);
    DpMessage hello;
    sync::v1::Hello* h = hello.mutable_hello();
    h->set_node_id(dp.node_id);
    h->set_protocol_version(1);
    h->set_dp_build(PORTICO_VERSION);
    h->add_capabilities("enc.gzip");
    if (fleet_.delta) h->add_capabilities("delta.v1");
    h->set_hostname("sim");
    {
      std::lock_guard<std::mutex> lock(dp_.mu);
      if (!dp_.serving.empty()) {
        h->mutable_serving()->set_epoch(dp_.serving.epoch);
        h->mutable_serving()->set_version(dp_.serving.version);
        h->mutable_serving()->set_hash(dp_.serving.hash);
      }
      dp_.reactor = this;
    }
    AddHold();  // released when the read side ends, so Enqueue never races OnDone
    Enqueue(std::move(hello));
    StartRead(&in_);
    StartCall();
  }

  // REQUIRES: dp_.mu held (which keeps this reactor alive: OnDone clears dp_.reactor under it).
  void HeartbeatLocked() {
    DpMessage hb;
    hb.mutable_heartbeat()->mutable_serving()->set_epoch(dp_.serving.epoch);
    hb.mutable_heartbeat()->mutable_serving()->set_version(dp_.serving.version);
    hb.mutable_heartbeat()->mutable_serving()->set_hash(dp_.serving.hash);
    Enqueue(std::move(hb));
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        std::lock_guard<std::mutex> lock(write_mu_);
        closed_ = true;  // no StartWrite after this
      }
      RemoveHold();  // OnDone may run once the in-flight write (if any) completes
      return;
    }
    switch (in_.msg_case()) {
      case CpMessage::kHelloReply: {
        std::lock_guard<std::mutex> lock(dp_.mu);
        dp_.connected = true;
        dp_.heartbeat_interval = std::chrono::seconds(std::max<uint32_t>(1, in_.hello_reply().heartbeat_interval_s()));
        dp_.next_heartbeat = SteadyClock::now() + dp_.heartbeat_interval;
        break;
      }
      case CpMessage::kChunk:
        HandleChunk(in_.chunk());
        break;
      case CpMessage::kGoaway:
        retry_after_s_ = in_.goaway().retry_after_s();
        if (in_.goaway().code() == sync::v1::Goaway::OVERLOADED) ++fleet_.admission_refusals;
        break;
      default:
        break;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(write_mu_);
    outbox_.pop_front();
    writing_ = false;
    if (ok && !closed_ && !outbox_.empty()) StartNextLocked();
  }

  void OnDone(const grpc::Status& status) override {
    {
      std::lock_guard<std::mutex> lock(dp_.mu);
      dp_.connected = false;
      if (dp_.reactor == this) dp_.reactor = nullptr;
    }
    if (!fleet_.stopping) {
      // Reconnect: honour retry_after_s (admission), else 1 s; +-20 % jitter.
      double base = retry_after_s_ > 0 ? retry_after_s_ * 1000.0 : 1000.0;
      double jitter = 0.8 + 0.4 * (static_cast<double>(std::hash<std::string>{}(dp_.node_id) % 1000) / 1000.0);
      Fleet* fleet = &fleet_;
      SimDp* dp = &dp_;
      fleet_.scheduler.After(std::chrono::milliseconds(static_cast<int64_t>(base * jitter)), [fleet, dp] {
        if (!fleet->stopping) new Reactor(*fleet, *dp);
      });
    }
    --fleet_.live_reactors;
    delete this;
  }

  void Cancel() { context_.TryCancel(); }

 private:
  void Enqueue(DpMessage msg) {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (closed_) return;
    outbox_.push_back(std::move(msg));
    if (!writing_) StartNextLocked();
  }
  void StartNextLocked() {
    writing_ = true;
    StartWrite(&outbox_.front());
  }

  void HandleChunk(const sync::v1::SnapshotChunk& chunk) {
    absl::Status added = assembler_.Add(chunk);
    if (!added.ok()) {
      ++fleet_.decode_failures;
      return;
    }
    if (!assembler_.complete()) return;
    const SteadyClock::time_point received = SteadyClock::now();
    const uint64_t nonce = assembler_.nonce();
    const bool delta = assembler_.delta();
    const ConfigVersion target = assembler_.target();
    // inflate + verify hash + parse (a delta: applied to what it holds)
    absl::StatusOr<DecodedSnapshot> decoded = delta ? assembler_.FinishDelta(dp_.held, &dp_.previous) : assembler_.Finish();
    if (dp_.previous.spoiled) dp_.previous = RecycledBase();
    if (!decoded.ok()) {
      ++fleet_.decode_failures;
      if (delta) {
        ++fleet_.deltas_nacked;  // NACK it: the CP sends the full snapshot next
        DpMessage nack;
        nack.mutable_nack()->set_nonce(nonce);
        nack.mutable_nack()->set_code(static_cast<sync::v1::Nack::Code>(NackCodeFor(decoded.status())));
        nack.mutable_nack()->set_message(std::string(decoded.status().message()));
        ToVersionRef(target, nack.mutable_nack()->mutable_rejected());
        ToVersionRef(dp_.held.version, nack.mutable_nack()->mutable_serving());
        Enqueue(std::move(nack));
      }
      return;
    }
    ++(delta ? fleet_.deltas_applied : fleet_.fulls_applied);
    DecodedSnapshot replaced = std::exchange(dp_.held, *std::move(decoded));
    const ConfigVersion& version = dp_.held.version;
    dp_.previous = RecycledBase();
    if (delta && dp_.held.changes != nullptr) {
      dp_.previous.snapshot = std::move(replaced);
      dp_.previous.to_held = dp_.held.changes;
    }
    DpMessage ack;
    ack.mutable_ack()->set_nonce(nonce);
    sync::v1::VersionRef* ref = ack.mutable_ack()->mutable_serving();
    ref->set_epoch(version.epoch);
    ref->set_version(version.version);
    ref->set_hash(version.hash);
    {
      std::lock_guard<std::mutex> lock(dp_.mu);
      dp_.serving = version;
      dp_.acked_at[version.version] = SteadyClock::now();
      dp_.received_at[version.version] = received;
    }
    Enqueue(std::move(ack));
  }

  Fleet& fleet_;
  SimDp& dp_;
  grpc::ClientContext context_;
  CpMessage in_;
  SnapshotAssembler assembler_;
  std::mutex write_mu_;
  std::deque<DpMessage> outbox_;  // front is in flight while writing_
  bool writing_ = false;
  bool closed_ = false;  // guarded by write_mu_
  uint32_t retry_after_s_ = 0;
};

struct ProcSample {
  double cpu_s = 0;  // utime + stime
  long rss_kb = 0, hwm_kb = 0;
};

ProcSample SampleProcess(pid_t pid) {
  ProcSample s;
  std::string stat = ReadAll(absl::StrCat("/proc/", pid, "/stat"));
  size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    // fields after ')' start at 3 (state); utime = 14, stime = 15 -> index 11, 12.
    if (f.size() > 12) {
      double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      s.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / ticks;
    }
  }
  std::istringstream status(ReadAll(absl::StrCat("/proc/", pid, "/status")));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kb = std::stol(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) s.hwm_kb = std::stol(line.substr(6));
  }
  return s;
}

// What each round writes: `writes` routes, `gap_ms` apart (1: one route per round).
struct Burst {
  int writes = 1;
  int gap_ms = 0;
};

int RunOnce(const std::string& cp_bin, const std::string& certs, int n, int rounds, int routes,
            int gap_ms, bool delta, int cp_count, BenchPostgres* pg, const Burst& burst,
            const std::vector<std::string>& cp_flags) {
  static int db_serial = 0;
  testing::TempDir dir;
  std::string db = dir.File("cp.db");
  if (pg != nullptr) {
    db = pg->CreateDatabase(absl::StrCat("sync_sim_", db_serial++));
    if (db.empty()) return 1;
  }
  std::vector<uint16_t> admin_ports, cluster_ports;
  std::vector<std::unique_ptr<testing::Process>> cps;
  for (int i = 0; i < cp_count; ++i) {
    admin_ports.push_back(testing::PickFreePort());
    cluster_ports.push_back(testing::PickFreePort());
    std::vector<std::string> argv = {cp_bin, "--db", db, "--admin-listen", absl::StrCat("127.0.0.1:", admin_ports[i]),
                                     "--cluster-listen", absl::StrCat("127.0.0.1:", cluster_ports[i]), "--cluster-cert",
                                     certs + "/cp.crt", "--cluster-key", certs + "/cp.key", "--cluster-ca",
                                     certs + "/ca.crt", "--log-level", "warn"};
    argv.insert(argv.end(), cp_flags.begin(), cp_flags.end());
    cps.push_back(std::make_unique<testing::Process>(absl::StrCat("cp", i), argv,
                                                     dir.File(absl::StrCat("cp", i, ".log"))));
    const uint16_t port = admin_ports[i];
    if (!testing::WaitFor([&] { return testing::Http(port, "GET", "/status").status == 200; },
                          std::chrono::seconds(15))) {
      std::fprintf(stderr, "CP %d did not start:\n%s\n", i, cps[i]->Log().c_str());
      return 1;
    }
  }
  const uint16_t admin_port = admin_ports[0];  // every write goes through the first CP
  testing::Process& cp = *cps[0];
  std::string svc = testing::Http(admin_port, "POST", "/services",
                                  R"({"name":"sim","host":"127.0.0.1","port":9})").body;
  for (int i = 0; i < routes; ++i) {
    testing::Http(admin_port, "POST", "/services/sim/routes",
                  absl::StrCat(R"({"name":"r)", i, R"(","paths":["/r)", i, R"("]})"));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // let the builder settle
  const ProcSample idle = SampleProcess(cp.pid());

  Fleet fleet;
  fleet.delta = delta;
  const std::string ca = ReadAll(certs + "/ca.crt");
  for (int i = 0; i < n; ++i) {
    auto dp = std::make_unique<SimDp>();
    dp->node_id = absl::StrCat("sim-", i);
    dp->ssl.pem_root_certs = ca;
    dp->ssl.pem_cert_chain = ReadAll(absl::StrCat(certs, "/sim-", i, ".crt"));
    dp->ssl.pem_private_key = ReadAll(absl::StrCat(certs, "/sim-", i, ".key"));
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(4 << 20);
    const std::string target = absl::StrCat("127.0.0.1:", cluster_ports[i % cp_count]);
    dp->channel = grpc::CreateCustomChannel(target, grpc::SslCredentials(dp->ssl), args);
    dp->stub = sync::v1::ConfigSync::NewStub(dp->channel);
    fleet.dps.push_back(std::move(dp));
  }

  auto all_on = [&](uint64_t version) {
    for (auto& dp : fleet.dps) {
      std::lock_guard<std::mutex> lock(dp->mu);
      if (dp->serving.version < version) return false;
    }
    return true;
  };
  // Each DP heartbeats at the interval its HelloReply gave (15 s by default), as portico-dp does.
  std::atomic<bool> hb_stop{false};
  std::thread heartbeats([&] {
    while (!hb_stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const SteadyClock::time_point now = SteadyClock::now();
      for (auto& dp : fleet.dps) {
        std::lock_guard<std::mutex> lock(dp->mu);
        if (!dp->reactor || !dp->connected || now < dp->next_heartbeat) continue;
        dp->reactor->HeartbeatLocked();
        dp->next_heartbeat = now + dp->heartbeat_interval;
      }
    }
  });

  const uint64_t start_version = CurrentVersion(admin_port);
  const ProcSample before_connect = SampleProcess(cp.pid());
  const auto connect_start = SteadyClock::now();
  for (auto& dp : fleet.dps) new Reactor(fleet, *dp);
  bool synced = testing::WaitFor([&] { return all_on(start_version); }, std::chrono::seconds(120));
  const double ramp_s = std::chrono::duration<double>(SteadyClock::now() - connect_start).count();
  const ProcSample after_connect = SampleProcess(cp.pid());
  if (!synced) std::fprintf(stderr, "N=%d: not every DP synced within 120 s\n", n);
  std::fprintf(stderr, "N=%d: synced in %.1f s, starting the rounds\n", n, ramp_s);

  std::vector<double> per_dp_ms, all_acked_ms, first_acked_ms, all_received_ms;
  const ProcSample before_rounds = SampleProcess(cp.pid());
  const ProcSample sim_before_rounds = SampleProcess(getpid());
  const auto rounds_start = SteadyClock::now();
  int failed_rounds = 0;
  for (int round = 0; round < rounds && synced; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
    SteadyClock::time_point committed;
    for (int w = 0; w < burst.writes; ++w) {
      if (w > 0 && burst.gap_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(burst.gap_ms));
      testing::HttpResult r = testing::Http(admin_port, "POST", "/services/sim/routes",
                                            absl::StrCat(R"({"paths":["/round)", round, "-", w, R"("]})"));
      committed = SteadyClock::now();  // the 201 came back: the write is committed
      if (r.status != 201) {
        std::fprintf(stderr, "POST failed: %d %s\n", r.status, r.body.c_str());
        return 1;
      }
    }
    // From the last write of the round.
    const uint64_t version = start_version + static_cast<uint64_t>(burst.writes) * (round + 1);
    if (!testing::WaitFor([&] { return all_on(version); }, std::chrono::seconds(30))) {
      ++failed_rounds;
      continue;
    }
    double worst = 0, first = 1e18, last_received = 0;
    for (auto& dp : fleet.dps) {
      std::lock_guard<std::mutex> lock(dp->mu);
      // The DP may have skipped straight to a newer version (coalescing); use the first >= version.
      auto it = dp->acked_at.lower_bound(version);
      double ms = std::chrono::duration<double, std::milli>(it->second - committed).count();
      per_dp_ms.push_back(ms);
      worst = std::max(worst, ms);
      first = std::min(first, ms);
      auto rt = dp->received_at.lower_bound(version);
      last_received = std::max(last_received, std::chrono::duration<double, std::milli>(rt->second - committed).count());
    }
    all_received_ms.push_back(last_received);
    all_acked_ms.push_back(worst);
    first_acked_ms.push_back(first);
  }
  const double rounds_wall = std::chrono::duration<double>(SteadyClock::now() - rounds_start).count();
  const ProcSample after_rounds = SampleProcess(cp.pid());
  const ProcSample sim_after_rounds = SampleProcess(getpid());

  fleet.stopping = true;
  hb_stop = true;
  heartbeats.join();
  for (auto& dp : fleet.dps) {
    std::lock_guard<std::mutex> lock(dp->mu);
    if (dp->reactor) dp->reactor->Cancel();
  }
  testing::WaitFor([&] { return fleet.live_reactors.load() == 0; }, std::chrono::seconds(20));
  std::string metrics = testing::Http(admin_port, "GET", "/metrics").body;
  for (auto& process : cps) process->Stop();

  auto metric = [&](const std::string& name) {
    size_t at = metrics.find("\n" + name + " ");
    if (at == std::string::npos) return std::string("?");
    size_t start = at + name.size() + 2;
    return metrics.substr(start, metrics.find('\n', start) - start);
  };
  std::printf(
      "N=%d mode=%s cps=%d store=%s rounds=%d routes=%d writes/round=%d (%d ms apart) | commit->ACK per DP: p50 %.1f ms p99 %.1f ms max %.1f ms | "
      "commit->all ACKed per round: p50 %.1f ms p99 %.1f ms max %.1f ms | commit->first ACK per round: p50 %.1f ms "
      "max %.1f ms | commit->all received per round: p50 %.1f ms max %.1f ms | failed rounds %d\n",
      n, delta ? "delta" : "full", cp_count, pg != nullptr ? "postgres" : "sqlite", rounds, routes, burst.writes, burst.gap_ms, Percentile(per_dp_ms, .5), Percentile(per_dp_ms, .99),
      Percentile(per_dp_ms, 1), Percentile(all_acked_ms, .5), Percentile(all_acked_ms, .99),
      Percentile(all_acked_ms, 1), Percentile(first_acked_ms, .5), Percentile(first_acked_ms, 1),
      Percentile(all_received_ms, .5), Percentile(all_received_ms, 1), failed_rounds);
  std::printf(
      "  connect ramp: all %d synced in %.2f s, %llu admission refusals (sim) / %s (CP metric), "
      "decode failures %llu | CP RSS: idle %ld KiB, after connect %ld KiB, after rounds %ld KiB, "
      "peak %ld KiB | CP CPU: ramp %.2f s, rounds %.2f s over %.1f s wall (%.0f %% of one core), the simulator's own %.2f s; "
      "snapshots built %s, deltas sent %s, gzip bytes %s; applied by the DPs: %llu deltas, %llu full snapshots, %llu deltas NACKed\n",
      n, ramp_s, static_cast<unsigned long long>(fleet.admission_refusals.load()),
      metric("portico_cp_admission_rejects_total").c_str(),
      static_cast<unsigned long long>(fleet.decode_failures.load()), idle.rss_kb,
      after_connect.rss_kb, after_rounds.rss_kb, after_rounds.hwm_kb,
      after_connect.cpu_s - before_connect.cpu_s, after_rounds.cpu_s - before_rounds.cpu_s,
      rounds_wall, 100 * (after_rounds.cpu_s - before_rounds.cpu_s) / std::max(rounds_wall, 1e-9),
      sim_after_rounds.cpu_s - sim_before_rounds.cpu_s,
      metric("portico_cp_snapshot_builds_total").c_str(), metric("portico_cp_deltas_sent_total").c_str(),
      metric("portico_cp_snapshot_bytes{encoding=\"gzip\"}").c_str(),
      static_cast<unsigned long long>(fleet.deltas_applied.load()),
      static_cast<unsigned long long>(fleet.fulls_applied.load()),
      static_cast<unsigned long long>(fleet.deltas_nacked.load()));
  std::fflush(stdout);
  return failed_rounds == 0 && synced ? 0 : 1;
}

int Main(int argc, char** argv) {
  std::string cp_bin;
  std::vector<int> ns = {10, 100, 1000};
  int rounds = 20, routes = 100, gap_ms = 300, cp_count = 1;
  std::string store = "sqlite";
  std::vector<std::string> modes = {"delta", "full"};
  Burst burst;
  std::vector<std::string> cp_flags;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--cp-bin") {
      cp_bin = value;
    } else if (flag == "--n") {
      ns.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        int v = 0;
        if (absl::SimpleAtoi(part, &v) && v > 0) ns.push_back(v);
      }
    } else if (flag == "--rounds") {
      absl::SimpleAtoi(value, &rounds);
    } else if (flag == "--routes") {
      absl::SimpleAtoi(value, &routes);
    } else if (flag == "--gap-ms") {
      absl::SimpleAtoi(value, &gap_ms);
    } else if (flag == "--cps") {
      absl::SimpleAtoi(value, &cp_count);
    } else if (flag == "--store") {
      store = value;
    } else if (flag == "--burst") {
      absl::SimpleAtoi(value, &burst.writes);
    } else if (flag == "--burst-gap-ms") {
      absl::SimpleAtoi(value, &burst.gap_ms);
    } else if (flag == "--cp-flags") {
      cp_flags = absl::StrSplit(value, ' ', absl::SkipEmpty());
    } else if (flag == "--modes") {
      modes = absl::StrSplit(value, ',', absl::SkipEmpty());
    }
  }
  if (cp_bin.empty() || ns.empty() || cp_count < 1 || burst.writes < 1 || (store != "sqlite" && store != "postgres") ||
      (cp_count > 1 && store != "postgres")) {
    std::fprintf(stderr,
                 "usage: sync_sim --cp-bin PATH [--n 10,100,1000] [--rounds 20] [--routes 100] [--gap-ms 300] "
                 "[--modes delta,full] [--cps 1] [--store sqlite|postgres] [--burst 1] [--burst-gap-ms 0] "
                 "[--cp-flags '--flag value ...'] (several CPs need postgres)\n");
    return 2;
  }
  DisableAbslDeadlockDetection();  // as portico-cp and portico-dp do
  std::unique_ptr<BenchPostgres> pg;
  if (store == "postgres") {
    pg = std::make_unique<BenchPostgres>();
    if (!pg->ok()) return 1;
  }
  // Keeps gRPC initialised for the whole run: a reactor deletes its channel in OnDone, and the
  // last channel going away must not shut gRPC down under its own callback thread.
  grpc_init();
  // 1,000 streams need more than the default 1,024 descriptors (the CP inherits this too).
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);

  testing::TempDir certs;
  if (absl::Status s = GenerateClusterCertificates(certs.path(), {}, "sim-0"); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  const int max_n = *std::max_element(ns.begin(), ns.end());
  for (int i = 0; i < max_n; ++i) {
    absl::Status s = IssueDataPlaneCertificate(certs.path(), absl::StrCat("sim-", i),
                                               absl::StrCat(certs.path(), "/sim-", i));
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  int rc = 0;
  for (int n : ns) {
    for (const std::string& mode : modes) rc |= RunOnce(cp_bin, certs.path(), n, rounds, routes, gap_ms, mode == "delta", cp_count, pg.get(), burst, cp_flags);
  }
  return rc;
}

}  // namespace
}  // namespace portico::bench

int main(int argc, char** argv) { return portico::bench::Main(argc, argv); }
