#include "control_plane/sync/sync_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"
#include "common/tls/tls_files.h"
#include "portico/sync/v1/sync.grpc.pb.h"

namespace portico {
namespace {

using SteadyClock = std::chrono::steady_clock;
using sync::v1::CpMessage;
using sync::v1::DpMessage;
using Stream = grpc::ServerReaderWriter<CpMessage, DpMessage>;

constexpr char kLog[] = "cp-sync";
constexpr uint32_t kProtocolVersion = 1;
constexpr int kMaxMessageBytes = 4 << 20;
constexpr size_t kMaxErrorText = 4096;
// How long a stream told to go away may take to close its side before it is cancelled.
constexpr auto kGoawayGrace = std::chrono::milliseconds(1000);
constexpr auto kDrainGrace = std::chrono::milliseconds(200);

void ToRef(const ConfigVersion& v, sync::v1::VersionRef* ref) {
  ref->set_epoch(v.epoch);
  ref->set_version(v.version);
  ref->set_hash(v.hash);
}

ConfigVersion FromRef(const sync::v1::VersionRef& ref) {
  return ConfigVersion{ref.epoch(), ref.version(), ref.hash()};
}

std::string Truncate(std::string text) {
  if (text.size() > kMaxErrorText) text.resize(kMaxErrorText);
  return text;
}

std::chrono::milliseconds ToChrono(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
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

}  // namespace

class SyncServer::Impl final : public sync::v1::ConfigSync::Service {
 public:
  Impl(SyncServerOptions options, std::function<absl::StatusOr<StoredConfig>()> read_config,
       const Clock& clock)
      : options_(std::move(options)), read_config_(std::move(read_config)), clock_(clock) {}

  absl::Status Init();
  void Stop();
  void NotifyConfigChanged();

  grpc::Status Stream(grpc::ServerContext* context, ::portico::Stream* stream) override;

  // Guarded by mu_.
  struct NodeRecord {
    DataPlaneStatus status;
    ConfigVersion nacked;        // parked: not resent until latest differs
    uint64_t active_session = 0;  // 0 = no live stream
  };

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const BuiltSnapshot> latest_;
  uint64_t generation_ = 0;
  uint64_t published_ = 0;
  std::map<std::string, NodeRecord> nodes_;
  uint16_t port_ = 0;

 private:
  struct Session {
    uint64_t id = 0;
    std::string node_id;
    std::deque<DpMessage> inbox;
    bool reader_done = false;
    ConfigVersion serving;
    bool inflight = false;
    uint64_t inflight_nonce = 0;
    uint64_t next_nonce = 1;
    SteadyClock::time_point last_recv;
  };

  void BuilderLoop();
  void BuildAndPublish();
  void Publish(const StoredConfig& stored);
  // Records a refused or incompatible DP unless it has a live stream. REQUIRES: mu_ held.
  void RecordRejectedLocked(const std::string& node_id, const DataPlaneStatus& status);
  // Handles the queued DP messages of `s`. REQUIRES: mu_ held.
  void DrainInboxLocked(Session& s);
  static bool WriteGoaway(::portico::Stream* stream, sync::v1::Goaway::Code code,
                          const std::string& reason, uint32_t retry_after_s = 0);
  bool SendSnapshot(::portico::Stream* stream, const BuiltSnapshot& snap, uint64_t nonce);

  const SyncServerOptions options_;
  const std::function<absl::StatusOr<StoredConfig>()> read_config_;
  const Clock& clock_;
  std::unique_ptr<grpc::Server> server_;
  std::thread builder_;

  // Guarded by mu_.
  bool stopping_ = false;
  bool stopped_ = false;
  bool dirty_ = false;
  SteadyClock::time_point first_notify_, last_notify_;
  uint64_t next_session_id_ = 1;
};

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

  // First snapshot, synchronously: a broken store fails the start.
  absl::StatusOr<StoredConfig> stored = read_config_();
  if (!stored.ok()) return stored.status();
  Publish(*stored);

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
  server_ = builder.BuildAndStart();
  if (!server_ || selected_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    port_ = static_cast<uint16_t>(selected_port);
  }
  builder_ = std::thread([this] { BuilderLoop(); });
  PORTICO_LOG(kInfo, kLog, "listening on ", options_.listen, " (port ", selected_port, ")");
  return absl::OkStatus();
}

void SyncServer::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
  }
  cv_.notify_all();
  if (builder_.joinable()) builder_.join();
  if (server_) {
    // Sessions see stopping_ and leave on their own; the deadline cancels stragglers (e.g. a
    // stream that never sent Hello).
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
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
    lock.unlock();
    BuildAndPublish();
    lock.lock();
  }
}

