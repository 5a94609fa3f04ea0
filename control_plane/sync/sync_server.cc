#include "control_plane/sync/sync_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/base/log.h"
#include "common/metrics/metrics.h"
#include "common/snapshot/snapshot.h"
#include "control_plane/sync/dp_session.h"
#include "control_plane/sync/snapshot_builder.h"
#include "control_plane/sync/sync_hub.h"
#include "control_plane/sync/sync_metrics.h"
#include "portico/sync/v1/sync.grpc.pb.h"

namespace portico::cp {
namespace {

constexpr char kLog[] = "cp-sync";
constexpr int kMaxMessageBytes = 4 << 20;
// Timer thread period: resolution of the Hello, ACK and heartbeat timeouts.
constexpr auto kTickPeriod = std::chrono::milliseconds(100);

SnapshotBuilder::Options BuilderOptions(const SyncServerOptions& options) {
  SnapshotBuilder::Options out;
  out.debounce_quiet = options.debounce_quiet;
  out.debounce_max = options.debounce_max;
  out.chunk_bytes = options.chunk_bytes;
  return out;
}

}  // namespace

// The gRPC service: one DpSession per stream, the builder publishing into the hub, and the timer.
class SyncServer::Impl final : public sync::v1::ConfigSync::CallbackService {
 public:
  Impl(SyncServerOptions options, std::function<absl::StatusOr<StoredConfig>()> read_config, const Clock& clock,
       SyncTestHooks* test_hooks)
      : options_(std::move(options)),
        clock_(clock),
        own_registry_(options_.metrics ? nullptr : std::make_unique<Registry>()),
        registry_(options_.metrics ? options_.metrics : own_registry_.get()),
        metrics_(*registry_),
        hub_(options_, clock_, metrics_, builder_, test_hooks),
        builder_(BuilderOptions(options_), std::move(read_config), metrics_, clock_,
                 [this](std::shared_ptr<const BuiltSnapshot> snapshot) {
                   std::lock_guard<std::mutex> lock(hub_.mu);
                   hub_.PublishLocked(std::move(snapshot));
                 }) {}

  absl::Status Init();
  void Stop();

  grpc::ServerBidiReactor<sync::v1::DpMessage, sync::v1::CpMessage>* Stream(
      grpc::CallbackServerContext* context) override {
    return new DpSession(hub_, context);
  }

  const SyncServerOptions options_;
  const Clock& clock_;
  std::unique_ptr<Registry> own_registry_;
  Registry* registry_;
  SyncMetrics metrics_;
  SyncHub hub_;              // holds a reference to builder_, used only once both exist
  SnapshotBuilder builder_;  // destroyed first: its thread publishes into hub_

 private:
  void TimerLoop();

  std::unique_ptr<grpc::Server> server_;
  std::thread timer_;
  bool timer_stop_ = false;  // guarded by hub_.mu
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
  if (options_.max_concurrent_full_sends < 1) {
    return absl::InvalidArgumentError("max_concurrent_full_sends must be >= 1");
  }

  // First snapshot, synchronously: a broken store fails the start.
  if (absl::Status s = builder_.Start(); !s.ok()) return s;

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
    std::lock_guard<std::mutex> lock(hub_.mu);
    hub_.port = static_cast<uint16_t>(selected_port);
  }
  timer_ = std::thread([this] { TimerLoop(); });
  PORTICO_LOG(kInfo, kLog, "listening on ", options_.listen, " (port ", selected_port, ")");
  return absl::OkStatus();
}

void SyncServer::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lock(hub_.mu);
    if (hub_.stopping) return;
    hub_.stopping = true;
    // Goaway{DRAINING} to every stream; a chunk write in flight gets its grace period.
    for (SessionHandle* session : hub_.LiveLocked()) session->CloseDrainingLocked();
  }
  builder_.Stop();
  if (server_) {
    // Cancels whatever is still open at the deadline; returns when every reactor is done.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
  {
    std::unique_lock<std::mutex> lock(hub_.mu);
    hub_.session_done.wait_for(lock, std::chrono::seconds(5), [&] { return hub_.LiveLocked().empty(); });
    timer_stop_ = true;
  }
  hub_.session_done.notify_all();
  if (timer_.joinable()) timer_.join();
}

void SyncServer::Impl::TimerLoop() {
  std::unique_lock<std::mutex> lock(hub_.mu);
  while (!timer_stop_) {
    hub_.session_done.wait_for(lock, kTickPeriod, [&] { return timer_stop_; });
    if (timer_stop_) return;
    const auto now = std::chrono::steady_clock::now();
    for (SessionHandle* session : hub_.LiveLocked()) session->TickLocked(now);
  }
}

