#include "control_plane/sync/sync_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <csignal>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "common/metrics/metrics.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"
#include "common/tls/tls_files.h"
#include "control_plane/sync/admission.h"
#include "portico/sync/v1/sync.grpc.pb.h"

namespace portico {
namespace {

using SteadyClock = std::chrono::steady_clock;
using sync::v1::CpMessage;
using sync::v1::DpMessage;

constexpr char kLog[] = "cp-sync";
constexpr uint32_t kProtocolVersion = 1;
constexpr int kMaxMessageBytes = 4 << 20;
constexpr size_t kMaxErrorText = 4096;
// How long a Goaway may wait behind a chunk write in flight before the stream is cancelled.
constexpr auto kGoawayGrace = std::chrono::milliseconds(1000);
// Timer thread period: resolution of the Hello, ACK and heartbeat timeouts.
constexpr auto kTickPeriod = std::chrono::milliseconds(100);
// Published versions remembered for lag_seconds and the convergence histogram.
constexpr size_t kHistoryDepth = 256;
// Corrupt rows kept for GET /status (all are counted).
constexpr size_t kMaxCorruptRowsKept = 100;
// Why the store's current version could not be published (ConfigBuildStatus::reason).
constexpr const char* kBuildFailureReasons[] = {"corrupt_rows", "invalid_config", "build_error", "read_error"};


std::string Truncate(std::string text) {
  if (text.size() > kMaxErrorText) text.resize(kMaxErrorText);
  return text;
}

std::chrono::milliseconds ToChrono(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

double SecondsSince(SteadyClock::time_point t, SteadyClock::time_point now) {
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

const char* NackCodeName(int code) {
  return sync::v1::Nack::Code_IsValid(code)
             ? sync::v1::Nack::Code_Name(static_cast<sync::v1::Nack::Code>(code)).c_str()
             : "UNKNOWN";
}


class DpSession;

// One published version, remembered for lag_seconds and the convergence histogram.
struct PublishedVersion {
  ConfigVersion version;
  int64_t first_change_wall = 0;          // Clock seconds of the oldest commit it carries
  std::optional<SteadyClock::time_point> first_change;  // unset for builds with no change (start)
  SteadyClock::time_point published_at;
};

// The metric objects (owned by a Registry; see docs/admin-api.md "/metrics").
struct SyncMetrics {
  explicit SyncMetrics(metrics::Registry& r)
      : builds(r.AddCounter("portico_cp_snapshot_builds_total", "Snapshots built (validated, serialized, hashed, gzipped)")),
        build_seconds(r.AddHistogram("portico_cp_snapshot_build_seconds",
                                     "Snapshot build time (export, validate, serialize, hash, gzip)",
                                     {.005, .01, .025, .05, .1, .25, .5, 1, 2, 5})),
        bytes_raw(r.AddGauge("portico_cp_snapshot_bytes", "Size of the latest snapshot",
                             {{"encoding", "raw"}})),
        bytes_gzip(r.AddGauge("portico_cp_snapshot_bytes", "Size of the latest snapshot",
                              {{"encoding", "gzip"}})),
        push_ack(r.AddCounter("portico_cp_sync_pushes_total", "Snapshot pushes by result",
                              {{"result", "ack"}})),
        push_nack(r.AddCounter("portico_cp_sync_pushes_total", "Snapshot pushes by result",
                               {{"result", "nack"}})),
        push_up_to_date(r.AddCounter("portico_cp_sync_pushes_total", "Snapshot pushes by result",
                                     {{"result", "up_to_date"}})),
        push_sent(r.AddCounter("portico_cp_sync_pushes_total", "Snapshot pushes by result",
                               {{"result", "sent"}})),
        convergence(r.AddHistogram("portico_cp_sync_convergence_seconds",
                                   "Admin commit to DP ACK, per DP connected when the version was published",
                                   {.05, .1, .25, .5, 1, 2, 5, 10, 30})),
        connected(r.AddGauge("portico_cp_connected_data_planes", "Data planes with a live stream")),
        config_version(r.AddGauge("portico_cp_config_version", "Version of the latest published snapshot")),
        admission_rejects(r.AddCounter("portico_cp_admission_rejects_total",
                                       "New streams refused by the admission token bucket")),
        store_version(r.AddGauge("portico_cp_store_config_version",
                                 "Config version of the store, as last read by the snapshot builder")),
        corrupt_rows(r.AddGauge("portico_cp_store_corrupt_rows",
                                "Store rows whose entity cannot be parsed, as of the last read (DELETE or PUT them)")) {
    for (const char* reason : kBuildFailureReasons) {
      build_failing.push_back(r.AddGauge(
          "portico_cp_config_build_failing",
          "1 when the store's current config version cannot be published, by reason (DPs keep the last one)",
          {{"reason", reason}}));
    }
  }
  metrics::Counter* builds;
  metrics::Histogram* build_seconds;
  metrics::Gauge* bytes_raw;
  metrics::Gauge* bytes_gzip;
  metrics::Counter* push_ack;
  metrics::Counter* push_nack;
  metrics::Counter* push_up_to_date;
  metrics::Counter* push_sent;
  metrics::Histogram* convergence;
  metrics::Gauge* connected;
  metrics::Gauge* config_version;
  metrics::Counter* admission_rejects;
  metrics::Gauge* store_version;
  metrics::Gauge* corrupt_rows;
  std::vector<metrics::Gauge*> build_failing;  // one per kBuildFailureReasons entry
};

}  // namespace

class SyncServer::Impl final : public sync::v1::ConfigSync::CallbackService {
 public:
  Impl(SyncServerOptions options, std::function<absl::StatusOr<StoredConfig>()> read_config,
       const Clock& clock)
      : options_(std::move(options)),
        clock_(clock),
        admission_(options_.admission_rate, options_.admission_burst, SteadyClock::now()),
        read_config_(std::move(read_config)),
        own_registry_(options_.metrics ? nullptr : std::make_unique<metrics::Registry>()),
        registry_(options_.metrics ? options_.metrics : own_registry_.get()),
        metrics_(*registry_) {}

  absl::Status Init();
  void Stop();
  void NotifyConfigChanged();

  grpc::ServerBidiReactor<DpMessage, CpMessage>* Stream(grpc::CallbackServerContext* context) override;

  // Guarded by mu_.
  struct NodeRecord {
    DataPlaneStatus status;
    ConfigVersion serving;        // what it serves (last Hello/ACK/NACK/heartbeat)
    ConfigVersion nacked;         // parked: not resent until latest differs
    uint64_t active_session = 0;  // 0 = no live stream
  };

  // --- Called by DpSession with mu_ held. ---
  // Records a refused or incompatible DP unless it has a live stream.
  void RecordRejectedLocked(const std::string& node_id, const DataPlaneStatus& status);
  // Takes a full-send slot for `session`, or queues it (then returns false).
  bool AcquireSendSlotLocked(uint64_t session_id);
  // Returns a slot and hands it to the first queued session that still wants one.
  void ReleaseSendSlotLocked();
  const PublishedVersion* FindPublishedLocked(const ConfigVersion& v) const;
  void UpdateConnectedGaugeLocked();
  void UnregisterLocked(uint64_t session_id);

  const SyncServerOptions options_;
  const Clock& clock_;
  SyncMetrics& metrics() { return metrics_; }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const BuiltSnapshot> latest_;
  std::deque<PublishedVersion> history_;  // oldest first, at most kHistoryDepth
  uint64_t published_ = 0;
  std::map<std::string, NodeRecord> nodes_;
  std::unordered_map<uint64_t, DpSession*> sessions_;  // live reactors (until OnDone)
  uint64_t next_session_id_ = 1;
  bool stopping_ = false;  // set once by Stop(); guarded by mu_
  uint16_t port_ = 0;
  AdmissionBucket admission_;
  SyncServerStats stats_;
  std::deque<uint64_t> send_waiters_;  // sessions waiting for a full-send slot, FIFO

 private:
  void BuilderLoop();
  void TimerLoop();
  void BuildAndPublish(std::optional<SteadyClock::time_point> change_at, int64_t change_wall);
  // kUnchanged: `latest_` already is this (epoch, version); nothing is built.
  enum class PublishResult { kPublished, kUnchanged, kFailed };
  // Records that the store's current version cannot be published (`reason` is one of
  // kBuildFailureReasons).
  void SetBuildFailure(const std::string& reason, const std::string& error);
  // The store's current version is the published one. REQUIRES: mu_ held.
  void ClearBuildFailureLocked();
  // Consumes `stored` (its entities are moved into the exported config).
  PublishResult Publish(StoredConfig stored,
                        std::optional<SteadyClock::time_point> change_at, int64_t change_wall);

  const std::function<absl::StatusOr<StoredConfig>()> read_config_;
  std::unique_ptr<metrics::Registry> own_registry_;
  metrics::Registry* registry_;
  SyncMetrics metrics_;
  std::unique_ptr<grpc::Server> server_;
  std::thread builder_;
  std::thread timer_;

  // Guarded by mu_.
  bool timer_stop_ = false;
  bool dirty_ = false;
  SteadyClock::time_point first_notify_, last_notify_;
  // Oldest commit not yet in a published snapshot (for lag and convergence).
  std::optional<SteadyClock::time_point> unpublished_change_;
  int64_t unpublished_change_wall_ = 0;

  // Guarded by mu_. What the last read of the store said, and whether it could be published.
  ConfigVersion store_version_;  // epoch + version (no hash); empty before the first read
  std::vector<CorruptRow> corrupt_rows_;  // at most kMaxCorruptRowsKept
  uint64_t corrupt_row_count_ = 0;
  std::string build_failure_reason_;  // "" = the store's version is published (or unchanged)
  std::string build_failure_error_;
  int64_t build_failing_since_ = 0;  // Clock seconds

  friend class SyncServer;
};

namespace {

// One DP stream: a callback reactor. Every member is guarded by impl_.mu_ (the reactor methods
// lock it); gRPC runs the reactions on its callback threads, never inline in Start*().
//
//   kAwaitHello --Hello ok--> kActive --(close requested)--> closing_ --Finish--> OnDone
//        \--refused / timeout / admission--> closing_
//
// At most one write is in flight: control messages first (HelloReply, UpToDate), then the
// chunks of the one snapshot being sent. A frozen DP therefore holds at most one chunk plus a
// reference to a shared snapshot.
class DpSession final : public grpc::ServerBidiReactor<DpMessage, CpMessage> {
 public:
  DpSession(SyncServer::Impl& impl, grpc::CallbackServerContext* context);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // --- REQUIRES: impl_.mu_ held. ---
  // Starts the next write if none is in flight: a queued control message, the next chunk, or a
  // new snapshot when the DP is behind and nothing is un-ACKed.
  void PumpLocked();
  // Ends the stream once: optional Goaway (delivered with the status), then Finish(status).
  void CloseLocked(const std::string& reason, sync::v1::Goaway::Code goaway, grpc::Status status,
                   uint32_t retry_after_s = 0);
  // Periodic checks: Hello timeout, ACK timeout (stale), heartbeat silence, Goaway grace.
  void TickLocked(SteadyClock::time_point now);
  // The slot queue handed this session a full-send slot.
  void GrantSendSlotLocked();
  bool wants_send_slot() const { return waiting_for_slot_ && !closing_; }

 private:
  enum class Phase { kAwaitHello, kActive };

  void HandleHelloLocked(const sync::v1::Hello& hello);
  void HandleMessageLocked(const DpMessage& msg);
  void StartWriteLocked(const CpMessage& msg, bool no_compression);
  void FinishLocked();
  bool OwnerLocked() const;
  SyncServer::Impl::NodeRecord& RecordLocked() { return impl_.nodes_[node_id_]; }
  void MarkServingLocked(const ConfigVersion& serving);
  void EndSendLocked();

  SyncServer::Impl& impl_;
  grpc::CallbackServerContext* const context_;
  const uint64_t id_;
  const SteadyClock::time_point created_;
  const std::string peer_ip_;
  CertificateInfo cert_;

  Phase phase_ = Phase::kAwaitHello;
  std::string node_id_;  // set when the Hello is accepted
  SteadyClock::time_point active_since_;
  SteadyClock::time_point last_recv_;
  ConfigVersion serving_;

  DpMessage in_;
  CpMessage out_;
  bool write_in_flight_ = false;
  std::deque<CpMessage> control_;  // HelloReply / UpToDate; at most two

  // The snapshot being written (chunks) and the un-ACKed one.
  std::shared_ptr<const BuiltSnapshot> sending_;
  size_t next_chunk_ = 0;
  bool holds_slot_ = false;
  bool waiting_for_slot_ = false;
  bool unacked_ = false;
  uint64_t unacked_nonce_ = 0;
  ConfigVersion unacked_version_;
  SteadyClock::time_point ack_deadline_;
  bool stale_ = false;
  uint64_t next_nonce_ = 1;

  bool closing_ = false;
  bool finished_ = false;
  bool goaway_pending_ = false;  // waiting for the write in flight before sending it
  CpMessage final_msg_;
  grpc::Status final_status_;
  SteadyClock::time_point close_requested_;
};

DpSession::DpSession(SyncServer::Impl& impl, grpc::CallbackServerContext* context)
    : impl_(impl),
      context_(context),
      id_([&] {
        std::lock_guard<std::mutex> lock(impl.mu_);
        return impl.next_session_id_++;
      }()),
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
  std::lock_guard<std::mutex> lock(impl_.mu_);
  impl_.sessions_[id_] = this;
  ++impl_.stats_.streams_live;
  last_recv_ = created_;
  if (impl_.stopping_) {
    CloseLocked("control plane stopping", sync::v1::Goaway::DRAINING,
                grpc::Status(grpc::StatusCode::UNAVAILABLE, "control plane is stopping"));
    return;
  }
  uint32_t retry_after_s = 0;
  if (!impl_.admission_.TryAdmit(created_, &retry_after_s)) {
    ++impl_.stats_.admission_rejects;
    impl_.metrics().admission_rejects->Inc();
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
  std::lock_guard<std::mutex> lock(impl_.mu_);
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
    HandleMessageLocked(in_);
  }
  if (!closing_) StartRead(&in_);
}

void DpSession::OnWriteDone(bool ok) {
  std::lock_guard<std::mutex> lock(impl_.mu_);
  write_in_flight_ = false;
  if (size_t crash_at = impl_.options_.test_crash_after_chunks;
      crash_at > 0 && ok && sending_ && next_chunk_ == crash_at && crash_at < sending_->chunk_count()) {
    PORTICO_LOG(kWarn, "cp-sync", "TEST fault switch: crashing after ", crash_at, " of ",
                sending_->chunk_count(), " chunks of version ", sending_->version.version);
    raise(SIGKILL);
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
  std::lock_guard<std::mutex> lock(impl_.mu_);
  CloseLocked("stream cancelled", sync::v1::Goaway::UNKNOWN,
              grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

void DpSession::OnDone() {
  {
    std::lock_guard<std::mutex> lock(impl_.mu_);
    if (holds_slot_) {
      holds_slot_ = false;
      impl_.ReleaseSendSlotLocked();
    }
    impl_.UnregisterLocked(id_);
  }
  impl_.cv_.notify_all();
  delete this;
}

bool DpSession::OwnerLocked() const {
  if (node_id_.empty()) return false;
  auto it = impl_.nodes_.find(node_id_);
  return it != impl_.nodes_.end() && it->second.active_session == id_;
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
    SyncServer::Impl::NodeRecord& record = RecordLocked();
    record.active_session = 0;
    record.status.state = "disconnected";
    record.status.connected_since = 0;
    if (record.status.last_error.empty() || record.nacked.empty()) record.status.last_error = reason;
    impl_.UpdateConnectedGaugeLocked();
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
  status.last_seen = impl_.clock_.NowSeconds();

  if (cert_.node_id.empty() || hello.node_id() != cert_.node_id) {
    std::string reason =
        cert_.node_id.empty()
            ? std::string("client certificate carries no data plane identity (URI SAN spiffe://portico/dp/<node_id>)")
            : absl::StrCat("node_id '", hello.node_id(), "' does not match the certificate identity '",
                           cert_.node_id, "'");
    PORTICO_LOG(kError, kLog, "refusing data plane from ", peer_ip_, ": ", reason);
    if (!cert_.node_id.empty()) {
      status.sync_status = "unknown";
      status.state = "refused";
      status.last_error = reason;
      impl_.RecordRejectedLocked(cert_.node_id, status);
    }
    CloseLocked(reason, sync::v1::Goaway::UNAUTHORIZED,
                grpc::Status(grpc::StatusCode::PERMISSION_DENIED, reason));
    return;
  }

  // Compatibility (KONG-REFERENCE §1.9): same major, DP minor <= CP minor; protocol 1.
  BuildVersion cp_build, dp_build;
  ParseBuildVersion(PORTICO_VERSION, &cp_build);
  std::string incompatible;
  if (hello.protocol_version() != kProtocolVersion) {
    incompatible = absl::StrCat("protocol version ", hello.protocol_version(), " is not supported (CP speaks ",
                                kProtocolVersion, ")");
  } else if (!ParseBuildVersion(hello.dp_build(), &dp_build)) {
    incompatible = absl::StrCat("data plane version '", hello.dp_build(), "' is not MAJOR.MINOR.PATCH");
  } else if (dp_build.major != cp_build.major) {
    incompatible = absl::StrCat("data plane version ", hello.dp_build(), " has another major version than the control plane ",
                                PORTICO_VERSION);
  } else if (dp_build.minor > cp_build.minor) {
    incompatible = absl::StrCat("data plane version ", hello.dp_build(), " is newer than the control plane ",
                                PORTICO_VERSION);
  }
  if (!incompatible.empty()) {
    PORTICO_LOG(kError, kLog, "refusing data plane ", cert_.node_id, ": ", incompatible);
    status.sync_status = "kong_version_incompatible";
    status.state = "incompatible";
    status.last_error = incompatible;
    impl_.RecordRejectedLocked(cert_.node_id, status);
    CloseLocked(incompatible, sync::v1::Goaway::INCOMPATIBLE,
                grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, incompatible));
    return;
  }

  // Register; a newer stream of the same node replaces the older one.
  node_id_ = cert_.node_id;
  phase_ = Phase::kActive;
  active_since_ = SteadyClock::now();
  serving_ = FromVersionRef(hello.serving());
  SyncServer::Impl::NodeRecord& record = RecordLocked();
  if (record.active_session != 0) {
    auto old = impl_.sessions_.find(record.active_session);
    PORTICO_LOG(kWarn, kLog, "dp ", node_id_, " opened a second stream; replacing the older one");
    record.active_session = 0;  // so the old one does not mark the node disconnected
    if (old != impl_.sessions_.end()) {
      old->second->CloseLocked("replaced by a newer stream of the same node",
                               sync::v1::Goaway::DUPLICATE_NODE, grpc::Status::OK);
    }
  }
  record.active_session = id_;
  record.serving = serving_;
  std::shared_ptr<const BuiltSnapshot> latest = impl_.latest_;
  const bool up_to_date = latest && latest->version == serving_;
  status.sync_status = "normal";
  status.state = up_to_date ? "connected_synced" : "syncing";
  if (latest && !up_to_date && record.nacked == latest->version) status.state = "nacked";
  if (status.state == "nacked") status.last_error = record.status.last_error;
  status.nack_count = record.status.nack_count;
  status.connected_since = impl_.clock_.NowSeconds();
  // Only an admitted DP's claim is shown (a refused one is shown serving nothing).
  status.config_hash = ToHex(hello.serving().hash());
  status.config_version = hello.serving().version();
  record.status = status;
  impl_.UpdateConnectedGaugeLocked();
  PORTICO_LOG(kInfo, kLog, "dp ", node_id_, " connected from ", peer_ip_, " (", hello.hostname(),
              ", build ", hello.dp_build(), ", serving version ", serving_.version, ")");

  CpMessage reply;
  sync::v1::HelloReply* hr = reply.mutable_hello_reply();
  hr->set_cp_id(impl_.options_.cp_id);
  hr->set_protocol_version(kProtocolVersion);
  hr->add_capabilities("enc.gzip");
  hr->set_heartbeat_interval_s(static_cast<uint32_t>(
      std::max<int64_t>(1, absl::ToInt64Seconds(impl_.options_.heartbeat_interval))));
  if (latest) ToVersionRef(latest->version, hr->mutable_latest());
  control_.push_back(std::move(reply));
  if (up_to_date) {
    CpMessage msg;
    ToVersionRef(latest->version, msg.mutable_up_to_date()->mutable_latest());
    control_.push_back(std::move(msg));
    impl_.metrics().push_up_to_date->Inc();
  }
  PumpLocked();
}

void DpSession::MarkServingLocked(const ConfigVersion& serving) {
  serving_ = serving;
  if (!OwnerLocked()) return;
  SyncServer::Impl::NodeRecord& record = RecordLocked();
  record.serving = serving;
  record.status.config_hash = ToHex(serving.hash);
  record.status.config_version = serving.version;
}

void DpSession::HandleMessageLocked(const DpMessage& msg) {
  const bool owner = OwnerLocked();
  if (owner) RecordLocked().status.last_seen = impl_.clock_.NowSeconds();
  switch (msg.msg_case()) {
    case DpMessage::kAck: {
      const sync::v1::Ack& ack = msg.ack();
      if (!unacked_ || ack.nonce() != unacked_nonce_) {
        PORTICO_LOG(kWarn, kLog, "dp ", node_id_, ": ignoring ACK with stale nonce ", ack.nonce());
        break;
      }
      unacked_ = false;
      stale_ = false;
      const ConfigVersion serving = FromVersionRef(ack.serving());
      MarkServingLocked(serving);
      impl_.metrics().push_ack->Inc();
      if (const PublishedVersion* pv = impl_.FindPublishedLocked(serving);
          pv && pv->first_change && active_since_ <= pv->published_at) {
        impl_.metrics().convergence->Observe(SecondsSince(*pv->first_change, SteadyClock::now()));
      }
      if (!owner) break;
      SyncServer::Impl::NodeRecord& record = RecordLocked();
      record.status.last_error.clear();
      record.status.state =
          impl_.latest_ && impl_.latest_->version == serving ? "connected_synced" : "syncing";
      PORTICO_LOG(kDebug, kLog, "dp ", node_id_, " applied version ", serving.version, " in ",
                  ack.apply_ms(), " ms");
      break;
    }
    case DpMessage::kNack: {
      const sync::v1::Nack& nack = msg.nack();
      if (!unacked_ || nack.nonce() != unacked_nonce_) {
        PORTICO_LOG(kWarn, kLog, "dp ", node_id_, ": ignoring NACK with stale nonce ", nack.nonce());
        break;
      }
      unacked_ = false;
      stale_ = false;
      MarkServingLocked(FromVersionRef(nack.serving()));
      impl_.metrics().push_nack->Inc();
      if (!owner) break;
      SyncServer::Impl::NodeRecord& record = RecordLocked();
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
  const std::shared_ptr<const BuiltSnapshot>& target = impl_.latest_;
  if (!target || unacked_ || waiting_for_slot_ || serving_ == target->version) return;
  SyncServer::Impl::NodeRecord& record = RecordLocked();
  if (record.nacked == target->version) return;
  if (!holds_slot_ && !impl_.AcquireSendSlotLocked(id_)) {
    waiting_for_slot_ = true;
    return;
  }
  holds_slot_ = true;
  sending_ = target;
  next_chunk_ = 0;
  unacked_ = true;
  stale_ = false;
  unacked_nonce_ = next_nonce_++;
  unacked_version_ = target->version;
  const double mib = static_cast<double>(target->compressed.size()) / (1 << 20);
  ack_deadline_ = SteadyClock::now() + ToChrono(impl_.options_.ack_timeout) +
                  std::chrono::milliseconds(static_cast<int64_t>(
                      mib * absl::ToDoubleMilliseconds(impl_.options_.ack_timeout_per_mib)));
  if (OwnerLocked() && record.status.state != "nacked") record.status.state = "syncing";
  impl_.metrics().push_sent->Inc();
  PORTICO_LOG(kDebug, kLog, "sending version ", target->version.version, " to dp ", node_id_,
              " (nonce ", unacked_nonce_, ")");
  PumpLocked();
}

void DpSession::EndSendLocked() {
  sending_.reset();
  next_chunk_ = 0;
  if (holds_slot_) {
    holds_slot_ = false;
    impl_.ReleaseSendSlotLocked();
  }
}

void DpSession::GrantSendSlotLocked() {
  waiting_for_slot_ = false;
  holds_slot_ = true;
  PumpLocked();
  if (!sending_ && holds_slot_) {  // nothing to send any more: give the slot back
    holds_slot_ = false;
    impl_.ReleaseSendSlotLocked();
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
    if (now - created_ > ToChrono(impl_.options_.hello_timeout)) {
      ++impl_.stats_.hello_timeouts;
      PORTICO_LOG(kWarn, kLog, "no Hello from ", peer_ip_, " within ",
                  absl::FormatDuration(impl_.options_.hello_timeout), "; closing the stream");
      CloseLocked("no Hello within the hello timeout", sync::v1::Goaway::HELLO_TIMEOUT,
                  grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no Hello"));
    }
    return;
  }
  if (now - last_recv_ > 3 * ToChrono(impl_.options_.heartbeat_interval)) {
    CloseLocked("no heartbeat for 3 intervals", sync::v1::Goaway::UNKNOWN,
                grpc::Status(grpc::StatusCode::UNAVAILABLE, "no heartbeat"));
    return;
  }
  if (unacked_ && !stale_ && now > ack_deadline_) {
    stale_ = true;
    ++impl_.stats_.stale_transitions;
    PORTICO_LOG(kWarn, kLog, "dp ", node_id_, " has not acknowledged version ",
                unacked_version_.version, " (nonce ", unacked_nonce_, "): stale");
    if (OwnerLocked()) RecordLocked().status.state = "stale";
  }
}

}  // namespace

grpc::ServerBidiReactor<DpMessage, CpMessage>* SyncServer::Impl::Stream(
    grpc::CallbackServerContext* context) {
  return new DpSession(*this, context);
}

absl::Status SyncServer::Impl::Init() {
  absl::StatusOr<std::string> cert = ReadFileToString(options_.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFileToString(options_.key_file);
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> ca = ReadFileToString(options_.ca_file);
  if (!ca.ok()) return ca.status();
  if (options_.chunk_bytes == 0 || options_.chunk_bytes > (size_t{3} << 20)) {
    return absl::InvalidArgumentError("chunk_bytes must be in 1..3 MiB");
  }
  if (options_.max_concurrent_full_sends < 1) {
    return absl::InvalidArgumentError("max_concurrent_full_sends must be >= 1");
  }

  // First snapshot, synchronously: a broken store fails the start.
  absl::StatusOr<StoredConfig> stored = read_config_();
  if (!stored.ok()) return stored.status();
  Publish(*std::move(stored), std::nullopt, clock_.NowSeconds());

  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = *ca;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(options_.listen, grpc::SslServerCredentials(ssl), &selected_port);
  builder.RegisterService(this);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // SYNC-PROTOCOL §5.11: server keepalive 30 s / 10 s, tolerate DP pings every >= 10 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // Without this, a second CP on the same port would bind too (SO_REUSEPORT) and split the DPs.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // TLS handshake + HTTP/2 preface deadline per connection (gRPC's default is 120 s).
  builder.AddChannelArgument(
      GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
      static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(options_.handshake_timeout), 1, INT32_MAX)));
  server_ = builder.BuildAndStart();
  if (!server_ || selected_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    port_ = static_cast<uint16_t>(selected_port);
  }
  builder_ = std::thread([this] { BuilderLoop(); });
  timer_ = std::thread([this] { TimerLoop(); });
  PORTICO_LOG(kInfo, kLog, "listening on ", options_.listen, " (port ", selected_port, ")");
  return absl::OkStatus();
}

void SyncServer::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    // Goaway{DRAINING} to every stream; a chunk write in flight gets kGoawayGrace.
    std::vector<DpSession*> live;
    for (auto& [id, session] : sessions_) live.push_back(session);
    for (DpSession* session : live) {
      session->CloseLocked("control plane stopping", sync::v1::Goaway::DRAINING,
                           grpc::Status(grpc::StatusCode::UNAVAILABLE, "control plane is stopping"));
    }
  }
  cv_.notify_all();
  if (builder_.joinable()) builder_.join();
  if (server_) {
    // Cancels whatever is still open at the deadline; returns when every reactor is done.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(5), [&] { return sessions_.empty(); });
    timer_stop_ = true;
  }
  cv_.notify_all();
  if (timer_.joinable()) timer_.join();
}

void SyncServer::Impl::NotifyConfigChanged() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    SteadyClock::time_point now = SteadyClock::now();
    if (!dirty_) {
      dirty_ = true;
      first_notify_ = now;
    }
    last_notify_ = now;
    if (!unpublished_change_) {
      unpublished_change_ = now;
      unpublished_change_wall_ = clock_.NowSeconds();
    }
  }
  cv_.notify_all();
}

void SyncServer::Impl::BuilderLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || dirty_; });
    if (stopping_) return;
    // Debounce: build once no notification came for `quiet`, or `max` after the first one.
    while (true) {
      SteadyClock::time_point deadline =
          std::min(last_notify_ + ToChrono(options_.debounce_quiet),
                   first_notify_ + ToChrono(options_.debounce_max));
      if (SteadyClock::now() >= deadline) break;
      cv_.wait_until(lock, deadline);
      if (stopping_) return;
    }
    dirty_ = false;
    // Changes notified from here on belong to the next build.
    std::optional<SteadyClock::time_point> change_at = unpublished_change_;
    const int64_t change_wall = unpublished_change_wall_;
    unpublished_change_.reset();
    lock.unlock();
    BuildAndPublish(change_at, change_wall);
    lock.lock();
  }
}

