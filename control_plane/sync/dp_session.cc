#include "control_plane/sync/dp_session.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "common/metrics/metrics.h"
#include "common/snapshot/snapshot.h"
#include "control_plane/sync/snapshot_builder.h"
#include "control_plane/sync/sync_metrics.h"
#include "control_plane/sync/sync_test_hooks.h"

namespace portico::cp {
namespace {

using sync::v1::CpMessage;
using sync::v1::DpMessage;

constexpr char kLog[] = "cp-sync";
constexpr uint32_t kProtocolVersion = 1;
// The capability of a DP that applies ConfigDelta payloads (and of the CP that sends them).
constexpr char kDeltaCapability[] = "delta.v1";
constexpr size_t kMaxErrorText = 4096;
// How long a Goaway may wait behind a chunk write in flight before the stream is cancelled.
constexpr auto kGoawayGrace = std::chrono::milliseconds(1000);
// Target-health reports: entries kept per DP, and the longest id/name/target kept (longer ones,
// and unknown health words, are dropped: a report is shown, never trusted to be well formed).
constexpr size_t kMaxHealthEntries = 10000;
constexpr size_t kMaxHealthField = 512;
// Control messages (mostly health overrides) waiting on one stream; more are not queued (a DP
// that reads nothing must not grow the CP's memory).
constexpr size_t kMaxQueuedControl = 1024;

bool KnownHealth(const std::string& health) {
  return health == kHealthHealthy || health == kHealthUnhealthy || health == kHealthDnsError ||
         health == kHealthChecksOff;
}

// The entries of a FULL report that can be shown; *truncated when some were left out.
std::shared_ptr<const std::vector<TargetHealthEntry>> ParseHealthReport(const sync::v1::Heartbeat& heartbeat,
                                                                        bool* truncated) {
  auto entries = std::make_shared<std::vector<TargetHealthEntry>>();
  *truncated = heartbeat.target_health_truncated();
  const auto& in = heartbeat.target_health();
  entries->reserve(std::min<size_t>(static_cast<size_t>(in.size()), kMaxHealthEntries));
  for (const sync::v1::TargetHealth& t : in) {
    if (entries->size() == kMaxHealthEntries) {
      *truncated = true;
      break;
    }
    if (!KnownHealth(t.health()) || t.target().empty() || t.target().size() > kMaxHealthField ||
        t.upstream_id().size() > kMaxHealthField || t.upstream_name().size() > kMaxHealthField ||
        (t.upstream_id().empty() && t.upstream_name().empty())) {
      continue;
    }
    entries->push_back({t.upstream_id(), t.upstream_name(), t.target(), t.health()});
  }
  return entries;
}

std::string Truncate(std::string text) {
  if (text.size() > kMaxErrorText) text.resize(kMaxErrorText);
  return text;
}

std::chrono::milliseconds ToChrono(absl::Duration d) { return std::chrono::milliseconds(absl::ToInt64Milliseconds(d)); }

double SecondsSince(DpSession::SteadyClock::time_point t, DpSession::SteadyClock::time_point now) {
  return std::chrono::duration<double>(now - t).count();
}

struct BuildVersion {
  int major = 0, minor = 0, patch = 0;
};

// "MAJOR.MINOR.PATCH" (a suffix after the patch number, e.g. "-dev", is ignored).
bool ParseBuildVersion(absl::string_view text, BuildVersion* out) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  if (parts.size() < 3) return false;
  absl::string_view patch = parts[2];
  size_t digits = 0;
  while (digits < patch.size() && patch[digits] >= '0' && patch[digits] <= '9') ++digits;
  return absl::SimpleAtoi(parts[0], &out->major) && absl::SimpleAtoi(parts[1], &out->minor) &&
         absl::SimpleAtoi(patch.substr(0, digits), &out->patch);
}

// "ipv4:127.0.0.1:5555" / "ipv6:[::1]:5555" -> "127.0.0.1" / "::1".
std::string PeerIp(const std::string& peer) {
  absl::string_view p = peer;
  size_t colon = p.find(':');
  if (colon == absl::string_view::npos) return peer;
  p = p.substr(colon + 1);
  size_t last = p.rfind(':');
  if (last != absl::string_view::npos) p = p.substr(0, last);
  if (p.size() >= 2 && p.front() == '[' && p.back() == ']') p = p.substr(1, p.size() - 2);
  return std::string(p);
}

// Why a DP that says `hello` cannot be served, "" when it can (KONG-REFERENCE §1.9): protocol 1,
// the CP's major version, a minor version not newer than the CP's.
std::string IncompatibilityOf(const sync::v1::Hello& hello) {
  BuildVersion cp_build, dp_build;
  ParseBuildVersion(PORTICO_VERSION, &cp_build);
  if (hello.protocol_version() != kProtocolVersion) {
    return absl::StrCat("protocol version ", hello.protocol_version(), " is not supported (CP speaks ",
                        kProtocolVersion, ")");
  }
  if (!ParseBuildVersion(hello.dp_build(), &dp_build)) {
    return absl::StrCat("data plane version '", hello.dp_build(), "' is not MAJOR.MINOR.PATCH");
  }
  if (dp_build.major != cp_build.major) {
    return absl::StrCat("data plane version ", hello.dp_build(), " has another major version than the control plane ",
                        PORTICO_VERSION);
  }
  if (dp_build.minor > cp_build.minor) {
    return absl::StrCat("data plane version ", hello.dp_build(), " is newer than the control plane ", PORTICO_VERSION);
  }
  return "";
}

const char* NackCodeName(int code) {
  return sync::v1::Nack::Code_IsValid(code) ? sync::v1::Nack::Code_Name(static_cast<sync::v1::Nack::Code>(code)).c_str()
                                            : "UNKNOWN";
}

}  // namespace

