#pragma once
// The data plane side of the CP <-> DP config stream (docs/sync.md, SYNC-PROTOCOL.md §5).
// Dials the CP over mutual TLS, says Hello, reassembles and verifies snapshots, hands them to
// the runtime through ApplyConfigFn, and ACKs/NACKs. Reconnects forever. No gRPC types here.
// Deltas ("delta.v1" in Hello.capabilities): the client holds the decoded version it serves
// (config and resource index) and applies a delta from exactly that version to it; the result's
// hash is verified before ApplyConfigFn sees it, as for a full snapshot.
//
// Threading: one client thread (connect, read, decode, apply) plus one heartbeat thread per
// live stream. Public methods are thread-safe.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/config/config_set.h"
#include "common/config/validate.h"

namespace portico::dp {

class SyncClientTestHooks;

// One target's health as this DP's balancer sees it, reported to the CP in heartbeats
// (docs/sync.md "Target health").
struct TargetHealthView {
  std::string upstream_id, upstream_name, target, health;  // health: "HEALTHY", "UNHEALTHY", "DNS_ERROR", "HEALTHCHECKS_OFF"
};

// An operator's manual override received from the CP (POST /upstreams/{u}/targets/{t}/healthy).
struct HealthOverrideCommand {
  std::string upstream_id, upstream_name, target;
  bool healthy = true;
};

struct SyncClientOptions {
  // host:port[,host:port...] (cp_targets.h): one CP is dialled at a time; when its stream ends or
  // cannot be opened, the next attempt (after the usual backoff) goes to the next address, round
  // robin over the entries and over the addresses each name resolves to.
  std::string control_plane;
  std::string cert_file, key_file, ca_file;  // DP client cert/key; CA that signed the CP cert
  std::string server_name;     // optional: expected CP name (TLS target name override); default: host of each entry
  // Optional (tests): how entry hosts resolve; unset: getaddrinfo (ResolveHostAddresses). Called
  // on a thread of its own, so that Stop() stays prompt while a lookup hangs.
  std::function<absl::StatusOr<std::vector<std::string>>(const std::string& host)> resolve;
  // Where the rotation starts (ControlPlaneRotation's `start`); unset: at random, so that the DPs
  // given one list spread over its CPs.
  std::optional<uint64_t> rotation_start;
  std::string hostname;        // reported to the CP
  std::map<std::string, std::string> labels;  // reported to the CP
  absl::Duration backoff_initial = absl::Seconds(1), backoff_max = absl::Seconds(30);  // x1.6, +-20% jitter
  // Wait after the CP refused us (PERMISSION_DENIED / FAILED_PRECONDITION): retry slowly.
  absl::Duration refused_retry = absl::Seconds(60);
  // A stream on which neither HelloReply nor Goaway arrives within this time is cancelled and
  // retried with the normal backoff, so a stream the CP never answers cannot hold the DP.
  absl::Duration hello_reply_timeout = absl::Seconds(20);
  uint64_t max_snapshot_bytes = uint64_t{512} << 20;  // decompressed cap
  // Opt-in persistence (D9): when set, every applied snapshot is written atomically to this
  // directory (data_plane/sync/snapshot_cache.h), and at start the client loads, verifies and
  // applies the last good one before dialling the CP (then announces it in Hello.serving).
  std::string snapshot_cache_dir;
  // Optional: read for Heartbeat.requests_total (must be thread-safe and cheap).
  std::function<uint64_t()> requests_total;
  // Optional: called on the client thread after each successful apply with the time taken by
  // decode + verify + apply (not persistence).
  std::function<void(absl::Duration)> on_applied;
  // Optional: takes (never null), after each ACK of a new version, the previous version's held
  // config and resource index, so that they are freed off the client thread (portico-dp: the proxy's release
  // thread; tens of ms at 100,000 routes). Unset: they are freed on the client thread.
  std::function<void(std::shared_ptr<const void>)> release;
  // Announce "delta.v1" (--incremental-sync): the CP then sends a change as a delta from the
  // version served instead of the whole config. Off: every change comes as a full snapshot.
  bool incremental = true;
  // Optional: applies a config reconstructed from a delta, told which entities the delta
  // upserted (the rest passed validation in the base already). Unset: deltas go through the
  // ApplyConfigFn too.
  std::function<absl::Status(std::shared_ptr<const ConfigSet>, const ConfigVersion&, const ChangedEntities& upserted)>
      apply_delta;
  // The software version announced to the CP (tests announce others).
  std::string dp_build = PORTICO_VERSION;
  // The plugins this DP can run, announced in Hello: the CP sends no config needing another.
  std::vector<std::string> plugins;
  // Target health (docs/sync.md "Target health"). Both optional.
  // The DP's whole view, called on the heartbeat thread without any client lock held (it may call
  // NotifyTargetHealthChanged). Unset: heartbeats carry no health report (as an older DP's).
  std::function<std::vector<TargetHealthView>()> target_health;
  // A manual override from the CP, called on the client thread; an error is logged. Unset: the
  // override is logged and ignored.
  std::function<absl::Status(const HealthOverrideCommand&)> on_health_override;
  // Shortest gap between two heartbeats sent early because the health view changed.
  absl::Duration health_heartbeat_min_gap = absl::Seconds(1);
  // At most this many entries per report (the rest are left out and the report says truncated);
  // entries also stop at ~2 MiB of strings, so a report fits the 4 MiB message limit.
  size_t max_target_health_entries = 10000;
};

// Called on the client's thread. Returns OK once the config is built, swapped and serving;
// an error makes the client NACK (the message goes to the CP) and keep serving the old one.
using ApplyConfigFn =
    std::function<absl::Status(std::shared_ptr<const ConfigSet>, const ConfigVersion&)>;

struct SyncClientStats {
  uint64_t connect_attempts = 0;   // streams opened (each reconnect counts)
  uint64_t sessions = 0;           // streams whose Hello was answered
  uint64_t snapshots_applied = 0;  // ACKed (full snapshots and deltas)
  uint64_t snapshots_rejected = 0; // NACKed (decode, hash, size or apply errors; deltas included)
  uint64_t deltas_applied = 0;     // of snapshots_applied: deltas (applied to the held config)
  uint64_t deltas_in_place = 0;    // of deltas_applied: built in the version before, brought forward
  uint64_t deltas_rejected = 0;    // of snapshots_rejected: deltas (base not served, hash, apply...)
  uint64_t up_to_date = 0;         // UpToDate answers (nothing to resend)
  uint64_t refusals = 0;           // PERMISSION_DENIED / FAILED_PRECONDITION from the CP
  uint64_t partial_discarded = 0;  // streams that ended in the middle of a snapshot
  bool loaded_from_cache = false;  // the config served at start came from the snapshot cache
  uint64_t persisted = 0;          // snapshots written to the snapshot cache
  uint64_t persist_failures = 0;   // writes to the snapshot cache that failed (still ACKed)
  uint64_t health_reports = 0;     // heartbeats that carried a full health view
  uint64_t health_overrides = 0;   // HealthOverride messages received from the CP
  uint64_t health_override_failures = 0;  // ... that on_health_override refused (or none was set)
  uint64_t control_plane_moves = 0;  // attempts to another address than the attempt before
};

// The control plane of the live stream (all empty while not connected).
struct ControlPlaneLink {
  std::string entry;    // the --control-plane entry ("cp.example:8005")
  std::string address;  // the address connected to ("10.0.0.2:8005")
  std::string cp_id;    // HelloReply.cp_id
};

class SyncClient {
 public:
  // Reads the TLS files and the node id from the certificate (InvalidArgument if it has no DP
  // identity), then starts the client thread. Never waits for the CP. `test_hooks` (fault
  // injection, sync_client_test_hooks.h) is null in production; it must outlive the client.
  static absl::StatusOr<std::unique_ptr<SyncClient>> Start(SyncClientOptions options, ApplyConfigFn apply,
                                                           const SyncClientTestHooks* test_hooks = nullptr);
  ~SyncClient();  // Stop()s