void SyncServer::Impl::BuildAndPublish() {
  absl::StatusOr<StoredConfig> stored = read_config_();
  if (!stored.ok()) {
    PORTICO_LOG(kError, kLog, "cannot read config for a snapshot: ", stored.status().ToString());
    return;
  }
  Publish(*stored);
}

void SyncServer::Impl::Publish(const StoredConfig& stored_config) {
  const StoredConfig* stored = &stored_config;
  absl::Status valid = ValidateConfigSet(ExportableConfig(stored->config));
  if (!valid.ok()) {
    PORTICO_LOG(kError, kLog, "config version ", stored->version.version,
                " is invalid and is not published: ", valid.ToString());
    return;
  }
  SnapshotBuildOptions build_options;
  build_options.chunk_bytes = options_.chunk_bytes;
  absl::StatusOr<std::shared_ptr<const BuiltSnapshot>> built =
      BuildSnapshot(*stored, clock_, build_options);
  if (!built.ok()) {
    PORTICO_LOG(kError, kLog, "snapshot build failed: ", built.status().ToString());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (latest_ && latest_->version == (*built)->version) return;  // nothing new
    latest_ = *built;
    ++generation_;
    ++published_;
  }
  cv_.notify_all();
  const BuiltSnapshot& s = **built;
  PORTICO_LOG(kInfo, kLog, "published config version ", s.version.version, " hash ",
              ToHex(s.version.hash).substr(0, 12), " (", s.service_count, " services, ",
              s.route_count, " routes, ", s.compressed.size(), " bytes gzip in ",
              s.chunk_count(), " chunks, built in ", absl::FormatDuration(s.build_duration), ")");
}

void SyncServer::Impl::RecordRejectedLocked(const std::string& node_id,
                                            const DataPlaneStatus& status) {
  NodeRecord& record = nodes_[node_id];
  if (record.active_session != 0) return;  // a legitimate stream of that node is live
  ConfigVersion nacked = record.nacked;
  record.status = status;
  record.nacked = nacked;
}

bool SyncServer::Impl::WriteGoaway(::portico::Stream* stream, sync::v1::Goaway::Code code,
                                   const std::string& reason, uint32_t retry_after_s) {
  CpMessage msg;
  sync::v1::Goaway* goaway = msg.mutable_goaway();
  goaway->set_code(code);
  goaway->set_reason(reason);
  goaway->set_retry_after_s(retry_after_s);
  return stream->Write(msg);
}

bool SyncServer::Impl::SendSnapshot(::portico::Stream* stream, const BuiltSnapshot& snap,
                                    uint64_t nonce) {
  CpMessage msg;
  grpc::WriteOptions write_options;
  write_options.set_no_compression();  // the payload is gzipped already
  for (size_t i = 0; i < snap.chunk_count(); ++i) {
    FillSnapshotChunk(snap, i, nonce, msg.mutable_chunk());
    if (!stream->Write(msg, write_options)) return false;
  }
  return true;
}

void SyncServer::Impl::DrainInboxLocked(Session& s) {
  NodeRecord& record = nodes_[s.node_id];
  const bool owner = record.active_session == s.id;
  while (!s.inbox.empty()) {
    DpMessage msg = std::move(s.inbox.front());
    s.inbox.pop_front();
    if (owner) record.status.last_seen = clock_.NowSeconds();
    switch (msg.msg_case()) {
      case DpMessage::kAck: {
        const sync::v1::Ack& ack = msg.ack();
        if (!s.inflight || ack.nonce() != s.inflight_nonce) {
          PORTICO_LOG(kWarn, kLog, "dp ", s.node_id, ": ignoring ACK with stale nonce ", ack.nonce());
          break;
        }
        s.inflight = false;
        s.serving = FromRef(ack.serving());
        if (!owner) break;
        record.status.config_hash = ToHex(s.serving.hash);
        record.status.config_version = s.serving.version;
        record.status.last_error.clear();
        record.status.state =
            latest_ && latest_->version == s.serving ? "connected_synced" : "syncing";
        PORTICO_LOG(kInfo, kLog, "dp ", s.node_id, " applied version ", s.serving.version,
                    " in ", ack.apply_ms(), " ms");
        break;
      }
      case DpMessage::kNack: {
        const sync::v1::Nack& nack = msg.nack();
        if (!s.inflight || nack.nonce() != s.inflight_nonce) {
          PORTICO_LOG(kWarn, kLog, "dp ", s.node_id, ": ignoring NACK with stale nonce ", nack.nonce());
          break;
        }
        s.inflight = false;
        s.serving = FromRef(nack.serving());
        if (!owner) break;
        record.nacked = FromRef(nack.rejected());
        record.status.state = "nacked";
        record.status.last_error =
            Truncate(absl::StrCat(NackCodeName(nack.code()), ": ", nack.message()));
        record.status.config_hash = ToHex(s.serving.hash);
        record.status.config_version = s.serving.version;
        PORTICO_LOG(kError, kLog, "dp ", s.node_id, " rejected version ", record.nacked.version,
                    ": ", record.status.last_error);
        break;
      }
      case DpMessage::kHeartbeat: {
        if (s.inflight) break;  // the ACK/NACK decides what it serves
        s.serving = FromRef(msg.heartbeat().serving());
        if (!owner) break;
        record.status.config_hash = ToHex(s.serving.hash);
        record.status.config_version = s.serving.version;
        break;
      }
      default:
        PORTICO_LOG(kWarn, kLog, "dp ", s.node_id, ": unexpected message ", msg.msg_case());
        break;
    }
  }
}