void SyncServer::Impl::TimerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!timer_stop_) {
    cv_.wait_for(lock, kTickPeriod, [&] { return timer_stop_; });
    if (timer_stop_) return;
    const SteadyClock::time_point now = SteadyClock::now();
    std::vector<DpSession*> live;
    live.reserve(sessions_.size());
    for (auto& [id, session] : sessions_) live.push_back(session);
    for (DpSession* session : live) session->TickLocked(now);
  }
}

void SyncServer::Impl::BuildAndPublish(std::optional<SteadyClock::time_point> change_at,
                                       int64_t change_wall) {
  absl::StatusOr<StoredConfig> stored = read_config_();
  PublishResult result = PublishResult::kFailed;
  if (!stored.ok()) {
    PORTICO_LOG(kError, kLog, "cannot read config for a snapshot: ", stored.status().ToString());
    SetBuildFailure("read_error", stored.status().ToString());
  } else {
    result = Publish(*std::move(stored), change_at, change_wall);
  }
  // A failed build carries the oldest unpublished commit to the next one. An unchanged version
  // does not: its commit was already published (the notify arrived after the build read it).
  if (result == PublishResult::kFailed && change_at) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!unpublished_change_ || *change_at < *unpublished_change_) {
      unpublished_change_ = change_at;
      unpublished_change_wall_ = change_wall;
    }
  }
}

