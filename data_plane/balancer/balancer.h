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
//
// Health (data_plane/health/): when the upstream's health checks are on, every algorithm skips
// targets whose shared TargetHealth record is unhealthy (round-robin walks on along its sequence,
// consistent hashing along the continuum, so keys of healthy targets never move), and Pick finds
// no target when none is healthy or the healthy share of the weight is below `threshold`.
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
#include "data_plane/health/health_config.h"
#include "data_plane/health/health_registry.h"

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
  // Its health record (shared with every snapshot that has this target); null without a registry.
  std::shared_ptr<TargetHealth> health;
};

class Balancer {
 public:
  enum class Algorithm { kRoundRobin, kConsistentHashing, kLeastConnections, kLatency };
  static constexpr int kNoTarget = -1;

  // `targets` are the upstream's (any order); those with weight 0 take no traffic; a hostname
  // target is resolved per request (BalancerTarget::dns_name). `workers` is the number of
  // worker slots: each picking worker passes an index below it. `health`: where the targets'
  // health records live (null: health is never looked at). Fails on a bad `healthchecks` record.
  static absl::StatusOr<std::unique_ptr<const Balancer>> Compile(
      const config::v1::Upstream& upstream, const std::vector<const config::v1::Target*>& targets, int workers,
      HealthRegistry* health = nullptr);
  ~Balancer();

  const std::string& upstream_name() const { return upstream_name_; }
  Algorithm algorithm() const { return algorithm_; }
  const HashSource& hash_on() const { return hash_on_; }
  const HashSource& hash_fallback() const { return hash_fallback_; }
  size_t size() const { return targets_.size(); }
  // Targets that can take traffic (weight > 0).
  size_t eligible_count() const { return eligible_.size(); }
  const BalancerTarget& target(size_t i) const { return targets_[i]; }
  const std::string& upstream_id() const { return upstream_id_; }
  const HealthConfig& health_config() const { return *health_config_; }
  // Health checks are on and a registry was given: picks look at target health.
  bool health_checked() const { return health_on_; }
  // A target that can take traffic (eligible) and is healthy (always, when health is not checked)
  // and that is not in `tried`.
  bool HasUntriedTarget(absl::Span<const uint32_t> tried) const;

  // Passive health checks: what one attempt on `target` (a Pick result) saw. No-ops unless
  // passive checks are on. Lock-free, no allocation (unless the target's state flips).
  void ReportTcpFailure(int target) const { ReportPassive(target, HealthEvent::kTcpFailure, 0); }
  void ReportTimeout(int target) const { ReportPassive(target, HealthEvent::kTimeout, 0); }
  // A response head with `status`: a success or an http failure per the passive status lists
  // (neither: nothing; passive type tcp: nothing).
  void ReportHttpStatus(int target, int status) const;

  // What one attempt of `worker` on `target` (a Pick result), picked at `picked_ns` (uv_hrtime;
  // read only by latency balancing), came to: a response head with `status`, or a failure
  // (kTcpFailure or kTimeout). Feeds the passive checks and the latency estimate, whichever the
  // upstream uses; the exchange need not know which.
  void AttemptAnswered(int worker, int target, int status, uint64_t picked_ns) const;
  void AttemptFailed(int worker, int target, HealthEvent failure, uint64_t picked_ns) const;

  // The targets with a health record, for HealthRegistry::Install and HealthChecker::Reconfigure.
  void AppendHealthTargets(std::vector<HealthTarget>* out) const;

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
  // Latency: what a failed attempt (refused, reset, timed out) counts as, at least.
  static constexpr uint64_t kLatencyFailurePenaltyNs = 1000000000;

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
  bool Healthy(uint32_t target) const { return !health_on_ || targets_[target].health->healthy(); }
  // Health checks on: some target is healthy and the healthy weight share reaches `threshold`
  // (cached per worker until a target's state changes anywhere).
  bool Available(int worker) const;
  void ReportPassive(int target, HealthEvent event, int status) const;

  std::string upstream_name_, upstream_id_;
  std::shared_ptr<const HealthConfig> health_config_;
  bool health_on_ = false;   // health checks on and a registry given
  bool passive_on_ = false;  // ... and passive checks count something
  const std::atomic<uint64_t>* health_epoch_ = nullptr;  // the registry's
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
