#pragma once
// One DP stream on the CP: a gRPC callback reactor (docs/sync.md "Messages and session state
// machine"). Private to control_plane/sync; it includes gRPC, so only the two files that need
// it (dp_session.cc, sync_server.cc) include it.
//
//   kAwaitHello --Hello ok--> kActive --(close requested)--> closing_ --Finish--> OnDone
//        \--refused / timeout / admission--> closing_
//
// Every member is guarded by the hub's mutex (the reactions lock it); gRPC runs the reactions on
// its callback threads, never inline in Start*(). At most one write is in flight: control
// messages first (HelloReply, UpToDate), then the chunks of the one snapshot being sent, so a
// frozen DP holds at most one chunk plus a reference to a shared snapshot. The reactor deletes
// itself in OnDone.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/tls/tls_files.h"
#include "control_plane/sync/sync_hub.h"
#include "portico/sync/v1/sync.grpc.pb.h"

namespace portico::cp {

class DpSession final : public grpc::ServerBidiReactor<sync::v1::DpMessage, sync::v1::CpMessage>,
                        public SessionHandle {
 public:
  using SteadyClock = std::chrono::steady_clock;

  // Registers with `hub` and starts reading, or refuses the stream (stopping, admission).
  DpSession(SyncHub& hub, grpc::CallbackServerContext* context);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // SessionHandle. REQUIRES: hub's mutex held.
  void PumpLocked() override;
  void TickLocked(SteadyClock::time_point now) override;
  bool WantsSendSlotLocked() const override { return waiting_for_slot_ && !closing_; }
  void GrantSendSlotLocked() override;
  void CloseDrainingLocked() override;
  void CloseReplacedLocked() override;
  bool QueueHealthOverrideLocked(const TargetHealthOverride& command, std::string* node_id) override;

 private:
  enum class Phase { kAwaitHello, kActive };

  // Ends the stream once: optional Goaway (delivered with the status), then Finish(status).
  void CloseLocked(const std::string& reason, sync::v1::Goaway::Code goaway, grpc::Status status,
                   uint32_t retry_after_s = 0);
  void HandleHelloLocked(const sync::v1::Hello& hello);
  // Ends a stream whose Hello is refused; with `record`, the node's record shows `status` with
  // the refusal (unless a stream of that node is live).
  void RefuseLocked(DataPlaneStatus status, const char* sync_status, const char* state, const std::string& reason,
                    sync::v1::Goaway::Code goaway, grpc::StatusCode code, bool record);
  // `health`: the entries of a FULL heartbeat health report, parsed before the lock was taken.
  void HandleMessageLocked(const sync::v1::DpMessage& msg,
                           std::shared_ptr<const std::vector<TargetHealthEntry>> health);
  void ApplyHealthReportLocked(const sync::v1::Heartbeat& heartbeat,
                               std::shared_ptr<const std::vector<TargetHealthEntry>> health);
  // The ACK/NACK of the snapshot in flight (false, logged, for a stale nonce): nothing is
  // un-ACKed any more, and the DP serves `serving`.
  bool AcceptReplyLocked(const char* what, uint64_t nonce, const sync::v1::VersionRef& serving);
  void StartWriteLocked(const sync::v1::CpMessage& msg, bool no_compression);
  void FinishLocked();
  bool OwnerLocked() const;
  DataPlaneTable::Record& RecordLocked() { return hub_.nodes[node_id_]; }
  void MarkServingLocked(const ConfigVersion& serving);
  void EndSendLocked();
  // The plugins `snapshot` configures that this DP cannot run, joined by ", " ("" if none).
  std::string MissingPluginsLocked(const BuiltSnapshot& snapshot) const;

  SyncHub& hub_;
  grpc::CallbackServerContext* const context_;
  uint64_t id_ = 0;
  const SteadyClock::time_point created_;
  const std::string peer_ip_;
  CertificateInfo cert_;

  Phase phase_ = Phase::kAwaitHello;
  std::string node_id_;  // set when the Hello is accepted
  SteadyClock::time_point active_since_;
  SteadyClock::time_point last_recv_;
  ConfigVersion serving_;
  std::vector<std::string> plugins_;  // what the DP can run (Hello.plugins), sorted
  bool delta_capable_ = false;         // Hello.capabilities has "delta.v1"
  // It NACKed a delta on this stream: the next snapshot it is sent is a full one.
  bool full_next_ = false;
  // The latest version it cannot run (plugin_set_incompatible), so the refusal is logged once.
  ConfigVersion incompatible_version_;

  sync::v1::DpMessage in_;
  sync::v1::CpMessage out_;
  bool write_in_flight_ = false;
  // HelloReply / UpToDate (at most two) and HealthOverrides (bounded by QueueHealthOverrideLocked).
  std::deque<sync::v1::CpMessage> control_;

  // The snapshot or delta being written (chunks) and the un-ACKed one. Only a full snapshot
  // holds a full-send slot.
  std::shared_ptr<const BuiltSnapshot> sending_;
  size_t next_chunk_ = 0;
  bool holds_slot_ = false;
  bool waiting_for_slot_ = false;
  bool unacked_ = false;
  uint64_t unacked_nonce_ = 0;
  ConfigVersion unacked_version_;
  bool unacked_delta_ = false;  // the un-ACKed payload is a delta
  SteadyClock::time_point ack_deadline_;
  bool stale_ = false;
  uint64_t next_nonce_ = 1;

  bool closing_ = false;
  bool finished_ = false;
  bool goaway_pending_ = false;  // waiting for the write in flight before sending it
  sync::v1::CpMessage final_msg_;
  grpc::Status final_status_;
  SteadyClock::time_point close_requested_;
};

}  // namespace portico::cp