DpSession::DpSession(SyncHub& hub, grpc::CallbackServerContext* context)
    : hub_(hub),
      context_(context),
      created_(SteadyClock::now()),
      peer_ip_(PeerIp(context->peer())) {
  // The verified client certificate names the node (checked against Hello.node_id later).
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  std::vector<grpc::string_ref> pems =
      auth ? auth->FindPropertyValues("x509_pem_cert") : std::vector<grpc::string_ref>{};
  if (!pems.empty()) {
    absl::StatusOr<CertificateInfo> info =
        InspectCertificate(absl::string_view(pems[0].data(), pems[0].size()));
    if (info.ok()) cert_ = *info;
  }
  std::lock_guard<std::mutex> lock(hub_.mu);
  id_ = hub_.RegisterLocked(this);
  last_recv_ = created_;
  if (hub_.stopping) {
    CloseDrainingLocked();
    return;
  }
  uint32_t retry_after_s = 0;
  if (!hub_.admission.TryAdmit(created_, &retry_after_s)) {
    ++hub_.stats.admission_rejects;
    hub_.metrics.admission_rejects->Inc();
    PORTICO_LOG(kDebug, kLog, "admission limit: refusing a stream from ", peer_ip_, " (",
                cert_.node_id, "), retry in ", retry_after_s, " s");
    const std::string reason = "too many new streams; retry later";
    CloseLocked(reason, sync::v1::Goaway::OVERLOADED,
                grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, reason), retry_after_s);
    return;
  }
  StartRead(&in_);
}