  bool connected() const;         // stream up and Hello answered
  ControlPlaneLink control_plane() const;  // which CP the live stream is with
  ConfigVersion serving() const;  // what it serves (empty if none)
  std::string node_id() const;    // from its own certificate
  SyncClientStats stats() const;
  // Wall-clock seconds (Unix time) of the last moment this DP was known to serve what the CP
  // wanted: now while the stream is up and nothing is pending or rejected; otherwise the last
  // apply / UpToDate / in-sync disconnect (at start from the cache: the cache file's mtime).
  // 0 if never.
  double last_sync_unix() const;
  // The health view changed: send a heartbeat with it soon (at most one early heartbeat per
  // health_heartbeat_min_gap; calls in between are coalesced). Any thread; never blocks on the
  // network. The registry behind `target_health` calls it on every change of its view, including
  // targets added or removed by a config apply (the first report of a stream, sent right after
  // the CP's HelloReply, may come before the DP has any config).
  void NotifyTargetHealthChanged();
  // Reads the cluster cert, key and CA bundle again from the options' paths (SIGHUP). When they
  // are readable, parse, the key belongs to the cert and the cert carries the same node id, the
  // next connection to the CP uses them; the live stream continues on its connection. Otherwise
  // the old material stays and the error says why (never with key material).
  absl::Status ReloadCertificates();
  // notAfter of the cluster certificate in use, Unix seconds
  // (portico_cluster_certificate_expiry_seconds).
  int64_t certificate_not_after() const;
  void Stop();                    // cancels the stream, joins; idempotent, prompt (< 1 s)

  class Impl;

 private:
  explicit SyncClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::dp
