#include "control_plane/sync/sync_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/file.h"
#include "common/base/log.h"
#include "common/metrics/metrics.h"
#include "common/snapshot/snapshot.h"
#include "common/tls/tls_files.h"
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

// What gRPC's file watcher reads: the cluster material as the last successful load saw it. Each
// generation's cert, key and CA live in memory files (memfd, never on disk); a private folder
// holds only symlinks to them (gen-N/{cert,key,ca}.pem -> /proc/self/fd/K) and `current`, which
// one rename switches to the new generation, so the watcher never pairs a cert of one generation
// with a key of another. A crash leaves at most dangling symlinks, no key material. SIGHUP
// decides when the material changes; the operator's files are read only then.
class CertificateStage {
 public:
  ~CertificateStage() {
    for (const auto& [generation, fds] : fds_) RemoveGeneration(generation);
    if (dir_.empty()) return;
    unlink((dir_ + "/current").c_str());
    unlink((dir_ + "/current.tmp").c_str());
    rmdir(dir_.c_str());
  }

  absl::Status Create() {
    const char* tmp = std::getenv("TMPDIR");
    const std::string base = tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
    RemoveStagesOfDeadProcesses(base);
    std::string pattern = absl::StrCat(base, "/", kStagePrefix, getpid(), "-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      return absl::UnavailableError(absl::StrCat("cannot create a private folder for the cluster certificates (",
                                                 pattern, "): ", std::strerror(errno)));
    }
    dir_ = pattern;  // mode 0700 (mkdtemp)
    return absl::OkStatus();
  }

  std::string CertPath() const { return dir_ + "/current/cert.pem"; }
  std::string KeyPath() const { return dir_ + "/current/key.pem"; }
  std::string CaPath() const { return dir_ + "/current/ca.pem"; }

  absl::Status Write(const TlsMaterial& material) {
    const int generation = ++generation_;
    const std::string name = absl::StrCat("gen-", generation);
    const std::string folder = absl::StrCat(dir_, "/", name);
    if (mkdir(folder.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::UnavailableError(absl::StrCat("mkdir ", folder, ": ", std::strerror(errno)));
    }
    std::vector<int>& fds = fds_[generation];
    const std::pair<const char*, const std::string*> files[] = {
        {"key.pem", &material.key_pem}, {"cert.pem", &material.cert_pem}, {"ca.pem", &material.ca_pem}};
    for (const auto& [file, content] : files) {
      const int fd = memfd_create(file, MFD_CLOEXEC);
      if (fd < 0) {
        RemoveGeneration(generation);
        return absl::UnavailableError(absl::StrCat("memfd_create: ", std::strerror(errno)));
      }
      fds.push_back(fd);
      if (!WriteAll(fd, *content) ||
          symlink(absl::StrCat("/proc/self/fd/", fd).c_str(), absl::StrCat(folder, "/", file).c_str()) != 0) {
        const int error = errno;
        RemoveGeneration(generation);
        return absl::UnavailableError(absl::StrCat("staging ", folder, "/", file, ": ", std::strerror(error)));
      }
    }
    const std::string link_tmp = dir_ + "/current.tmp";
    unlink(link_tmp.c_str());
    if (symlink(name.c_str(), link_tmp.c_str()) != 0 ||
        rename(link_tmp.c_str(), (dir_ + "/current").c_str()) != 0) {
      const int error = errno;
      RemoveGeneration(generation);
      return absl::UnavailableError(absl::StrCat("switching ", dir_, "/current: ", std::strerror(error)));
    }
    // The generation before the previous one is no longer read by anyone.
    RemoveGeneration(generation - 2);
    return absl::OkStatus();
  }

 private:
  static constexpr char kStagePrefix[] = "portico-cp-cluster-";

  // A CP that was killed leaves its folder (symlinks only); the next CP on the host removes the
  // folders whose process is gone.
  static void RemoveStagesOfDeadProcesses(const std::string& base) {
    DIR* dir = opendir(base.c_str());
    if (dir == nullptr) return;
    while (dirent* entry = readdir(dir)) {
      absl::string_view name = entry->d_name;
      if (!absl::ConsumePrefix(&name, kStagePrefix)) continue;
      const size_t dash = name.find('-');
      int pid = 0;
      if (dash == absl::string_view::npos || !absl::SimpleAtoi(name.substr(0, dash), &pid) || pid <= 0) continue;
      if (kill(pid, 0) == 0 || errno != ESRCH) continue;
      const std::string folder = absl::StrCat(base, "/", entry->d_name);
      // Only our own private folders: in a shared $TMPDIR another user could plant a look-alike.
      struct stat info;
      if (lstat(folder.c_str(), &info) != 0 || !S_ISDIR(info.st_mode) || info.st_uid != geteuid() ||
          (info.st_mode & 0777) != 0700) {
        continue;
      }
      std::error_code ignored;
      // Only symlinks and folders: remove_all does not follow symlinks.
      std::filesystem::remove_all(folder, ignored);
    }
    closedir(dir);
  }

  static bool WriteAll(int fd, absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = write(fd, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  void RemoveGeneration(int generation) {
    auto it = fds_.find(generation);
    if (it == fds_.end()) return;
    const std::string folder = absl::StrCat(dir_, "/gen-", generation);
    for (const char* file : {"/key.pem", "/cert.pem", "/ca.pem"}) unlink((folder + file).c_str());
    rmdir(folder.c_str());
    for (int fd : it->second) close(fd);
    fds_.erase(it);
  }

  std::string dir_;
  int generation_ = 0;
  std::map<int, std::vector<int>> fds_;  // generation -> its memory files
};

SnapshotBuilder::Options BuilderOptions(const SyncServerOptions& options) {
  SnapshotBuilder::Options out;
  out.debounce_quiet = options.debounce_quiet;
  out.debounce_max = options.debounce_max;
  out.debounce_first = options.debounce_first;
  out.chunk_bytes = options.chunk_bytes;
  out.read_changes = options.read_changes;
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

  absl::Status ReloadCertificates();

  const SyncServerOptions options_;
  const Clock& clock_;
  // notAfter of the certificate in use; shared with the metric's callback, which may outlive us.
  std::shared_ptr<std::atomic<int64_t>> cert_not_after_ = std::make_shared<std::atomic<int64_t>>(0);
  std::unique_ptr<Registry> own_registry_;
  Registry* registry_;
  SyncMetrics metrics_;
  SyncHub hub_;              // holds a reference to builder_, used only once both exist
  SnapshotBuilder builder_;  // destroyed first: its thread publishes into hub_

 private:
  void TimerLoop();

  std::mutex reload_mu_;  // one reload at a time
  CertificateStage stage_;
  std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider> certificate_provider_;
  std::unique_ptr<grpc::Server> server_;
  std::thread timer_;
  bool timer_stop_ = false;  // guarded by hub_.mu
};

absl::Status SyncServer::Impl::Init() {
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(options_.cert_file, options_.key_file, options_.ca_file);
  if (!material.ok()) return material.status();
  if (options_.chunk_bytes == 0 || options_.chunk_bytes > (size_t{3} << 20)) {
    return absl::InvalidArgumentError("chunk_bytes must be in 1..3 MiB");
  }
  if (options_.max_concurrent_full_sends < 1) {
    return absl::InvalidArgumentError("max_concurrent_full_sends must be >= 1");
  }

  // First snapshot, synchronously: a broken store fails the start.
  if (absl::Status s = builder_.Start(); !s.ok()) return s;

  // TLS material through a file-watcher provider over the CP's private copies (CertificateStage),
  // so a SIGHUP reload reaches new handshakes without touching established connections.
  if (absl::Status s = stage_.Create(); !s.ok()) return s;
  if (absl::Status s = stage_.Write(*material); !s.ok()) return s;
  cert_not_after_->store(material->not_after);
  certificate_provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      stage_.KeyPath(), stage_.CertPath(), stage_.CaPath(), kCertificateRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions tls(certificate_provider_);
  tls.watch_root_certs();
  tls.watch_identity_key_cert_pairs();
  tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  registry_->AddCallbackGauge(
      "portico_cluster_certificate_expiry_seconds",
      "notAfter of the cluster certificate this process presents, as Unix time in seconds",
      [not_after = cert_not_after_] { return static_cast<double>(not_after->load()); });
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(options_.listen, grpc::experimental::TlsServerCredentials(tls), &selected_port);
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

absl::Status SyncServer::Impl::ReloadCertificates() {
  std::lock_guard<std::mutex> lock(reload_mu_);
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(options_.cert_file, options_.key_file, options_.ca_file);
  absl::Status s = material.status();
  if (s.ok()) s = stage_.Write(*material);
  if (!s.ok()) {
    PORTICO_LOG(kError, kLog, "cluster certificate reload failed, keeping the current one: ", s.message());
    return s;
  }
  cert_not_after_->store(material->not_after);
  absl::StatusOr<int> cas = CountCertificates(material->ca_pem, options_.ca_file);
  absl::StatusOr<CertificateInfo> info = InspectCertificate(material->cert_pem);
  PORTICO_LOG(kInfo, kLog, "cluster certificate reloaded from ", options_.cert_file, " (serial ",
              info.ok() ? info->serial_hex : "?", ", notAfter ", material->not_after, ") with ",
              cas.ok() ? *cas : 0, " CA certificate(s) from ", options_.ca_file,
              "; new connections use it within ", kCertificateRefreshSeconds, " s");
  return absl::OkStatus();
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

absl::Status SyncServer::ReloadCertificates() { return impl_->ReloadCertificates(); }

int64_t SyncServer::certificate_not_after() const { return impl_->cert_not_after_->load(); }

void SyncServer::SetOnDataPlanesChanged(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(impl_->hub_.mu);
  impl_->hub_.on_data_planes_changed = std::move(callback);
}

void SyncServer::Stop() { impl_->Stop(); }

}  // namespace portico::cp
