#pragma once
// Target health for the data plane's lifetime (KONG-REFERENCE.md §4.3): one record per
// (upstream id, target as configured), shared by every worker and the active checker, kept across
// snapshot recompiles. Compiled balancers hold the records of their targets (shared_ptr taken at
// compile time); the request path reads and updates them with atomics only.
//
// A record is one packed atomic word: the state (healthy or unhealthy) and Kong's consecutive
// counters (successes, tcp failures, timeouts, http failures, 0..255 each). A failure resets the
// success count, a success every failure count (lua-resty-healthcheck's masks); failure kinds
// count on their own. A healthy target counts failures: reaching a kind's
// limit (when not 0) marks it unhealthy. An unhealthy target counts successes: reaching the
// successes limit (when not 0) marks it healthy. A success on a healthy target ends the failure
// streaks; a failure on an unhealthy target ends the success streak. A state change zeroes the
// counters, logs one line and calls the change callback.
//
// Cost: reading a state is one relaxed load; a success on a healthy target with zero counters
// writes nothing; other reports are one compare-and-swap. No lock, no allocation, except on a
// state change (log line, callback).
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "data_plane/health/health_config.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace portico::dp {

enum class TargetHealthState { kHealthy, kUnhealthy, kDnsError, kHealthchecksOff };
// "HEALTHY", "UNHEALTHY", "DNS_ERROR", "HEALTHCHECKS_OFF" (Kong's names).
absl::string_view TargetHealthName(TargetHealthState state);

struct TargetHealthReport {
  std::string upstream_id, upstream_name, target;
  TargetHealthState health;
};

// What a check saw of one attempt or probe.
enum class HealthEvent { kSuccess, kTcpFailure, kTimeout, kHttpFailure };

class HealthRegistry;

// One target's health record. Thread-safe (atomics); created only by HealthRegistry::Acquire.
class TargetHealth {
 public:
  // One relaxed load.
  bool healthy() const { return (word_.load(std::memory_order_relaxed) & kUnhealthyBit) == 0; }
  // Counts `event` against `limits` (the active or passive ones of the check that saw it), as
  // described at the top of this file. `source` ("active", "passive") and `status` (the HTTP
  // status of an http failure, else 0) only go into the state-change log line.
  void Report(HealthEvent event, const HealthLimits& limits, absl::string_view source, int status = 0);
  // Sets the state and zeroes the counters (manual override). Logs and notifies when it changed.
  void Set(bool healthy, absl::string_view reason);
  // The current count of one kind (for tests and logs).
  uint32_t count(HealthEvent kind) const;
  // A target given by hostname: whether the last pick found no DNS answer for it (reported as
  // DNS_ERROR). One relaxed load when unchanged; a change logs and notifies.
  void SetDnsError(bool failed) {
    if (dns_error_.load(std::memory_order_relaxed) != failed) ChangeDnsError(failed);
  }
  bool dns_error() const { return dns_error_.load(std::memory_order_relaxed); }

  const std::string& upstream_id() const { return upstream_id_; }
  const std::string& upstream_name() const { return upstream_name_; }
  const std::string& target() const { return target_; }

  TargetHealth(HealthRegistry* registry, std::string upstream_id, std::string upstream_name, std::string target,
               std::string fingerprint);

 private:
  friend class HealthRegistry;
  static constexpr uint64_t kUnhealthyBit = uint64_t{1} << 32;
  static constexpr uint64_t kCounters = 0xffffffffULL;

  HealthRegistry* registry_;  // outlives the record's users (the DP's lifetime)
  void ChangeDnsError(bool failed);
  std::atomic<uint64_t> word_{0};
  std::atomic<bool> dns_error_{false};
  const std::string upstream_id_, upstream_name_, target_;
  const std::string fingerprint_;  // the upstream name and healthchecks text it was made for
};

// A target of a snapshot, as the registry (Report, SetManual) and the active checker see it.
struct HealthTarget {
  std::string upstream_id, upstream_name, target;
  std::shared_ptr<const HealthConfig> config;  // the upstream's; never null
  std::shared_ptr<TargetHealth> record;        // never null
  // Where active probes go. False for a target given by hostname.
  bool has_address = false;
  sockaddr_storage address{};
  // A target given by hostname (has_address false): what probes resolve.
  std::string dns_name;
  uint16_t dns_port = 0;
  std::string host_header;  // the Host probes send
  uint32_t weight = 0;
  // https probes of an upstream with a client_certificate: client contexts presenting it, one
  // verifying with the system CAs and one not (https_verify_certificate picks). Null: the
  // checker's own contexts, without a client certificate.
  std::shared_ptr<SSL_CTX> probe_tls_verify;
  std::shared_ptr<SSL_CTX> probe_tls_no_verify;
};

class HealthRegistry {
 public:
  HealthRegistry() = default;
  HealthRegistry(const HealthRegistry&) = delete;
  HealthRegistry& operator=(const HealthRegistry&) = delete;

  // ---- for the sync side (any thread)
  // The targets of the installed snapshot, in (upstream name, target) order.
  std::vector<TargetHealthReport> Report() const;
  // Manual override (Kong's POST /upstreams/{u}/targets/{t}/healthy|unhealthy): `upstream` is an
  // id or a name, `target` the target string (as stored, or in any form Kong accepts); resets
  // counters. NotFoundError when unknown; FailedPrecondition when the upstream's health checks are
  // off (its balancer does not look at health then).
  absl::Status SetManual(absl::string_view upstream, absl::string_view target, bool healthy);
  // Called (any thread, no lock held) after a target's state flips. It may run on a proxy worker
  // (passive checks): it must be quick and must not block (e.g. wake the heartbeat thread).
  void SetOnChange(std::function<void()> callback);

  // ---- for the snapshot compiler (one thread at a time)
  // The record of (upstream_id, target): the installed one when the upstream's name and
  // `healthchecks_text` are unchanged, else a new healthy one (a changed config starts afresh).
  std::shared_ptr<TargetHealth> Acquire(const std::string& upstream_id, const std::string& upstream_name,
                                        const std::string& target, absl::string_view healthchecks_text);
  // After the snapshot they come from is published: these become the current targets; the
  // registry drops the records of any other (balancers of older snapshots keep theirs alive).
  void Install(std::vector<HealthTarget> targets);

  // Moves on every state change: balancers cache per-worker verdicts (threshold) against it.
  const std::atomic<uint64_t>& epoch() const { return epoch_; }

 private:
  friend class TargetHealth;
  void OnStateChange(const TargetHealth& record, bool healthy, absl::string_view reason);
  void NotifyChange();

  mutable std::mutex mu_;
  // Installed targets by (upstream id, target).
  std::map<std::pair<std::string, std::string>, HealthTarget> targets_ ABSL_GUARDED_BY(mu_);
  std::mutex callback_mu_;
  std::function<void()> on_change_ ABSL_GUARDED_BY(callback_mu_);
  std::atomic<uint64_t> epoch_{0};
};

}  // namespace portico::dp