void SyncServer::Impl::SetBuildFailure(const std::string& reason, const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (build_failure_reason_.empty()) build_failing_since_ = clock_.NowSeconds();
  build_failure_reason_ = reason;
  build_failure_error_ = Truncate(error);
  for (size_t i = 0; i < std::size(kBuildFailureReasons); ++i) {
    metrics_.build_failing[i]->Set(reason == kBuildFailureReasons[i] ? 1 : 0);
  }
}

void SyncServer::Impl::ClearBuildFailureLocked() {
  build_failure_reason_.clear();
  build_failure_error_.clear();
  build_failing_since_ = 0;
  for (metrics::Gauge* gauge : metrics_.build_failing) gauge->Set(0);
}

SyncServer::Impl::PublishResult SyncServer::Impl::Publish(
    StoredConfig stored, std::optional<SteadyClock::time_point> change_at,
    int64_t change_wall) {
  uint64_t published_version = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    store_version_ = ConfigVersion{stored.version.epoch, stored.version.version, ""};
    corrupt_row_count_ = stored.corrupt.size();
    corrupt_rows_.assign(stored.corrupt.begin(),
                         stored.corrupt.begin() + std::min(stored.corrupt.size(), kMaxCorruptRowsKept));
    metrics_.store_version->Set(static_cast<double>(stored.version.version));
    metrics_.corrupt_rows->Set(static_cast<double>(stored.corrupt.size()));
    // Every write bumps the version in its own transaction: same epoch and version, same content.
    if (latest_ && latest_->version.epoch == stored.version.epoch &&
        latest_->version.version == stored.version.version) {
      ClearBuildFailureLocked();  // e.g. a read error at a version that is published
      return PublishResult::kUnchanged;
    }
    if (latest_) published_version = latest_->version.version;
  }
  auto fail = [&](const char* reason, const std::string& error) {
    PORTICO_LOG(kError, kLog, "config version ", stored.version.version, " cannot be published (", reason,
                "): ", error, "; data planes keep ",
                published_version ? absl::StrCat("version ", published_version) : std::string("what they serve"),
                " until it is repaired");
    SetBuildFailure(reason, error);
    return PublishResult::kFailed;
  };
  if (!stored.corrupt.empty()) {
    // Publishing the rest would silently drop these entities from every data plane.
    std::string error = absl::StrCat(stored.corrupt.size(), " corrupt row(s) in the store (repair each with "
                                     "DELETE or PUT through the Admin API):");
    for (size_t i = 0; i < stored.corrupt.size(); ++i) {
      const CorruptRow& row = stored.corrupt[i];
      if (i == 10) {
        absl::StrAppend(&error, " ...");
        break;
      }
      absl::StrAppend(&error, i ? ";" : "", " ", row.kind, " ", absl::CHexEscape(row.id), ": ", row.error);
    }
    return fail("corrupt_rows", error);
  }
  const SteadyClock::time_point build_start = SteadyClock::now();
  const ConfigSet exported = ExportableConfig(std::move(stored.config));
  absl::Status valid = ValidateConfigSet(exported);
  if (!valid.ok()) return fail("invalid_config", valid.ToString());
  SnapshotBuildOptions build_options;
  build_options.chunk_bytes = options_.chunk_bytes;
  absl::StatusOr<std::shared_ptr<const BuiltSnapshot>> built =
      BuildSnapshotOfExported(exported, stored.version, clock_, build_options);
  if (!built.ok()) return fail("build_error", built.status().ToString());
  const BuiltSnapshot& s = **built;
  metrics_.builds->Inc();
  const double build_seconds = SecondsSince(build_start, SteadyClock::now());
  metrics_.build_seconds->Observe(build_seconds);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (latest_ && latest_->version == s.version) return PublishResult::kUnchanged;
    latest_ = *built;
    ++published_;
    PublishedVersion pv;
    pv.version = s.version;
    pv.first_change = change_at;
    pv.first_change_wall = change_at ? change_wall : clock_.NowSeconds();
    pv.published_at = SteadyClock::now();
    history_.push_back(std::move(pv));
    if (history_.size() > kHistoryDepth) history_.pop_front();
    metrics_.bytes_raw->Set(static_cast<double>(s.uncompressed_size));
    metrics_.bytes_gzip->Set(static_cast<double>(s.compressed.size()));
    metrics_.config_version->Set(static_cast<double>(s.version.version));
    ClearBuildFailureLocked();
    // Wake every stream: each one that is idle and behind starts sending (or queues for a slot).
    std::vector<DpSession*> live;
    live.reserve(sessions_.size());
    for (auto& [id, session] : sessions_) live.push_back(session);
    for (DpSession* session : live) session->PumpLocked();
  }
  PORTICO_LOG(kInfo, kLog, "published config version ", s.version.version, " hash ",
              ToHex(s.version.hash).substr(0, 12), " (", s.service_count, " services, ",
              s.route_count, " routes, ", s.compressed.size(), " bytes gzip in ",
              s.chunk_count(), " chunks, built in ", static_cast<int64_t>(build_seconds * 1000), " ms)");
  return PublishResult::kPublished;
}

