#pragma once
// What the DP sessions of one SyncServer share: the snapshot they send, the data-plane table,
// admission, the full-send slots and the live sessions, under one mutex (reactions are short,
// nothing blocks under it, a snapshot is never built under it; docs/sync.md). No gRPC: the hub
// sees a session (a gRPC reactor, dp_session.h) through SessionHandle.
//
// Lock order: `mu` before the builder's own mutex (sessions ask the builder for published
// versions while holding `mu`; the builder never calls out while holding its mutex).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/base/clock.h"
#include "control_plane/sync/admission.h"
#include "control_plane/sync/dp_status_table.h"
#include "control_plane/sync/full_send_slots.h"
#include "control_plane/sync/sync_server.h"

namespace portico {
struct BuiltSnapshot;
}  // namespace portico

namespace portico::cp {

class SnapshotBuilder;
class SyncTestHooks;
struct SyncMetrics;

// A live DP stream as the hub sees it. REQUIRES for every method: the hub's mutex held.
class SessionHandle {
 public:
  // Starts the next write if none is in flight (a control message, the next chunk, or the
  // latest snapshot when the DP is behind and nothing is un-ACKed).
  virtual void PumpLocked() = 0;
  // Periodic checks: Hello timeout, ACK timeout (stale), heartbeat silence, Goaway grace.
  virtual void TickLocked(std::chrono::steady_clock::time_point now) = 0;
  virtual bool WantsSendSlotLocked() const = 0;
  // The slot queue handed it a full-send slot (it may give it back at once).
  virtual void GrantSendSlotLocked() = 0;
  // Ends the stream with Goaway{DRAINING}: the CP is stopping.
  virtual void CloseDrainingLocked() = 0;
  // Ends the stream with Goaway{DUPLICATE_NODE}: a newer stream of the same node replaced it.
  virtual void CloseReplacedLocked() = 0;
  // Queues a HealthOverride message (sent before any further snapshot chunk) and sets *node_id.
  // False when the stream is not an accepted, open one, or too many messages are already queued
  // on it.
  virtual bool QueueHealthOverrideLocked(const TargetHealthOverride& command, std::string* node_id) = 0;

 protected:
  ~SessionHandle() = default;
};

struct SyncHub {
  using SteadyClock = std::chrono::steady_clock;

  // Everything passed in must outlive the hub; `test_hooks` may be null (production).
  SyncHub(const SyncServerOptions& options, const Clock& clock, SyncMetrics& metrics, const SnapshotBuilder& builder,
          SyncTestHooks* test_hooks);

  const SyncServerOptions& options;
  const Clock& clock;
  SyncMetrics& metrics;
  const SnapshotBuilder& builder;
  SyncTestHooks* const test_hooks;

  mutable std::mutex mu;
  std::condition_variable session_done;  // notified when a session ends

  // Guarded by mu.
  std::shared_ptr<const BuiltSnapshot> latest;  // what the sessions send (PublishLocked)
  DataPlaneTable nodes;
  AdmissionBucket admission;
  FullSendSlots send_slots;
  SyncServerStats stats;  // full_sends_* are read from send_slots (Stats())
  bool stopping = false;  // set once, by SyncServer::Stop
  uint16_t port = 0;
  std::function<void()> on_data_planes_changed;  // SyncServer::SetOnDataPlanesChanged

  // --- REQUIRES: mu held. ---
  // Sets `latest` and wakes every session: each that is idle and behind starts sending it.
  void PublishLocked(std::shared_ptr<const BuiltSnapshot> snapshot);
  uint64_t RegisterLocked(SessionHandle* session);  // returns its id
  void UnregisterLocked(uint64_t id);
  std::vector<SessionHandle*> LiveLocked() const;
  SessionHandle* FindLocked(uint64_t id) const;  // null when it ended
  // A full-send slot for session `id`, or false (it is queued, and granted a slot later).
  bool AcquireSendSlotLocked(uint64_t id);
  void ReleaseSendSlotLocked();
  void UpdateConnectedGaugeLocked();
  // A DP's stream started or ended, or a node was refused: calls on_data_planes_changed.
  void DataPlanesChangedLocked();
  // Queues `command` on every live stream; returns the node ids it was queued for, sorted.
  std::vector<std::string> BroadcastHealthOverrideLocked(const TargetHealthOverride& command);
  SyncServerStats StatsLocked() const;

 private:
  std::unordered_map<uint64_t, SessionHandle*> sessions_;  // live reactors (until OnDone)
  uint64_t next_session_id_ = 1;
};

}  // namespace portico::cp
