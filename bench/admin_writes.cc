// admin_writes: Admin API writes per second and their latency, on SQLite and on PostgreSQL, in
// one run (issue 18). Each write is a POST /services/bench/routes (one route, its own path) on a
// new connection, as an operator's script would send it; C client threads send `writes` in all.
// With PostgreSQL it also runs two CPs on the one database, the clients spread over both, and
// checks that no write was lost (the version moved by exactly the number of 201s).
//
//   admin_writes --cp-bin build/control_plane/portico-cp [--writes 2000] [--clients 1,4]
//                [--stores sqlite,postgres]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bench/postgres_util.h"
#include "tests/integration/harness.h"

namespace portico::bench {
namespace {

using testing::CurrentVersion;
using testing::Percentile;

using SteadyClock = std::chrono::steady_clock;

struct Cp {
  uint16_t admin_port = 0;
  std::unique_ptr<testing::Process> process;
};

// Starts `count` CPs on `db` (no DP connects; the cluster port is only bound).
bool StartCps(const std::string& cp_bin, const std::string& db, int count, testing::TempDir& dir,
              std::vector<Cp>* cps) {
  const std::string certs_dir = dir.File("certs");
  {
    std::string gen = absl::StrCat(cp_bin, " gen-certs ", certs_dir, " --dp-id bench-dp >/dev/null 2>&1");
    if (std::system(gen.c_str()) != 0) {
      std::fprintf(stderr, "gen-certs failed\n");
      return false;
    }
  }
  for (int i = 0; i < count; ++i) {
    Cp cp;
    cp.admin_port = testing::PickFreePort();
    const uint16_t cluster_port = testing::PickFreePort();
    cp.process = std::make_unique<testing::Process>(
        absl::StrCat("cp", i),
        std::vector<std::string>{cp_bin, "--db", db, "--admin-listen", absl::StrCat("127.0.0.1:", cp.admin_port),
                                 "--cluster-listen", absl::StrCat("127.0.0.1:", cluster_port), "--cluster-cert",
                                 certs_dir + "/cp.crt", "--cluster-key", certs_dir + "/cp.key", "--cluster-ca",
                                 certs_dir + "/ca.crt", "--log-level", "warn"},
        dir.File(absl::StrCat("cp", i, ".log")));
    const uint16_t port = cp.admin_port;
    if (!testing::WaitFor([&] { return testing::Http(port, "GET", "/status").status == 200; },
                          std::chrono::seconds(15))) {
      std::fprintf(stderr, "CP %d did not start:\n%s\n", i, cp.process->Log().c_str());
      return false;
    }
    cps->push_back(std::move(cp));
  }
  return true;
}

// One measurement: `writes` POSTs from `clients` threads, client k on CP k % cps.size().
int Measure(const std::string& label, std::vector<Cp>& cps, int writes, int clients, int* serial) {
  const uint64_t before = CurrentVersion(cps[0].admin_port);
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<int> next{0}, failed{0}, created{0};
  const auto start = SteadyClock::now();
  std::vector<std::thread> threads;
  const int base = *serial;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      const uint16_t port = cps[c % cps.size()].admin_port;
      for (int i = next++; i < writes; i = next++) {
        const auto t0 = SteadyClock::now();
        testing::HttpResult r = testing::Http(port, "POST", "/services/bench/routes",
                                              absl::StrCat(R"({"paths":["/w)", base + i, R"("]})"));
        latencies[c].push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
        if (r.status == 201) {
          ++created;
        } else {
          ++failed;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  *serial += writes;
  const double wall = std::chrono::duration<double>(SteadyClock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  uint64_t after = 0;
  // Another CP's write reaches this CP's /status through the database at once (it reads the
  // version there); allow it a moment anyway.
  testing::WaitFor([&] { return (after = CurrentVersion(cps[0].admin_port)) >= before + created; },
                   std::chrono::seconds(5));
  const bool none_lost = after == before + static_cast<uint64_t>(created.load());
  std::printf("%-28s clients=%d writes=%d: %.0f writes/s | p50 %.2f ms p99 %.2f ms max %.2f ms | failed %d | "
              "version %llu -> %llu (%s)\n",
              label.c_str(), clients, writes, writes / std::max(wall, 1e-9), Percentile(all, .5), Percentile(all, .99),
              Percentile(all, 1), failed.load(), static_cast<unsigned long long>(before),
              static_cast<unsigned long long>(after), none_lost ? "none lost" : "WRITES LOST OR EXTRA");
  std::fflush(stdout);
  return failed == 0 && none_lost ? 0 : 1;
}

int RunStore(const std::string& cp_bin, const std::string& store, int cp_count, int writes,
             const std::vector<int>& clients, BenchPostgres* pg, int* db_serial) {
  testing::TempDir dir;
  std::string db = dir.File("cp.db");
  if (store == "postgres") {
    db = pg->CreateDatabase(absl::StrCat("bench_writes_", (*db_serial)++));
    if (db.empty()) return 1;
  }
  std::vector<Cp> cps;
  if (!StartCps(cp_bin, db, cp_count, dir, &cps)) return 1;
  testing::HttpResult svc =
      testing::Http(cps[0].admin_port, "POST", "/services", R"({"name":"bench","host":"127.0.0.1","port":9})");
  if (svc.status != 201) {
    std::fprintf(stderr, "POST /services: %d %s\n", svc.status, svc.body.c_str());
    return 1;
  }
  int rc = 0, serial = 0;
  // A short warm-up (connections, statement caches), not counted.
  Measure(absl::StrCat(store, " warm-up"), cps, 50, 1, &serial);
  for (int c : clients) {
    rc |= Measure(absl::StrCat(store, " ", cp_count, " CP", cp_count > 1 ? "s" : ""), cps, writes, c, &serial);
  }
  for (Cp& cp : cps) cp.process->Stop();
  return rc;
}

int Main(int argc, char** argv) {
  std::string cp_bin;
  int writes = 2000;
  std::vector<int> clients = {1, 4};
  std::vector<std::string> stores = {"sqlite", "postgres"};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--cp-bin") {
      cp_bin = value;
    } else if (flag == "--writes") {
      absl::SimpleAtoi(value, &writes);
    } else if (flag == "--clients") {
      clients.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        int v = 0;
        if (absl::SimpleAtoi(part, &v) && v > 0) clients.push_back(v);
      }
    } else if (flag == "--stores") {
      stores = absl::StrSplit(value, ',', absl::SkipEmpty());
    }
  }
  if (cp_bin.empty() || clients.empty() || writes <= 0) {
    std::fprintf(stderr, "usage: admin_writes --cp-bin PATH [--writes 2000] [--clients 1,4] [--stores sqlite,postgres]\n");
    return 2;
  }
  std::unique_ptr<BenchPostgres> pg;
  if (std::find(stores.begin(), stores.end(), "postgres") != stores.end()) {
    pg = std::make_unique<BenchPostgres>();
    if (!pg->ok()) return 1;
  }
  int rc = 0, db_serial = 0;
  for (const std::string& store : stores) {
    rc |= RunStore(cp_bin, store, 1, writes, clients, pg.get(), &db_serial);
    if (store == "postgres") rc |= RunStore(cp_bin, store, 2, writes, clients, pg.get(), &db_serial);
  }
  return rc;
}

}  // namespace
}  // namespace portico::bench

int main(int argc, char** argv) { return portico::bench::Main(argc, argv); }