void SyncServer::Impl::RecordRejectedLocked(const std::string& node_id,
                                            const DataPlaneStatus& status) {
  NodeRecord& record = nodes_[node_id];
  if (record.active_session != 0) return;  // a legitimate stream of that node is live
  const uint64_t nack_count = record.status.nack_count;
  record.status = status;  // carries no config_version/hash: a refused DP serves nothing here
  record.status.nack_count = nack_count;
  record.serving = ConfigVersion{};
}

bool SyncServer::Impl::AcquireSendSlotLocked(uint64_t session_id) {
  if (stats_.full_sends_in_progress < options_.max_concurrent_full_sends) {
    ++stats_.full_sends_in_progress;
    stats_.full_sends_peak = std::max(stats_.full_sends_peak, stats_.full_sends_in_progress);
    return true;
  }
  send_waiters_.push_back(session_id);
  return false;
}

void SyncServer::Impl::ReleaseSendSlotLocked() {
  --stats_.full_sends_in_progress;
  while (!send_waiters_.empty() &&
         stats_.full_sends_in_progress < options_.max_concurrent_full_sends) {
    const uint64_t id = send_waiters_.front();
    send_waiters_.pop_front();
    auto it = sessions_.find(id);
    if (it == sessions_.end() || !it->second->wants_send_slot()) continue;
    ++stats_.full_sends_in_progress;
    stats_.full_sends_peak = std::max(stats_.full_sends_peak, stats_.full_sends_in_progress);
    it->second->GrantSendSlotLocked();  // may release it again at once (nothing to send)
  }
}

