// upstreams_scale: a real portico-cp and portico-dp on loopback with U upstreams of T targets each
// (default 10,000 x 2), every upstream named by one service and one route. Prints the Admin API
// write time, the CP snapshot build, the DP apply (validate + compile, balancers included) and its
// RSS, and the time from one more target's commit to the DP serving it. With `1 1000` it measures
// one upstream of 1,000 targets. Proxied requests through the first upstream check the result.
// Usage: upstreams_scale [upstreams] [targets_per_upstream] [writer_threads]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// Runs `count` writes on `writers` threads; returns how many failed (`write` returned false).
template <typename Write>
int Parallel(int count, int writers, Write write) {
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < writers; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < count; i = next++) {
        if (!write(i)) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  return failed.load();
}

int Run(int upstreams, int targets, int writers) {
  EchoUpstream upstream;
  Cluster cluster;
  if (!cluster.StartCp()) {
    std::fprintf(stderr, "CP did not start\n%s", cluster.Logs().c_str());
    return 1;
  }
  // Target i of every upstream: 127.0.0.1:<echo port> for i = 0, other loopback addresses on the
  // same port after it (127/8 is all loopback), so the first target always answers.
  auto target_text = [&](int i) {
    return i == 0 ? absl::StrCat("127.0.0.1:", upstream.port())
                  : absl::StrCat("127.", 1 + i / 65536, ".", (i / 256) % 256, ".", i % 256, ":", upstream.port());
  };
  std::printf("creating %d upstreams x %d targets, %d services, %d routes (%d writers)...\n", upstreams, targets,
              upstreams, upstreams, writers);
  auto t0 = Clock::now();
  int failed = Parallel(upstreams, writers, [&](int u) {
    const std::string name = absl::StrCat("u", u, ".bench");
    bool ok = cluster.Admin("POST", "/upstreams", {{"name", name}}).status == 201;
    for (int t = 0; ok && t < targets; ++t) {
      ok = cluster.Admin("POST", absl::StrCat("/upstreams/", name, "/targets"), {{"target", target_text(t)}}).status ==
           201;
    }
    ok = ok && cluster.Admin("POST", "/services", {{"name", absl::StrCat("s", u)}, {"host", name}}).status == 201;
    ok = ok && cluster.Admin("POST", absl::StrCat("/services/s", u, "/routes"),
                             {{"name", absl::StrCat("r", u)}, {"paths", {absl::StrCat("/r", u)}}})
                       .status == 201;
    return ok;
  });
  const int writes = upstreams * (targets + 3);
  std::printf("  %d writes in %.1f s (%d upstreams failed)\n", writes, Seconds(t0), failed);
  const uint64_t version = cluster.CpVersion();
  WaitFor([&] { return cluster.cp()->Log().find(absl::StrCat("published config version ", version, " ")) != std::string::npos; }, 120s);
  std::printf("CP: %s\n", LastLineWith(cluster.cp()->Log(), "published config version ").c_str());

  auto dp_start = Clock::now();
  DataPlane& dp = cluster.StartDp({.workers = 2});
  if (!cluster.WaitDpSynced(dp, 180s)) {
    std::fprintf(stderr, "DP did not sync\n%s", cluster.Logs().c_str());
    return 1;
  }
  std::printf("DP first sync (connect + transfer + apply): %.2f s\n", Seconds(dp_start));
  std::printf("DP: %s\n", LastLineWith(dp.process->Log(), "validated in").c_str());
  std::printf("DP: %s\n", LastLineWith(dp.process->Log(), "applied in").c_str());
  std::printf("DP RSS after first apply: %ld KiB (peak %ld KiB)\n", ProcStatusKb(dp.process->pid(), "VmRSS"),
              ProcStatusKb(dp.process->pid(), "VmHWM"));

  // Requests through the first upstream: its first target answers; the others (unused loopback
  // addresses without a listener) refuse, and retries move on to another target.
  int ok = 0, bad = 0;
  for (int i = 0; i < 20; ++i) {
    HttpResult r = cluster.Proxy(dp, "/r0/x");
    (r.ok && r.status == 200 ? ok : bad)++;
  }
  std::printf("proxied GET /r0/x: %d x 200, %d other (targets without a listener may exhaust retries)\n", ok, bad);

  auto commit = Clock::now();
  HttpResult added = cluster.Admin("POST", "/upstreams/u0.bench/targets", {{"target", target_text(targets)}});
  const bool synced = added.status == 201 && cluster.WaitDpSynced(dp, 120s);
  std::printf("one more target: commit -> DP serving %.2f s (synced=%d)\n", Seconds(commit), synced);
  std::printf("DP: %s\n", LastLineWith(dp.process->Log(), "applied in").c_str());
  std::printf("DP RSS after second apply: %ld KiB (peak %ld KiB)\n", ProcStatusKb(dp.process->pid(), "VmRSS"),
              ProcStatusKb(dp.process->pid(), "VmHWM"));
  std::string cp_metrics = Http(cluster.admin_port(), "GET", "/metrics").body;
  for (absl::string_view line : absl::StrSplit(cp_metrics, '\n')) {
    if (absl::StartsWith(line, "portico_cp_snapshot_bytes")) std::printf("CP metric %s\n", std::string(line).c_str());
  }
  return synced && failed == 0 ? 0 : 2;
}

}  // namespace
}  // namespace portico::testing

int main(int argc, char** argv) {
  int upstreams = 10000, targets = 2, writers = 4;
  if (argc > 1 && !absl::SimpleAtoi(argv[1], &upstreams)) return 2;
  if (argc > 2 && !absl::SimpleAtoi(argv[2], &targets)) return 2;
  if (argc > 3 && !absl::SimpleAtoi(argv[3], &writers)) return 2;
  return portico::testing::Run(std::max(1, upstreams), std::max(1, targets), std::max(1, writers));
}