grpc::Status SyncServer::Impl::Stream(grpc::ServerContext* context, ::portico::Stream* stream) {
  const std::string peer_ip = PeerIp(context->peer());
  DpMessage first;
  if (!stream->Read(&first)) return grpc::Status(grpc::StatusCode::CANCELLED, "no Hello");
  if (!first.has_hello()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be Hello");
  }
  const sync::v1::Hello& hello = first.hello();

  // Authentication: the verified client certificate names the node.
  CertificateInfo cert;
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  std::vector<grpc::string_ref> pems =
      auth ? auth->FindPropertyValues("x509_pem_cert") : std::vector<grpc::string_ref>{};
  if (!pems.empty()) {
    absl::StatusOr<CertificateInfo> info =
        InspectCertificate(absl::string_view(pems[0].data(), pems[0].size()));
    if (info.ok()) cert = *info;
  }

  DataPlaneStatus status;
  status.id = cert.node_id;
  status.hostname = hello.hostname();
  status.ip = peer_ip;
  status.version = hello.dp_build();
  status.labels = {hello.labels().begin(), hello.labels().end()};
  status.cert_expiry = cert.not_after;
  status.last_seen = clock_.NowSeconds();
  status.config_hash = ToHex(hello.serving().hash());
  status.config_version = hello.serving().version();

  if (cert.node_id.empty() || hello.node_id() != cert.node_id) {
    std::string reason =
        cert.node_id.empty()
            ? std::string("client certificate carries no data plane identity (URI SAN spiffe://portico/dp/<node_id>)")
            : absl::StrCat("node_id '", hello.node_id(), "' does not match the certificate identity '",
                           cert.node_id, "'");
    PORTICO_LOG(kError, kLog, "refusing data plane from ", peer_ip, ": ", reason);
    if (!cert.node_id.empty()) {
      status.sync_status = "unknown";
      status.state = "refused";
      status.last_error = reason;
      std::lock_guard<std::mutex> lock(mu_);
      RecordRejectedLocked(cert.node_id, status);
    }
    WriteGoaway(stream, sync::v1::Goaway::UNAUTHORIZED, reason);
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, reason);
  }
  const std::string& node_id = cert.node_id;

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
    PORTICO_LOG(kError, kLog, "refusing data plane ", node_id, ": ", incompatible);
    status.sync_status = "kong_version_incompatible";
    status.state = "incompatible";
    status.last_error = incompatible;
    {
      std::lock_guard<std::mutex> lock(mu_);
      RecordRejectedLocked(node_id, status);
    }
    WriteGoaway(stream, sync::v1::Goaway::INCOMPATIBLE, incompatible);
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, incompatible);
  }

  // Register; a newer stream of the same node replaces the older one.
  Session s;
  s.node_id = node_id;
  s.serving = FromRef(hello.serving());
  s.last_recv = SteadyClock::now();
  std::shared_ptr<const BuiltSnapshot> latest;
  bool up_to_date = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "control plane is stopping");
    s.id = next_session_id_++;
    NodeRecord& record = nodes_[node_id];
    if (record.active_session != 0) {
      PORTICO_LOG(kWarn, kLog, "dp ", node_id, " opened a second stream; replacing the older one");
    }
    record.active_session = s.id;
    status.sync_status = "normal";
    latest = latest_;
    up_to_date = latest && latest->version == s.serving;
    status.state = up_to_date ? "connected_synced" : "syncing";
    if (latest && !up_to_date && record.nacked == latest->version) status.state = "nacked";
    if (status.state == "nacked") status.last_error = record.status.last_error;
    record.status = status;
  }
  cv_.notify_all();  // wakes a replaced session
  PORTICO_LOG(kInfo, kLog, "dp ", node_id, " connected from ", peer_ip, " (", hello.hostname(),
              ", build ", hello.dp_build(), ", serving version ", s.serving.version, ")");

  CpMessage reply;
  sync::v1::HelloReply* hr = reply.mutable_hello_reply();
  hr->set_cp_id(options_.cp_id);
  hr->set_protocol_version(kProtocolVersion);
  hr->add_capabilities("enc.gzip");
  hr->set_heartbeat_interval_s(
      static_cast<uint32_t>(std::max<int64_t>(1, absl::ToInt64Seconds(options_.heartbeat_interval))));
  if (latest) ToRef(latest->version, hr->mutable_latest());
  bool healthy = stream->Write(reply);
  if (healthy && up_to_date) {
    CpMessage msg;
    ToRef(latest->version, msg.mutable_up_to_date()->mutable_latest());
    healthy = stream->Write(msg);
  }

  std::thread reader([&] {
    DpMessage msg;
    while (stream->Read(&msg)) {
      std::lock_guard<std::mutex> lock(mu_);
      s.inbox.push_back(std::move(msg));
      s.last_recv = SteadyClock::now();
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu_);
    s.reader_done = true;
    cv_.notify_all();
  });

  std::string disconnect_reason;
  sync::v1::Goaway::Code goaway_code = sync::v1::Goaway::UNKNOWN;
  const auto silence_limit = 3 * ToChrono(options_.heartbeat_interval);
  {
    std::unique_lock<std::mutex> lock(mu_);
    uint64_t seen_generation = 0;
    while (healthy) {
      if (stopping_) {
        goaway_code = sync::v1::Goaway::DRAINING;
        disconnect_reason = "control plane stopping";
        break;
      }
      if (nodes_[node_id].active_session != s.id) {
        goaway_code = sync::v1::Goaway::DUPLICATE_NODE;
        disconnect_reason = "replaced by a newer stream of the same node";
        break;
      }
      DrainInboxLocked(s);
      if (s.reader_done) {
        disconnect_reason = "stream closed by the data plane";
        break;
      }
      if (SteadyClock::now() - s.last_recv > silence_limit) {
        disconnect_reason = "no heartbeat for 3 intervals";
        break;
      }
      // Push the latest snapshot: at most one un-ACKed, never a parked (NACKed) version.
      seen_generation = generation_;
      std::shared_ptr<const BuiltSnapshot> target = latest_;
      NodeRecord& record = nodes_[node_id];
      if (target && !s.inflight && s.serving != target->version && record.nacked != target->version) {
        s.inflight = true;
        s.inflight_nonce = s.next_nonce++;
        record.status.state = "syncing";
        uint64_t nonce = s.inflight_nonce;
        lock.unlock();
        PORTICO_LOG(kInfo, kLog, "sending version ", target->version.version, " to dp ", node_id,
                    " (nonce ", nonce, ")");
        healthy = SendSnapshot(stream, *target, nonce);
        lock.lock();
        if (!healthy) disconnect_reason = "write failed";
        continue;
      }
      cv_.wait_until(lock, s.last_recv + silence_limit + std::chrono::milliseconds(10), [&] {
        return stopping_ || s.reader_done || !s.inbox.empty() || generation_ != seen_generation ||
               nodes_[node_id].active_session != s.id;
      });
    }
  }
  if (disconnect_reason.empty()) disconnect_reason = "write failed";

  // Close: tell the DP why, give it a moment to half-close, then cancel to unblock the reader.
  if (goaway_code != sync::v1::Goaway::UNKNOWN) {
    WriteGoaway(stream, goaway_code, disconnect_reason);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, goaway_code == sync::v1::Goaway::DRAINING ? kDrainGrace : kGoawayGrace,
                 [&] { return s.reader_done; });
  }
  context->TryCancel();
  reader.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    NodeRecord& record = nodes_[node_id];
    if (record.active_session == s.id) {
      record.active_session = 0;
      record.status.state = "disconnected";
      if (record.status.last_error.empty() || record.nacked.empty()) {
        record.status.last_error = disconnect_reason;
      }
    }
  }
  PORTICO_LOG(kInfo, kLog, "dp ", node_id, " disconnected: ", disconnect_reason);
  return grpc::Status::OK;
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
  std::vector<DataPlaneStatus> out;
  out.reserve(impl_->nodes_.size());
  for (const auto& [id, record] : impl_->nodes_) {
    out.push_back(record.status);
    out.back().id = id;
  }
  return out;
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

void SyncServer::Stop() { impl_->Stop(); }

}  // namespace portico