const PublishedVersion* SyncServer::Impl::FindPublishedLocked(const ConfigVersion& v) const {
  for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
    if (it->version == v) return &*it;
  }
  return nullptr;
}

void SyncServer::Impl::UpdateConnectedGaugeLocked() {
  size_t connected = 0;
  for (const auto& [id, record] : nodes_) connected += record.active_session != 0 ? 1 : 0;
  metrics_.connected->Set(static_cast<double>(connected));
}

void SyncServer::Impl::UnregisterLocked(uint64_t session_id) {
  sessions_.erase(session_id);
  --stats_.streams_live;
}

SyncServer::SyncServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SyncServer::~SyncServer() { Stop(); }

absl::StatusOr<std::unique_ptr<SyncServer>> SyncServer::Start(
    SyncServerOptions options, std::function<absl::StatusOr<StoredConfig>()> read_config,
    const Clock& clock) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(read_config), clock);
  absl::Status s = impl->Init();
  if (!s.ok()) {
    impl->Stop();
    return s;
  }
  return std::unique_ptr<SyncServer>(new SyncServer(std::move(impl)));
}

uint16_t SyncServer::port() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->port_;
}

void SyncServer::NotifyConfigChanged() { impl_->NotifyConfigChanged(); }

std::vector<DataPlaneStatus> SyncServer::ListDataPlanes() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  const int64_t now = impl_->clock_.NowSeconds();
  const BuiltSnapshot* latest = impl_->latest_.get();
  const bool failing = !impl_->build_failure_reason_.empty();
  // The version DPs should serve: the store's, as last read (published or not).
  ConfigVersion current = impl_->store_version_;
  if (current.empty() && latest) current = latest->version;
  std::vector<DataPlaneStatus> out;
  out.reserve(impl_->nodes_.size());
  for (const auto& [id, record] : impl_->nodes_) {
    out.push_back(record.status);
    DataPlaneStatus& dp = out.back();
    dp.id = id;
    const ConfigVersion& serving = record.serving;
    // A live DP that is not being sent anything while the store's version cannot be built.
    const bool idle = dp.state == "connected_synced" ||
                      (dp.state == "syncing" && (!latest || serving == latest->version));
    if (failing && record.active_session != 0 && idle) dp.state = "outdated";
    if (current.empty()) continue;
    const bool same_epoch = serving.epoch == current.epoch;
    if (same_epoch && serving.version >= current.version) continue;
    dp.lag_versions = same_epoch ? current.version - serving.version : current.version;
    // The oldest published version it lacks carries the oldest commit it lacks.
    for (const PublishedVersion& pv : impl_->history_) {
      if (same_epoch && pv.version.version <= serving.version) continue;
      dp.lag_seconds = std::max<int64_t>(0, now - pv.first_change_wall);
      break;
    }
    if (failing && dp.lag_seconds == 0) {
      dp.lag_seconds = std::max<int64_t>(0, now - impl_->build_failing_since_);
    }
  }
  return out;
}

ConfigBuildStatus SyncServer::BuildStatus() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  ConfigBuildStatus status;
  status.known = true;
  status.store_version = impl_->store_version_.version;
  status.published = impl_->latest_ != nullptr;
  status.published_version = impl_->latest_ ? impl_->latest_->version.version : 0;
  status.failing = !impl_->build_failure_reason_.empty();
  status.reason = impl_->build_failure_reason_;
  status.error = impl_->build_failure_error_;
  status.failing_since = impl_->build_failing_since_;
  status.corrupt_rows = impl_->corrupt_rows_;
  status.corrupt_row_count = impl_->corrupt_row_count_;
  return status;
}

ConfigVersion SyncServer::latest() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->latest_ ? impl_->latest_->version : ConfigVersion{};
}

std::shared_ptr<const BuiltSnapshot> SyncServer::latest_snapshot() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->latest_;
}

uint64_t SyncServer::snapshots_published() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->published_;
}

SyncServerStats SyncServer::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->stats_;
}

std::string SyncServer::metrics_text() const { return impl_->registry_->Render(); }

void SyncServer::Stop() { impl_->Stop(); }

}  // namespace portico
