// apply_100k: a real portico-cp and portico-dp on loopback with N routes (default 100,000).
// Prints the snapshot size, the CP build time, the DP apply time and peak RSS, and the latency
// of requests proxied through the DP while it swaps to a new N-route config (vs. a baseline
// window without a swap), then commit -> DP serving for one-route changes sent as deltas and, to a
// DP started with --incremental-sync off, as full snapshots. Usage: apply_100k [routes] [writer_threads]
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "bench/bench_util.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Last "<prefix><number>" in `log`, as text ("" if none).
std::string LastAfter(const std::string& log, const std::string& prefix, const std::string& stop) {
  size_t pos = log.rfind(prefix);
  if (pos == std::string::npos) return "";
  pos += prefix.size();
  return log.substr(pos, log.find(stop, pos) - pos);
}

struct Latencies {
  std::vector<double> ms;
  int failed = 0;
  void Print(const char* label) {
    std::sort(ms.begin(), ms.end());
    auto pct = [&](double p) {
      return ms.empty() ? 0.0 : ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
    };
    std::printf("%-26s requests %6zu  failed %d  p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", label,
                ms.size(), failed, pct(0.5), pct(0.99), ms.empty() ? 0.0 : ms.back());
  }
};

// Proxies GET /r0/x (one connection per request, like the tests) until `stop`.
Latencies LoadUntil(Cluster& cluster, const DataPlane& dp, const std::atomic<bool>& stop) {
  Latencies out;
  while (!stop) {
    auto t0 = Clock::now();
    HttpResult r = cluster.Proxy(dp, "/r0/x");
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (r.ok && r.status == 200) {
      out.ms.push_back(ms);
    } else {
      ++out.failed;
    }
  }
  return out;
}

