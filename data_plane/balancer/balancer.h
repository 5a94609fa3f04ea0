#pragma once
// Kong's ring-balancer for one upstream (KONG-REFERENCE.md §4.2): its targets with their weights,
// and the pick of a target for each attempt of a request. Compiled once per snapshot from the
// upstream and its targets, shared read-only by every worker; what a pick changes (a worker's
// round-robin position, its open connections per target) lives in per-worker slots that only
// that worker touches, so no pick takes a lock or shares a cache line with another worker.
//
// - round-robin: the smooth weighted sequence (nginx's: no burst to one target) computed once,
//   each worker walking it from its own offset.
// - consistent-hashing: a continuum of points, slots/100 per target of weight 100 (in proportion
//   for other weights); a key goes to the first point at or after its hash. A target's points
//   depend on it alone, so adding or removing one moves only the keys of its points.
// - least-connections: the target with the fewest (this worker's) open attempts per weight.
// - latency: Kong's peak-EWMA (decay 10 s) of each target's response time as this worker saw it,
//   times its open attempts + 1, over its weight; the lower of two random candidates wins.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/config/config_set.h"
#include "data_plane/balancer/destinations.h"

namespace portico::dp {

// Where consistent hashing takes its key from (Kong's hash_on / hash_fallback).
enum class HashInput { kNone, kConsumer, kIp, kHeader, kCookie, kPath, kQueryArg, kUriCapture };

struct HashSource {
  HashInput input = HashInput::kNone;
  std::string name;  // the header (lowercase), cookie, query argument or capture group
  std::string cookie_path;  // kCookie: the Path of the cookie the DP sets when a request has none
};

// One target as the balancer uses it.
struct BalancerTarget {
  Target address;
  std::string name;         // as configured: "10.0.0.1:8000"
  std::string host_header;  // the Host to send: the upstream's host_header, else host[:port]
  uint32_t weight = 0;
  // A hostname target (address unset): the name (lowercase) and port the worker's resolver
  // looks up (data_plane/dns). Empty for an IP literal or localhost.
  std::string dns_name;
  uint16_t dns_port = 0;
};

class Balancer {
 public:
  enum class Algorithm { kRoundRobin, kConsistentHashing, kLeastConnections, kLatency };
  static constexpr int kNoTarget = -1;

  // `targets` are the upstream's (any order); those with weight 0 take no traffic; a hostname
  // target is resolved per request (BalancerTarget::dns_name). `workers` is the number of
  // worker slots: each picking worker passes an index below it.
  static absl::StatusOr<std::unique_ptr<const Balancer>> Compile(
      const config::v1::Upstream& upstream, const std::vector<const config::v1::Target*>& targets, int workers);
  ~Balancer();

  const std::string& upstream_name() const { return upstream_name_; }
  Algorithm algorithm() const { return algorithm_; }
  const HashSource& hash_on() const { return hash_on_; }
  const HashSource& hash_fallback() const { return hash_fallback_; }
  size_t size() const { return targets_.size(); }
  // Targets that can take traffic (weight > 0).
  size_t eligible_count() const { return eligible_.size(); }
  const BalancerTarget& target(size_t i) const { return targets_[i]; }

  // The target for one attempt, avoiding `tried` (targets earlier attempts used) while another
  // target can take traffic; kNoTarget when none can. `key_hash`: consistent hashing's key
  // (HashKey). Counts the attempt as open for least-connections until Release.
  // `now_ns`: the time for latency balancing (uv_hrtime(); 0 = read it).
  int Pick(int worker, uint64_t key_hash, absl::Span<const uint32_t> tried, uint64_t now_ns = 0) const;
  // An attempt of `worker` on `target` (a Pick result) ended.
  void Release(int worker, int target) const;
  // Latency: `target` answered `worker`'s attempt `elapsed_ns` after its pick (to the response
  // head), observed at `now_ns` (uv_hrtime). Does nothing for other algorithms.
  void RecordLatency(int worker, int target, uint64_t elapsed_ns, uint64_t now_ns) const;
  // Latency: the decay time of the EWMA (Kong's DECAY_TIME).
  static constexpr double kLatencyDecayNs = 10e9;

  // Consistent hashing's hash of a key: stable across processes and builds (every data plane
  // sends the same key to the same target).
  static uint64_t HashKey(absl::string_view key);

 private:
  struct WorkerSlot;
  Balancer() = default;
  int PickRoundRobin(int worker, absl::Span<const uint32_t> tried) const;
  int PickHashed(uint64_t key_hash, absl::Span<const uint32_t> tried) const;
  int PickLeastConnections(int worker, absl::Span<const uint32_t> tried) const;
  int PickLatency(int worker, absl::Span<const uint32_t> tried, uint64_t now_ns) const;
  double LatencyScore(int worker, uint32_t target, uint64_t now_ns) const;
  struct LatencyEstimate {
    double ewma_ns = 0;     // 0: no answer seen yet (the target is tried first)
    uint64_t stamp_ns = 0;  // when ewma_ns was last updated
  };

  std::string upstream_name_;
  Algorithm algorithm_ = Algorithm::kRoundRobin;
  HashSource hash_on_, hash_fallback_;
  std::vector<BalancerTarget> targets_;
  std::vector<uint32_t> eligible_;   // targets that can take traffic (weight > 0)
  std::vector<uint32_t> sequence_;   // round-robin: target indexes, smooth weighted order
  struct Point {
    uint64_t hash;
    uint32_t target;
  };
  std::vector<Point> continuum_;     // consistent hashing, sorted by hash
  int workers_ = 1;
  std::unique_ptr<WorkerSlot[]> slots_;      // one per worker
  std::unique_ptr<uint32_t[]> connections_;  // least-connections: per worker, per target
  size_t connections_stride_ = 0;            // a worker's row, padded to a cache line
  std::unique_ptr<LatencyEstimate[]> latency_;  // latency: per worker, per target (same stride)
};

}  // namespace portico::dp