void DpSession::OnReadDone(bool ok) {
  // A health report is parsed before the hub's lock is taken (it may hold 10,000 entries). `in_`
  // is not written until the next StartRead, below.
  std::shared_ptr<const std::vector<TargetHealthEntry>> health;
  bool health_truncated = false;
  if (ok && in_.has_heartbeat() && in_.heartbeat().health_report() == sync::v1::Heartbeat::FULL) {
    health = ParseHealthReport(in_.heartbeat(), &health_truncated);
    if (health_truncated) in_.mutable_heartbeat()->set_target_health_truncated(true);
  }
  std::lock_guard<std::mutex> lock(hub_.mu);
  if (!ok) {
    CloseLocked("stream closed by the data plane", sync::v1::Goaway::UNKNOWN, grpc::Status::OK);
    return;
  }
  if (closing_) return;
  last_recv_ = SteadyClock::now();
  if (phase_ == Phase::kAwaitHello) {
    if (!in_.has_hello()) {
      CloseLocked("the first message must be Hello", sync::v1::Goaway::UNKNOWN,
                  grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be Hello"));
      return;
    }
    HandleHelloLocked(in_.hello());
  } else {
    HandleMessageLocked(in_, std::move(health));
  }
  if (!closing_) StartRead(&in_);
}

void DpSession::OnWriteDone(bool ok) {
  std::lock_guard<std::mutex> lock(hub_.mu);
  write_in_flight_ = false;
  if (hub_.test_hooks != nullptr && ok && sending_ && next_chunk_ > 0) {
    hub_.test_hooks->OnChunkWritten(next_chunk_, sending_->chunk_count(), sending_->version.version);
  }
  if (sending_ && next_chunk_ == sending_->chunk_count()) EndSendLocked();
  if (closing_) {
    if (finished_) return;
    if (goaway_pending_ && ok) {
      goaway_pending_ = false;
      finished_ = true;
      StartWriteAndFinish(&final_msg_, grpc::WriteOptions(), final_status_);
    } else {
      FinishLocked();
    }
    return;
  }
  if (!ok) {
    CloseLocked("write failed", sync::v1::Goaway::UNKNOWN,
                grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
    return;
  }
  PumpLocked();
}

void DpSession::OnCancel() {
  std::lock_guard<std::mutex> lock(hub_.mu);
  CloseLocked("stream cancelled", sync::v1::Goaway::UNKNOWN,
              grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

void DpSession::OnDone() {
  {
    std::lock_guard<std::mutex> lock(hub_.mu);
    if (holds_slot_) {
      holds_slot_ = false;
      hub_.ReleaseSendSlotLocked();
    }
    hub_.UnregisterLocked(id_);
  }
  hub_.session_done.notify_all();
  delete this;
}

bool DpSession::OwnerLocked() const {
  if (node_id_.empty()) return false;
  const DataPlaneTable::Record* record = hub_.nodes.Find(node_id_);
  return record != nullptr && record->active_session == id_;
}

void DpSession::StartWriteLocked(const CpMessage& msg, bool no_compression) {
  out_ = msg;
  write_in_flight_ = true;
  grpc::WriteOptions options;
  if (no_compression) options.set_no_compression();  // the payload is gzipped already
  StartWrite(&out_, options);
}

void DpSession::FinishLocked() {
  if (finished_) return;
  finished_ = true;
  if (write_in_flight_) context_->TryCancel();  // a frozen peer must not hold the stream open
  Finish(final_status_);
}

void DpSession::CloseLocked(const std::string& reason, sync::v1::Goaway::Code goaway,
                            grpc::Status status, uint32_t retry_after_s) {
  if (closing_) return;
  closing_ = true;
  close_requested_ = SteadyClock::now();
  final_status_ = std::move(status);
  waiting_for_slot_ = false;
  if (OwnerLocked()) {
    DataPlaneTable::Record& record = RecordLocked();
    record.active_session = 0;
    record.status.state = "disconnected";
    record.status.connected_since = 0;
    record.health_reported = false;  // shown for connected DPs only
    record.health.reset();
    if (record.status.last_error.empty() || record.nacked.empty()) record.status.last_error = reason;
    hub_.UpdateConnectedGaugeLocked();
    hub_.DataPlanesChangedLocked();
    PORTICO_LOG(kInfo, kLog, "dp ", node_id_, " disconnected: ", reason);
  }
  if (goaway == sync::v1::Goaway::UNKNOWN) {
    FinishLocked();
    return;
  }
  sync::v1::Goaway* g = final_msg_.mutable_goaway();
  g->set_code(goaway);
  g->set_reason(reason);
  g->set_retry_after_s(retry_after_s);
  if (write_in_flight_) {
    goaway_pending_ = true;  // OnWriteDone sends it; TickLocked cancels after kGoawayGrace
    return;
  }
  finished_ = true;
  StartWriteAndFinish(&final_msg_, grpc::WriteOptions(), final_status_);
}

void DpSession::HandleHelloLocked(const sync::v1::Hello& hello) {
  DataPlaneStatus status;
  status.id = cert_.node_id;
  status.hostname = hello.hostname();
  status.ip = peer_ip_;
  status.version = hello.dp_build();
  status.labels = {hello.labels().begin(), hello.labels().end()};
  status.cert_expiry = cert_.not_after;
  status.last_seen = hub_.clock.NowSeconds();

  if (cert_.node_id.empty() || hello.node_id() != cert_.node_id) {
    std::string reason =
        cert_.node_id.empty()
            ? std::string("client certificate carries no data plane identity (URI SAN spiffe://portico/dp/<node_id>)")
            : absl::StrCat("node_id '", hello.node_id(), "' does not match the certificate identity '",
                           cert_.node_id, "'");
    PORTICO_LOG(kError, kLog, "refusing data plane from ", peer_ip_, ": ", reason);
    // Without an identity there is no record to show it under.
    RefuseLocked(std::move(status), "unknown", "refused", reason, sync::v1::Goaway::UNAUTHORIZED,
                 grpc::StatusCode::PERMISSION_DENIED, /*record=*/!cert_.node_id.empty());
    return;
  }
  if (std::string incompatible = IncompatibilityOf(hello); !incompatible.empty()) {
    PORTICO_LOG(kError, kLog, "refusing data plane ", cert_.node_id, ": ", incompatible);
    RefuseLocked(std::move(status), "kong_version_incompatible", "incompatible", incompatible,
                 sync::v1::Goaway::INCOMPATIBLE, grpc::StatusCode::FAILED_PRECONDITION, /*record=*/true);
    return;
  }

  // Register; a newer stream of the same node replaces the older one.
  node_id_ = cert_.node_id;
  phase_ = Phase::kActive;
  active_since_ = SteadyClock::now();
  serving_ = FromVersionRef(hello.serving());
  plugins_.assign(hello.plugins().begin(), hello.plugins().end());
  delta_capable_ = std::find(hello.capabilities().begin(), hello.capabilities().end(), kDeltaCapability) !=
                   hello.capabilities().end();
  std::sort(plugins_.begin(), plugins_.end());
  DataPlaneTable::Record& record = RecordLocked();
  if (record.active_session != 0) {
    SessionHandle* old = hub_.FindLocked(record.active_session);
    PORTICO_LOG(kWarn, kLog, "dp ", node_id_, " opened a second stream; replacing the older one");
    record.active_session = 0;  // so the old one does not mark the node disconnected
    if (old != nullptr) old->CloseReplacedLocked();
  }
  record.active_session = id_;
  record.serving = serving_;
  record.health_reported = false;  // until this stream's first heartbeat with a report
  record.health.reset();
  std::shared_ptr<const BuiltSnapshot> latest = hub_.latest;
  const bool up_to_date = latest && latest->version == serving_;
  status.sync_status = "normal";
  status.state = up_to_date ? "connected_synced" : "syncing";
  if (latest && !up_to_date && record.nacked == latest->version) status.state = "nacked";
  if (status.state == "nacked") status.last_error = record.status.last_error;
  status.nack_count = record.status.nack_count;
  status.connected_since = hub_.clock.NowSeconds();
  // Only an admitted DP's claim is shown (a refused one is shown serving nothing).
  status.config_hash = ToHex(hello.serving().hash());
  status.config_version = hello.serving().version();
  record.status = status;
  hub_.UpdateConnectedGaugeLocked();
  hub_.DataPlanesChangedLocked();
  PORTICO_LOG(kInfo, kLog, "dp ", node_id_, " connected from ", peer_ip_, " (", hello.hostname(),
              ", build ", hello.dp_build(), ", serving version ", serving_.version, ")");

  CpMessage reply;
  sync::v1::HelloReply* hr = reply.mutable_hello_reply();
  hr->set_cp_id(hub_.options.cp_id);
  hr->set_protocol_version(kProtocolVersion);
  hr->add_capabilities("enc.gzip");
  hr->add_capabilities(kDeltaCapability);
  hr->set_heartbeat_interval_s(static_cast<uint32_t>(
      std::max<int64_t>(1, absl::ToInt64Seconds(hub_.options.heartbeat_interval))));
  if (latest) ToVersionRef(latest->version, hr->mutable_latest());
  control_.push_back(std::move(reply));
  if (up_to_date) {
    CpMessage msg;
    ToVersionRef(latest->version, msg.mutable_up_to_date()->mutable_latest());
    control_.push_back(std::move(msg));
    hub_.metrics.push_up_to_date->Inc();
  }
  PumpLocked();
}

void DpSession::MarkServingLocked(const ConfigVersion& serving) {
  serving_ = serving;
  if (!OwnerLocked()) return;
  DataPlaneTable::Record& record = RecordLocked();
  record.serving = serving;
  record.status.config_hash = ToHex(serving.hash);
  record.status.config_version = serving.version;
}

bool DpSession::AcceptReplyLocked(const char* what, uint64_t nonce, const sync::v1::VersionRef& serving) {
  if (!unacked_ || nonce != unacked_nonce_) {
    PORTICO_LOG(kWarn, kLog, "dp ", node_id_, ": ignoring ", what, " with stale nonce ", nonce);
    return false;
  }
  unacked_ = false;
  stale_ = false;
  MarkServingLocked(FromVersionRef(serving));
  return true;
}

void DpSession::ApplyHealthReportLocked(const sync::v1::Heartbeat& heartbeat,
                                        std::shared_ptr<const std::vector<TargetHealthEntry>> health) {
  DataPlaneTable::Record& record = RecordLocked();
  switch (heartbeat.health_report()) {
    case sync::v1::Heartbeat::FULL:
      record.health_reported = true;
      record.health_truncated = heartbeat.target_health_truncated();
      record.health = health ? std::move(health) : std::make_shared<const std::vector<TargetHealthEntry>>();
      record.health_reported_at = hub_.clock.NowSeconds();
      break;
    case sync::v1::Heartbeat::UNCHANGED:
      if (record.health_reported) record.health_reported_at = hub_.clock.NowSeconds();
      break;
    default:  // NONE (an older DP, or one without a health registry)
      record.health_reported = false;
      record.health.reset();
      break;
  }
}

bool DpSession::QueueHealthOverrideLocked(const TargetHealthOverride& command, std::string* node_id) {
  if (closing_ || phase_ != Phase::kActive || !OwnerLocked()) return false;
  if (control_.size() >= kMaxQueuedControl) {
    PORTICO_LOG(kWarn, kLog, "dp ", node_id_, ": not sending health override ", command.id, ": ",
                control_.size(), " messages already wait on its stream");
    return false;
  }
  CpMessage msg;
  sync::v1::HealthOverride* o = msg.mutable_health_override();
  o->set_id(command.id);
  o->set_upstream_id(command.upstream_id);
  o->set_upstream_name(command.upstream_name);
  o->set_target(command.target);
  o->set_healthy(command.healthy);
  control_.push_back(std::move(msg));
  *node_id = node_id_;
  PORTICO_LOG(kDebug, kLog, "dp ", node_id_, ": queued health override ", command.id);
  PumpLocked();
  return true;
}

void DpSession::HandleMessageLocked(const DpMessage& msg,
                                    std::shared_ptr<const std::vector<TargetHealthEntry>> health) {
  const bool owner = OwnerLocked();
  if (owner) RecordLocked().status.last_seen = hub_.clock.NowSeconds();
  switch (msg.msg_case()) {
    case DpMessage::kAck: {
      const sync::v1::Ack& ack = msg.ack();
      if (!AcceptReplyLocked("ACK", ack.nonce(), ack.serving())) break;
      const ConfigVersion serving = serving_;
      hub_.metrics.push_ack->Inc();
      if (std::optional<SnapshotBuilder::Published> pv = hub_.builder.FindPublished(serving);
          pv && pv->first_change && active_since_ <= pv->published_at) {
        hub_.metrics.convergence->Observe(SecondsSince(*pv->first_change, SteadyClock::now()));
      }
      if (!owner) break;
      DataPlaneTable::Record& record = RecordLocked();
      record.status.last_error.clear();
      record.status.state =
          hub_.latest && hub_.latest->version == serving ? "connected_synced" : "syncing";
      PORTICO_LOG(kDebug, kLog, "dp ", node_id_, " applied version ", serving.version, " in ",
                  ack.apply_ms(), " ms");
      break;
    }
    case DpMessage::kNack: {
      const sync::v1::Nack& nack = msg.nack();
      if (!AcceptReplyLocked("NACK", nack.nonce(), nack.serving())) break;
      hub_.metrics.push_nack->Inc();
      // A delta the DP could not reconstruct (decode, hash, base) is not parked: the full
      // snapshot goes out next (its NACK, if any, parks the version as usual). A delta that
      // reconstructed the version but did not apply (VALIDATION, BUILD) is parked like a full
      // snapshot: the full one has the same bytes (the hash says so) and would fail the same way.
      if (unacked_delta_ && nack.code() != sync::v1::Nack::VALIDATION && nack.code() != sync::v1::Nack::BUILD) {
        full_next_ = true;
        const std::string error = Truncate(absl::StrCat("delta rejected (", NackCodeName(nack.code()), ": ",
                                                        nack.message(), "); sending the full snapshot"));
        PORTICO_LOG(kWarn, kLog, "dp ", node_id_, " rejected the delta from version ", serving_.version,
                    " to version ", FromVersionRef(nack.rejected()).version, ": ", error);
        if (!owner) break;
        DataPlaneTable::Record& record = RecordLocked();
        ++record.status.nack_count;
        record.status.last_error = error;
        record.status.state = "syncing";
        break;
      }
      if (!owner) break;
      DataPlaneTable::Record& record = RecordLocked();
      record.nacked = FromVersionRef(nack.rejected());
      ++record.status.nack_count;
      record.status.state = "nacked";
      record.status.last_error =
          Truncate(absl::StrCat(NackCodeName(nack.code()), ": ", nack.message()));
      PORTICO_LOG(kError, kLog, "dp ", node_id_, " rejected version ", record.nacked.version, ": ",
                  record.status.last_error);
      break;
    }
    case DpMessage::kHeartbeat:
      if (owner) ApplyHealthReportLocked(msg.heartbeat(), std::move(health));
      if (unacked_) break;  // the ACK/NACK decides what it serves
      MarkServingLocked(FromVersionRef(msg.heartbeat().serving()));
      break;
    default:
      PORTICO_LOG(kWarn, kLog, "dp ", node_id_, ": unexpected message ", msg.msg_case());
      break;
  }
  PumpLocked();
}

void DpSession::PumpLocked() {
  if (closing_ || write_in_flight_ || phase_ != Phase::kActive) return;
  if (!control_.empty()) {
    StartWriteLocked(control_.front(), false);
    control_.pop_front();
    return;
  }
  if (sending_) {
    CpMessage msg;
    FillSnapshotChunk(*sending_, next_chunk_, unacked_nonce_, msg.mutable_chunk());
    ++next_chunk_;
    StartWriteLocked(msg, true);
    return;
  }
  // Push the latest snapshot: at most one un-ACKed, never a parked (NACKed) version.
  const std::shared_ptr<const BuiltSnapshot>& target = hub_.latest;
  if (!target || unacked_ || serving_ == target->version) return;
  DataPlaneTable::Record& record = RecordLocked();
  if (record.nacked == target->version) return;
  if (std::string missing = MissingPluginsLocked(*target); !missing.empty()) {
    // Kong's plugin_set_incompatible: the DP keeps what it serves until the config stops
    // needing what it lacks (or it is upgraded).
    if (!(incompatible_version_ == target->version)) {
      incompatible_version_ = target->version;
      PORTICO_LOG(kError, kLog, "not sending version ", target->version.version, " to dp ", node_id_,
                  ": it cannot run plugin(s) ", missing, " (build ", record.status.version,
                  "); it keeps serving version ", serving_.version);
    }
    if (OwnerLocked()) {
      record.status.sync_status = "plugin_set_incompatible";
      record.status.state = "incompatible";
      record.status.last_error = absl::StrCat("data plane cannot run plugin(s) configured: ", missing,
                                              "; upgrade it or remove the plugin(s)");
    }
    return;
  }
  if (OwnerLocked() && record.status.sync_status == "plugin_set_incompatible") {
    record.status.sync_status = "normal";
    record.status.last_error.clear();
  }
  // A DP that applies deltas and serves a version the change log covers gets the delta (shared,
  // at most half a full snapshot: no full-send slot); any other gets the full snapshot.
  std::shared_ptr<const BuiltSnapshot> payload = target;
  if (delta_capable_ && !full_next_) {
    if (const std::shared_ptr<const BuiltSnapshot>* delta = target->DeltaFrom(serving_)) payload = *delta;
  }
  // A delta of one chunk takes no full-send slot; a larger one counts as a full send.
  if (payload->is_delta() && payload->chunk_count() <= 1) {
    waiting_for_slot_ = false;  // leaves the slot queue (its entry there is skipped)
    if (holds_slot_) {
      holds_slot_ = false;
      hub_.ReleaseSendSlotLocked();
    }
  } else {
    // Published before its payload was built (for the deltas): the second publication brings it.
    if (!payload->is_delta() && !payload->payload_ready()) return;
    if (waiting_for_slot_) return;
    if (!holds_slot_ && !hub_.AcquireSendSlotLocked(id_)) {
      waiting_for_slot_ = true;
      return;
    }
    holds_slot_ = true;
    if (!payload->is_delta()) full_next_ = false;
  }
  sending_ = payload;
  next_chunk_ = 0;
  unacked_ = true;
  unacked_delta_ = payload->is_delta();
  stale_ = false;
  unacked_nonce_ = next_nonce_++;
  unacked_version_ = target->version;
  const double mib = static_cast<double>(payload->compressed.size()) / (1 << 20);
  ack_deadline_ = SteadyClock::now() + ToChrono(hub_.options.ack_timeout) +
                  std::chrono::milliseconds(static_cast<int64_t>(
                      mib * absl::ToDoubleMilliseconds(hub_.options.ack_timeout_per_mib)));
  if (OwnerLocked() && record.status.state != "nacked") record.status.state = "syncing";
  hub_.metrics.push_sent->Inc();
  if (unacked_delta_) {
    hub_.metrics.deltas_sent->Inc();
    ++hub_.stats.delta_sends;
  }
  PORTICO_LOG(kDebug, kLog, "sending version ", target->version.version, " to dp ", node_id_, " (nonce ",
              unacked_nonce_, unacked_delta_ ? absl::StrCat(", delta from version ", serving_.version, ", ",
                                                            payload->change_count, " change(s)")
                                             : std::string(", full"),
              ")");
  PumpLocked();
}

std::string DpSession::MissingPluginsLocked(const BuiltSnapshot& snapshot) const {
  std::string missing;
  for (const std::string& name : snapshot.plugin_names) {
    if (!std::binary_search(plugins_.begin(), plugins_.end(), name)) {
      absl::StrAppend(&missing, missing.empty() ? "" : ", ", name);
    }
  }
  return missing;
}

void DpSession::EndSendLocked() {
  sending_.reset();
  next_chunk_ = 0;
  if (holds_slot_) {
    holds_slot_ = false;
    hub_.ReleaseSendSlotLocked();
  }
}

void DpSession::GrantSendSlotLocked() {
  waiting_for_slot_ = false;
  holds_slot_ = true;
  PumpLocked();
  if (!sending_ && holds_slot_) {  // nothing to send any more: give the slot back
    holds_slot_ = false;
    hub_.ReleaseSendSlotLocked();
  }
}

void DpSession::TickLocked(SteadyClock::time_point now) {
  if (closing_) {
    if (!finished_ && goaway_pending_ && now - close_requested_ > kGoawayGrace) {
      goaway_pending_ = false;
      FinishLocked();
    }
    return;
  }
  if (phase_ == Phase::kAwaitHello) {
    if (now - created_ > ToChrono(hub_.options.hello_timeout)) {
      ++hub_.stats.hello_timeouts;
      PORTICO_LOG(kWarn, kLog, "no Hello from ", peer_ip_, " within ",
                  absl::FormatDuration(hub_.options.hello_timeout), "; closing the stream");
      CloseLocked("no Hello within the hello timeout", sync::v1::Goaway::HELLO_TIMEOUT,
                  grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no Hello"));
    }
    return;
  }
  if (now - last_recv_ > 3 * ToChrono(hub_.options.heartbeat_interval)) {
    CloseLocked("no heartbeat for 3 intervals", sync::v1::Goaway::UNKNOWN,
                grpc::Status(grpc::StatusCode::UNAVAILABLE, "no heartbeat"));
    return;
  }
  if (unacked_ && !stale_ && now > ack_deadline_) {
    stale_ = true;
    ++hub_.stats.stale_transitions;
    PORTICO_LOG(kWarn, kLog, "dp ", node_id_, " has not acknowledged version ",
                unacked_version_.version, " (nonce ", unacked_nonce_, "): stale");
    if (OwnerLocked()) RecordLocked().status.state = "stale";
  }
}

void DpSession::RefuseLocked(DataPlaneStatus status, const char* sync_status, const char* state,
                             const std::string& reason, sync::v1::Goaway::Code goaway, grpc::StatusCode code,
                             bool record) {
  if (record) {
    status.sync_status = sync_status;
    status.state = state;
    status.last_error = reason;
    hub_.nodes.RecordRejected(cert_.node_id, status);
    hub_.DataPlanesChangedLocked();
  }
  CloseLocked(reason, goaway, grpc::Status(code, reason));
}

void DpSession::CloseDrainingLocked() {
  CloseLocked("control plane stopping", sync::v1::Goaway::DRAINING,
              grpc::Status(grpc::StatusCode::UNAVAILABLE, "control plane is stopping"));
}

void DpSession::CloseReplacedLocked() {
  CloseLocked("replaced by a newer stream of the same node", sync::v1::Goaway::DUPLICATE_NODE, grpc::Status::OK);
}

}  // namespace portico::cp