int Run(int routes, int writers) {
  EchoUpstream upstream;
  Cluster cluster;
  if (!cluster.StartCp()) {
    std::fprintf(stderr, "CP did not start\n%s", cluster.Logs().c_str());
    return 1;
  }
  HttpResult s = cluster.Admin("POST", "/services",
                               {{"name", "echo"}, {"url", absl::StrCat("http://127.0.0.1:", upstream.port())}});
  if (s.status != 201) {
    std::fprintf(stderr, "service: %d %s\n", s.status, s.body.c_str());
    return 1;
  }
  std::printf("creating %d routes through the Admin API (%d writers)...\n", routes, writers);
  auto t0 = Clock::now();
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < writers; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < routes; i = next++) {
        HttpResult r = cluster.Admin(
            "POST", "/services/echo/routes",
            {{"name", absl::StrCat("r", i)}, {"paths", {absl::StrCat("/r", i)}},
             {"hosts", {absl::StrCat("h", i % 100, ".example.com"), "client.example"}},
             {"methods", {"GET", "POST"}}});
        if (r.status != 201) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  std::printf("  %d writes in %.1f s (%d failed)\n", routes,
              std::chrono::duration<double>(Clock::now() - t0).count(), failed.load());
  // Let the builder publish the final version.
  const uint64_t version = cluster.CpVersion();
  WaitFor([&] { return cluster.cp()->Log().find(absl::StrCat("published config version ", version, " ")) != std::string::npos; }, 60s);
  std::printf("CP: %s\n", LastLineWith(cluster.cp()->Log(), "published config version ").c_str());

  // A fresh DP receives the whole N-route snapshot as its first config.
  auto dp_start = Clock::now();
  // BENCH_APPLY_NICE=N passes --apply-nice=N to the DPs (default: the DP's default).
  std::vector<std::string> dp_args;
  if (const char* nice = std::getenv("BENCH_APPLY_NICE"); nice != nullptr) dp_args.push_back(absl::StrCat("--apply-nice=", nice));
  DataPlane& dp = cluster.StartDp({.extra_args = dp_args, .workers = 2});
  if (!cluster.WaitDpSynced(dp, 120s)) {
    std::fprintf(stderr, "DP did not sync\n%s", cluster.Logs().c_str());
    return 1;
  }
  std::printf("DP first sync (connect + transfer + apply): %.2f s\n",
              std::chrono::duration<double>(Clock::now() - dp_start).count());
  std::printf("DP: %s\n", LastLineWith(dp.process->Log(), "validated in").c_str());
  std::printf("DP: %s\n", LastLineWith(dp.process->Log(), "applied in").c_str());
  std::printf("DP RSS after first apply: %ld KiB (peak %ld KiB)\n", ProcStatusKb(dp.process->pid(), "VmRSS"),
              ProcStatusKb(dp.process->pid(), "VmHWM"));

  // Baseline latency, then latency while the DP takes one-route changes: as deltas, then (a DP
  // started with --incremental-sync off) as full snapshots.
  std::atomic<bool> stop{false};
  Latencies baseline;
  std::thread base([&] { baseline = LoadUntil(cluster, dp, stop); });
  std::this_thread::sleep_for(3s);
  stop = true;
  base.join();

  bool all_served = true;
  // BENCH_TRACE=1: each round's commit time, and the CP's and DP's last log lines after the
  // rounds without load (where the time between commit and serving goes).
  const bool trace = std::getenv("BENCH_TRACE") != nullptr;
  // `count` rounds of one added route each, 400 ms apart: commit -> the DP proxies the new route
  // (polled every 2 ms), under load from LoadUntil.
  // `during` null: no load meanwhile (the time the change takes when the DP has the CPU it wants).
  auto rounds = [&](DataPlane& target, const std::string& label, int count, Latencies* during) {
    std::vector<double> ms, post_ms;
    stop = false;
    std::thread load([&] {
      if (during != nullptr) *during = LoadUntil(cluster, target, stop);
    });
    for (int i = 0; i < count; ++i) {
      std::this_thread::sleep_for(400ms);
      std::string slug = label;
      for (char& c : slug) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) c = '-';
      }
      const std::string path = absl::StrCat("/", slug, "-", i);
      auto sent = Clock::now();
      HttpResult r = cluster.Admin("POST", "/services/echo/routes", {{"name", absl::StrCat(slug, "-", i)}, {"paths", {path}}});
      auto commit = Clock::now();  // the 201 came back: the write is committed
      const absl::Time commit_wall = absl::Now();
      post_ms.push_back(std::chrono::duration<double, std::milli>(commit - sent).count());
      if (r.status != 201) {
        std::fprintf(stderr, "route %s: %d %s\n", path.c_str(), r.status, r.body.c_str());
        all_served = false;
        break;
      }
      bool served = false;
      while (!served && Clock::now() - commit < 30s) {
        served = cluster.Proxy(target, path + "/x").status == 200;
        if (!served) std::this_thread::sleep_for(2ms);
      }
      all_served = all_served && served;
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - commit).count());
      if (trace) {
        std::printf("  trace: %s committed at %s, served after %.0f ms\n", path.c_str(),
                    absl::FormatTime("%H:%M:%E3S", commit_wall, absl::UTCTimeZone()).c_str(), ms.back());
      }
    }
    std::this_thread::sleep_for(400ms);
    stop = true;
    load.join();
    std::sort(ms.begin(), ms.end());
    std::sort(post_ms.begin(), post_ms.end());
    std::printf("%s: one route added, commit (201) -> DP serving it (%zu rounds): min %.0f ms, median %.0f ms, max %.0f ms"
                " (the POST itself: median %.0f ms)\n",
                label.c_str(), ms.size(), ms.empty() ? 0 : ms.front(), ms.empty() ? 0 : ms[ms.size() / 2],
                ms.empty() ? 0 : ms.back(), post_ms.empty() ? 0 : post_ms[post_ms.size() / 2]);
  };

  Latencies during_delta, during_full;
  rounds(dp, "delta, no load", 3, nullptr);
  if (trace) {  // what the CP and the DP logged during those rounds
    for (const std::string& log : {cluster.cp()->Log(), dp.process->Log()}) {
      std::vector<absl::string_view> lines = absl::StrSplit(log, '\n');
      for (size_t i = lines.size() > 24 ? lines.size() - 24 : 0; i < lines.size(); ++i) {
        if (!lines[i].empty()) std::printf("  trace: %s\n", std::string(lines[i]).c_str());
      }
    }
  }
  std::printf("DP: %s\n", LastLineWith(dp.process->Log(), "applied delta").c_str());
  std::printf("DP: %s\n", LastLineWith(dp.process->Log(), "validated in").c_str());
  rounds(dp, "delta, under load", 5, &during_delta);
  std::printf("CP: %s\n", LastLineWith(cluster.cp()->Log(), "published config version ").c_str());
  std::printf("DP: %s\n", LastLineWith(dp.process->Log(), "applied delta").c_str());
  std::printf("DP: %s\n", LastLineWith(dp.process->Log(), "validated in").c_str());
  std::printf("DP RSS after the delta rounds: %ld KiB (peak %ld KiB)\n",
              ProcStatusKb(dp.process->pid(), "VmRSS"), ProcStatusKb(dp.process->pid(), "VmHWM"));
  {
    json status = json::parse(Http(dp.status_port, "GET", "/status").body, nullptr, false);
    if (status.is_object() && status.contains("sync")) {
      std::printf("DP: deltas applied %d, of which in place %d\n", status["sync"].value("deltas_applied", -1),
                  status["sync"].value("deltas_in_place", -1));
    }
  }
  std::string dp_metrics = Http(dp.status_port, "GET", "/metrics").body;
  dp.process->Stop();

  // The same rounds through full snapshots: a DP that does not apply deltas.
  auto full_start = Clock::now();
  std::vector<std::string> full_args = dp_args;
  full_args.push_back("--incremental-sync=off");
  DataPlane& full_dp = cluster.StartDp({.extra_args = full_args, .workers = 2, .log_name = "dp-full.log"});
  if (!cluster.WaitDpSynced(full_dp, 120s)) {
    std::fprintf(stderr, "full DP did not sync\n%s", cluster.Logs().c_str());
    return 1;
  }
  std::printf("full DP first sync (connect + transfer + apply): %.2f s\n",
              std::chrono::duration<double>(Clock::now() - full_start).count());
  rounds(full_dp, "full, no load", 3, nullptr);
  std::printf("DP: %s\n", LastLineWith(full_dp.process->Log(), "validated in").c_str());
  rounds(full_dp, "full, under load", 3, &during_full);
  std::printf("DP: %s\n", LastLineWith(full_dp.process->Log(), "validated in").c_str());
  std::printf("DP: %s\n", LastLineWith(full_dp.process->Log(), "applied in").c_str());
  baseline.Print("latency, no change (3 s):");
  during_delta.Print("latency, delta rounds:");
  during_full.Print("latency, full rounds:");
  const bool synced = all_served;
  std::string metrics = dp_metrics;
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (absl::StartsWith(line, "portico_dp_config_apply_seconds_sum") ||
        absl::StartsWith(line, "portico_dp_config_apply_seconds_count")) {
      std::printf("DP metric %s\n", std::string(line).c_str());
    }
  }
  std::string cp_metrics = Http(cluster.admin_port(), "GET", "/metrics").body;
  for (absl::string_view line : absl::StrSplit(cp_metrics, '\n')) {
    if (absl::StartsWith(line, "portico_cp_snapshot_bytes")) std::printf("CP metric %s\n", std::string(line).c_str());
  }
  return synced && during_delta.failed == 0 && during_full.failed == 0 ? 0 : 2;
}

}  // namespace
}  // namespace portico::testing

int main(int argc, char** argv) {
  int routes = 100000, writers = 4;
  if (argc > 1 && !absl::SimpleAtoi(argv[1], &routes)) return 2;
  if (argc > 2 && !absl::SimpleAtoi(argv[2], &writers)) return 2;
  return portico::testing::Run(routes, std::max(1, writers));
}
