#include "control_plane/sync/sync_hub.h"

#include <algorithm>
#include <utility>

#include "common/metrics/metrics.h"
#include "control_plane/sync/sync_metrics.h"

namespace portico::cp {

SyncHub::SyncHub(const SyncServerOptions& options_in, const Clock& clock_in, SyncMetrics& metrics_in,
                 const SnapshotBuilder& builder_in, SyncTestHooks* test_hooks_in)
    : options(options_in),
      clock(clock_in),
      metrics(metrics_in),
      builder(builder_in),
      test_hooks(test_hooks_in),
      admission(options_in.admission_rate, options_in.admission_burst, SteadyClock::now()),
      send_slots(options_in.max_concurrent_full_sends) {}

void SyncHub::PublishLocked(std::shared_ptr<const BuiltSnapshot> snapshot) {
  latest = std::move(snapshot);
  for (SessionHandle* session : LiveLocked()) session->PumpLocked();
}

uint64_t SyncHub::RegisterLocked(SessionHandle* session) {
  const uint64_t id = next_session_id_++;
  sessions_[id] = session;
  ++stats.streams_live;
  return id;
}

void SyncHub::UnregisterLocked(uint64_t id) {
  sessions_.erase(id);
  --stats.streams_live;
}

std::vector<SessionHandle*> SyncHub::LiveLocked() const {
  std::vector<SessionHandle*> live;
  live.reserve(sessions_.size());
  for (const auto& [id, session] : sessions_) live.push_back(session);
  return live;
}

SessionHandle* SyncHub::FindLocked(uint64_t id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

bool SyncHub::AcquireSendSlotLocked(uint64_t id) { return send_slots.Acquire(id); }

void SyncHub::ReleaseSendSlotLocked() {
  send_slots.Release(
      [this](uint64_t id) {
        SessionHandle* session = FindLocked(id);
        return session != nullptr && session->WantsSendSlotLocked();
      },
      [this](uint64_t id) { FindLocked(id)->GrantSendSlotLocked(); });
}

void SyncHub::DataPlanesChangedLocked() {
  if (on_data_planes_changed) on_data_planes_changed();
}

void SyncHub::UpdateConnectedGaugeLocked() { metrics.connected->Set(static_cast<double>(nodes.connected())); }

std::vector<std::string> SyncHub::BroadcastHealthOverrideLocked(const TargetHealthOverride& command) {
  std::vector<std::string> sent;
  for (const auto& [id, session] : sessions_) {
    std::string node_id;
    if (session->QueueHealthOverrideLocked(command, &node_id)) sent.push_back(std::move(node_id));
  }
  std::sort(sent.begin(), sent.end());
  return sent;
}

SyncServerStats SyncHub::StatsLocked() const {
  SyncServerStats out = stats;
  out.full_sends_in_progress = send_slots.in_progress();
  out.full_sends_peak = send_slots.peak();
  return out;
}

}  // namespace portico::cp