SyncServer::SyncServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SyncServer::~SyncServer() { Stop(); }

absl::StatusOr<std::unique_ptr<SyncServer>> SyncServer::Start(
    SyncServerOptions options, std::function<absl::StatusOr<StoredConfig>()> read_config, const Clock& clock,
    SyncTestHooks* test_hooks) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(read_config), clock, test_hooks);
  absl::Status s = impl->Init();
  if (!s.ok()) {
    impl->Stop();
    return s;
  }
  return std::unique_ptr<SyncServer>(new SyncServer(std::move(impl)));
}

uint16_t SyncServer::port() const {
  std::lock_guard<std::mutex> lock(impl_->hub_.mu);
  return impl_->hub_.port;
}

void SyncServer::NotifyConfigChanged() { impl_->builder_.NotifyConfigChanged(); }

std::vector<DataPlaneStatus> SyncServer::ListDataPlanes() const {
  const SnapshotBuilder::LagView lag = impl_->builder_.Lag();
  std::lock_guard<std::mutex> lock(impl_->hub_.mu);
  return impl_->hub_.nodes.List(lag, impl_->hub_.latest.get(), impl_->clock_.NowSeconds());
}

ConfigBuildStatus SyncServer::BuildStatus() const { return impl_->builder_.Status(); }

ConfigVersion SyncServer::latest() const {
  std::shared_ptr<const BuiltSnapshot> latest = impl_->builder_.latest();
  return latest ? latest->version : ConfigVersion{};
}

std::shared_ptr<const BuiltSnapshot> SyncServer::latest_snapshot() const { return impl_->builder_.latest(); }

uint64_t SyncServer::snapshots_published() const { return impl_->builder_.published_count(); }

SyncServerStats SyncServer::stats() const {
  std::lock_guard<std::mutex> lock(impl_->hub_.mu);
  return impl_->hub_.StatsLocked();
}

std::vector<DataPlaneTargetHealth> SyncServer::TargetHealth() const {
  std::lock_guard<std::mutex> lock(impl_->hub_.mu);
  return impl_->hub_.nodes.TargetHealth();
}

std::vector<std::string> SyncServer::SendHealthOverride(const TargetHealthOverride& command) {
  std::lock_guard<std::mutex> lock(impl_->hub_.mu);
  if (impl_->hub_.stopping) return {};
  return impl_->hub_.BroadcastHealthOverrideLocked(command);
}

std::string SyncServer::TargetHealthMetricsText() const {
  // Rendered from shared immutable reports, outside the hub's lock.
  const std::vector<DataPlaneTargetHealth> reports = TargetHealth();
  struct Row {
    const std::string* upstream;
    const std::string* target;
    const std::string* node;
    bool up;
  };
  std::vector<Row> rows;
  for (const DataPlaneTargetHealth& dp : reports) {
    for (const TargetHealthEntry& t : *dp.targets) {
      const bool up = t.health == kHealthHealthy || t.health == kHealthChecksOff;
      // The name, as Kong's upstream_target_health labels it; the id from a DP that sent none.
      rows.push_back({t.upstream_name.empty() ? &t.upstream_id : &t.upstream_name, &t.target, &dp.node_id, up});
    }
  }
  auto key = [](const Row& r) { return std::tie(*r.upstream, *r.target, *r.node); };
  std::sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) { return key(a) < key(b); });
  rows.erase(std::unique(rows.begin(), rows.end(), [&](const Row& a, const Row& b) { return key(a) == key(b); }),
             rows.end());
  std::string out =
      "# HELP portico_upstream_target_health Target health as each connected data plane reports it: 1 when it "
      "takes traffic there (HEALTHY or HEALTHCHECKS_OFF), 0 when UNHEALTHY or DNS_ERROR\n"
      "# TYPE portico_upstream_target_health gauge\n";
  for (const Row& r : rows) {
    absl::StrAppend(&out, "portico_upstream_target_health{upstream=\"", EscapeLabelValue(*r.upstream),
                    "\",target=\"", EscapeLabelValue(*r.target), "\",data_plane=\"", EscapeLabelValue(*r.node),
                    "\"} ", r.up ? "1" : "0", "\n");
  }
  return out;
}

std::string SyncServer::metrics_text() const { return impl_->registry_->Render() + TargetHealthMetricsText(); }

void SyncServer::Stop() { impl_->Stop(); }

}  // namespace portico::cp
