#pragma once
// The prometheus plugin's traffic counters (Kong's kong_http_requests_total, kong_bandwidth_bytes
// and the three latency histograms), counted per worker and summed when scraped.
//
// Label sets are interned off the request path (when a snapshot's plugins compile): a route id
// names a (service, route) pair of label values, a consumer id a consumer label. Ids are never
// reused or forgotten, so counters are cumulative across config swaps; series of deleted services
// and routes stay until the DP restarts (as in Kong).
//
// Each worker writes only its own shard: a fixed-capacity open-addressed table of (key, value)
// cells, keyed by (route id, consumer id, what is counted), reserved once (mmap, pages committed
// as touched) the first time the worker records anything. A worker is the only writer of its
// shard: an update is a relaxed load and store of its own cell (no read-modify-write, no lock, no
// allocation); a new cell writes its value and then publishes its key (release). The scraper
// reads every shard's published cells (acquire) and sums them. A record that finds no free cell
// within kMaxProbes is dropped and counted (dropped()).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace portico::dp::plugins {

// Kong 3.x's bucket upper bounds, in milliseconds (+Inf is implicit): kong_kong_latency_ms uses
// the first, kong_upstream_latency_ms and kong_request_latency_ms the second.
inline constexpr double kKongLatencyBucketsMs[] = {1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000,
                                                   3000, 6000};
inline constexpr double kUpstreamLatencyBucketsMs[] = {25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000,
                                                       30000, 60000};

enum class LatencyKind : uint8_t { kKong = 0, kUpstream = 1, kRequest = 2 };

class TrafficMetrics {
 public:
  static constexpr int kMaxWorkers = 256;
  static constexpr uint32_t kMaxRouteIds = (1u << 24) - 1;
  static constexpr uint32_t kMaxConsumerIds = (1u << 20) - 1;
  static constexpr int kMaxProbes = 64;

  // `cells_per_worker` is rounded up to a power of two.
  explicit TrafficMetrics(size_t cells_per_worker = size_t{1} << 18);
  ~TrafficMetrics();
  TrafficMetrics(const TrafficMetrics&) = delete;
  TrafficMetrics& operator=(const TrafficMetrics&) = delete;

  // The DP's store: what the plugin records into and the status listener renders.
  static TrafficMetrics& Process();

  // ---- label sets (any thread; takes a mutex: never on the request path)
  // The id of the (service, route) label values, >= 1; 0 when kMaxRouteIds are taken.
  uint32_t InternRoute(const std::string& service, const std::string& route);
  // The id of a consumer label value, >= 1; 0 when kMaxConsumerIds are taken.
  uint32_t InternConsumer(const std::string& consumer);
  // Kong exports kong_upstream_target_health once any prometheus plugin asked for it (until the
  // node restarts).
  void EnableUpstreamHealth() { upstream_health_.store(true, std::memory_order_relaxed); }
  bool upstream_health_enabled() const { return upstream_health_.load(std::memory_order_relaxed); }

  // ---- the request path: worker `worker` (0 <= worker < kMaxWorkers) only. `route_id` >= 1;
  // `consumer_id` 0 for none.
  void CountRequest(int worker, uint32_t route_id, uint32_t consumer_id, int status, bool from_service);
  void AddBandwidth(int worker, uint32_t route_id, uint32_t consumer_id, uint64_t ingress_bytes,
                    uint64_t egress_bytes);
  void ObserveLatency(int worker, uint32_t route_id, LatencyKind kind, double ms);

  // ---- the scraper (any thread)
  // The traffic families in Prometheus text format 0.0.4 (# HELP, # TYPE, samples); nothing for a
  // family without samples.
  void Render(std::string* out) const;
  // Records dropped because a shard was full, over every worker.
  uint64_t dropped() const;

 private:
  struct Cell {
    std::atomic<uint64_t> key;
    std::atomic<uint64_t> value;
  };
  struct alignas(64) Shard {
    std::atomic<Cell*> cells{nullptr};
    bool mapping_failed = false;  // the worker's mmap failed once: not retried per record
    std::atomic<uint64_t> dropped{0};
  };
  // The cell of `key` in the worker's shard (claimed when new), or null when the shard is full.
  Cell* FindCell(int worker, uint64_t key);
  void Add(int worker, uint64_t key, uint64_t n);
  void AddDouble(int worker, uint64_t key, double d);

  const size_t cells_per_worker_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<bool> upstream_health_{false};

  mutable std::mutex labels_mu_;
  std::vector<std::pair<std::string, std::string>> routes_;  // id - 1 -> (service, route)
  absl::flat_hash_map<std::pair<std::string, std::string>, uint32_t> route_ids_;
  std::vector<std::string> consumers_;  // id - 1 -> consumer
  absl::flat_hash_map<std::string, uint32_t> consumer_ids_;
};

// Prometheus text rendering helpers shared with the DP's node-level kong_* series: one sample
// line `name{k1="v1",...} value\n` with the values escaped.
void AppendSample(std::string* out, absl::string_view name,
                  std::initializer_list<std::pair<absl::string_view, absl::string_view>> labels,
                  absl::string_view value);
// `# HELP name help` and `# TYPE name type` lines.
void AppendFamilyHeader(std::string* out, absl::string_view name, absl::string_view help, absl::string_view type);

}  // namespace portico::dp::plugins
