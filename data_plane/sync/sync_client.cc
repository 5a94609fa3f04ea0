#include "data_plane/sync/sync_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>

#include <sys/stat.h>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "common/snapshot/snapshot.h"
#include "common/tls/tls_files.h"
#include "data_plane/sync/cp_targets.h"
#include "data_plane/sync/snapshot_cache.h"
#include "data_plane/sync/sync_client_test_hooks.h"
#include "portico/sync/v1/sync.grpc.pb.h"

namespace portico::dp {
namespace {

using SteadyClock = std::chrono::steady_clock;
using sync::v1::CpMessage;
using sync::v1::DpMessage;
using Stream = grpc::ClientReaderWriter<DpMessage, CpMessage>;

constexpr char kLog[] = "dp-sync";
constexpr uint32_t kProtocolVersion = 1;
constexpr int kMaxMessageBytes = 4 << 20;
constexpr size_t kMaxNackText = 4096;
constexpr double kBackoffMultiplier = 1.6;
constexpr double kJitter = 0.2;
// How long Finish() may wait for the CP's status once the stream's reads and writes are over;
// then the call is cancelled (a status that never comes must not stop the client for good).
constexpr std::chrono::seconds kFinishGrace{5};
// A health report stops adding entries at about this many bytes of strings (the gRPC message
// limit is 4 MiB; names and targets can be long).
constexpr size_t kMaxHealthReportBytes = size_t{2} << 20;

// Serializes writes from the client and heartbeat threads; no write after WritesDone().
class StreamWriter {
 public:
  explicit StreamWriter(Stream* stream) : stream_(stream) {}
  bool Write(const DpMessage& msg) {
    std::lock_guard<std::mutex> lock(mu_);
    return !closed_ && stream_->Write(msg);
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closed_) stream_->WritesDone();
    closed_ = true;
  }

 private:
  std::mutex mu_;
  bool closed_ = false;
  Stream* stream_;
};

// What ended one stream, and so how long to wait before the next.
struct SessionOutcome {
  bool answered = false;         // HelloReply received
  bool refused = false;          // the CP will keep refusing: retry slowly
  uint32_t retry_after_s = 0;    // from a Goaway, 0 = none
  std::string why;
};

double NowUnixSeconds() { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); }

// "10.0.0.2:8005" or, for a name, "10.0.0.2:8005 (cp.example:8005)".
std::string Describe(const DialTarget& t) {
  return t.entry == t.address ? t.address : absl::StrCat(t.address, " (", t.entry, ")");
}

}  // namespace

class SyncClient::Impl {
 public:
  Impl(SyncClientOptions options, ApplyConfigFn apply, const SyncClientTestHooks* test_hooks, TlsMaterial tls,
       std::string node_id)
      : options_(std::move(options)),
        apply_(std::move(apply)),
        test_hooks_(test_hooks),
        tls_(std::move(tls)),
        node_id_(std::move(node_id)),
        started_(SteadyClock::now()) {}

  void Run();
  void Stop();
  // options_.resolve (or getaddrinfo) on a thread of its own; Cancelled as soon as Stop() is called.
  absl::StatusOr<std::vector<std::string>> ResolveBounded(const std::string& host);
  void NotifyTargetHealthChanged() {
    bool already = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      already = health_dirty_;
      health_dirty_ = true;
    }
    if (!already) cv_.notify_all();  // a burst of changes wakes the heartbeat thread once
  }
  double LastSyncUnix() const {
    std::lock_guard<std::mutex> lock(mu_);
    return connected_ && in_sync_ ? NowUnixSeconds() : last_sync_unix_;
  }

  const SyncClientOptions options_;
  const ApplyConfigFn apply_;
  const SyncClientTestHooks* const test_hooks_;  // null in production
  const std::string node_id_;
  const SteadyClock::time_point started_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  bool stopping_ = false;
  bool stopped_ = false;
  bool connected_ = false;
  ConfigVersion serving_;
  SyncClientStats stats_;
  grpc::ClientContext* context_ = nullptr;  // the live stream's, for Stop()
  bool in_sync_ = false;         // serving what the CP last offered (no pending or rejected one)
  double last_sync_unix_ = 0;    // see SyncClient::last_sync_unix()
  bool health_dirty_ = false;    // the health view changed since the last heartbeat
  TlsMaterial tls_;              // cluster cert, key and CA for the next connection
  std::unique_ptr<SnapshotCache> cache_;  // set before the thread starts; used on it only
  std::unique_ptr<ControlPlaneRotation> rotation_;  // likewise
  ControlPlaneLink link_;        // the live stream's CP (empty while not connected)

 private:
  SessionOutcome RunSession(const DialTarget& target);
  // The live stream's heartbeats: every `interval`, and early (rate-limited) when the health
  // view changed. Returns when *stop or Stop(), or when a write fails.
  void HeartbeatLoop(std::chrono::seconds interval, StreamWriter* writer, const bool* stop);
  // Fills the heartbeat's health report from options_.target_health: FULL when the view differs
  // from `*last` (sent on this stream), else UNCHANGED.
  void FillHealthReport(sync::v1::Heartbeat* heartbeat, std::vector<TargetHealthView>* last, bool* sent_once);
  void HandleHealthOverride(const sync::v1::HealthOverride& message);
  std::shared_ptr<grpc::Channel> MakeChannel(const DialTarget& target) const;
  // Handles one chunk; may apply, ACK or NACK. Runs on the client thread.
  void HandleChunk(const sync::v1::SnapshotChunk& chunk, StreamWriter* writer);
  // `delta`: the rejected payload was a delta (counted in deltas_rejected too).
  void SendNack(StreamWriter* writer, uint64_t nonce, const ConfigVersion& rejected,
                int code, const std::string& message, bool delta);
  ConfigVersion Serving() const {
    std::lock_guard<std::mutex> lock(mu_);
    return serving_;
  }
  // Sleeps up to `d`; false if Stop() was called.
  bool SleepFor(absl::Duration d);
  // Loads, verifies and applies the cached snapshot, if any. Client thread, before dialling.
  void LoadFromCache();
  void MarkInSync(bool in_sync) {
    std::lock_guard<std::mutex> lock(mu_);
    in_sync_ = in_sync;
    if (in_sync) last_sync_unix_ = NowUnixSeconds();
  }

  // Client-thread state.
  std::unique_ptr<SnapshotAssembler> assembler_;
  uint64_t dropped_nonce_ = 0;  // chunks of an already NACKed snapshot are ignored
  bool has_dropped_nonce_ = false;
  CachedSnapshot receiving_;    // the compressed bytes of the snapshot being received (cache on)
  uint32_t partial_received_ = 0;  // chunks of the incomplete snapshot in progress (0 = none)
  uint32_t partial_count_ = 0;
  uint64_t partial_version_ = 0;
  // What is served, decoded (config + resource index): the base a delta applies to. Set after
  // every successful apply (full snapshot, delta, snapshot cache); config null = nothing.
  DecodedSnapshot held_;
  // The version held_ replaced, when held_ came from a delta (to_held: that delta's changes): the
  // next delta is applied to it in place when nothing else holds it any more (RecycledBase).
  RecycledBase previous_;
  // Hands `snapshot`'s config and index to options_.release (or frees them here), except what
  // held_ shares.
  void Release(DecodedSnapshot snapshot);
  // Releases what previous_ holds and empties it.
  void DropPrevious() {
    Release(std::move(previous_.snapshot));
    previous_ = RecycledBase();
  }
  // After a full snapshot (or the cache): previous_ becomes a copy of held_ with no change to it,
  // so that the first delta is applied in place too. The copy (about 50 ms at 100,000 routes)
  // is made here, after the ACK, instead of when the delta waits for it.
  void KeepCopyForTheNextDelta();
};

void SyncClient::Impl::KeepCopyForTheNextDelta() {
  if (held_.config == nullptr || held_.resources == nullptr) return;
  previous_.snapshot.version = held_.version;
  previous_.snapshot.config = std::make_shared<ConfigSet>(*held_.config);  // non-const: DecodeDelta's contract
  previous_.snapshot.resources = std::make_shared<ResourceIndex>(*held_.resources);
  previous_.to_held = std::make_shared<const ChangeList>();
}

void SyncClient::Impl::Release(DecodedSnapshot snapshot) {
  if (!options_.release) return;  // freed here, at the end of this function
  if (snapshot.config != nullptr && snapshot.config != held_.config) options_.release(std::move(snapshot.config));
  if (snapshot.resources != nullptr && snapshot.resources != held_.resources) {
    options_.release(std::move(snapshot.resources));
  }
}

std::shared_ptr<grpc::Channel> SyncClient::Impl::MakeChannel(const DialTarget& target) const {
  grpc::SslCredentialsOptions ssl;
  {
    std::lock_guard<std::mutex> lock(mu_);  // the material of the latest reload
    ssl.pem_root_certs = tls_.ca_pem;
    ssl.pem_private_key = tls_.key_pem;
    ssl.pem_cert_chain = tls_.cert_pem;
  }
  grpc::ChannelArguments args;
  // SYNC-PROTOCOL §5.11: DP keepalive 20 s / 10 s, pings allowed without calls or data.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // A fresh subchannel per attempt: our backoff, not the channel's, paces reconnects.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // The address is dialled; the certificate must match the entry's host (or --cluster-server-name).
  args.SetSslTargetNameOverride(target.server_name);
  return grpc::CreateCustomChannel(target.grpc_target, grpc::SslCredentials(ssl), args);
}

bool SyncClient::Impl::SleepFor(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(absl::ToInt64Milliseconds(d)),
               [&] { return stopping_; });
  return !stopping_;
}

void SyncClient::Impl::LoadFromCache() {
  absl::StatusOr<LoadedSnapshot> loaded = cache_->Load();
  if (!loaded.ok()) {
    PORTICO_LOG(kInfo, kLog, "snapshot cache ", cache_->dir(), ": ", loaded.status().message(),
                "; starting without config");
    return;
  }
  const ConfigVersion& version = loaded->decoded.version;
  const auto start = SteadyClock::now();
  absl::Status applied = apply_(loaded->decoded.config, version);
  if (!applied.ok()) {
    PORTICO_LOG(kError, kLog, "cached config version ", version.version, " from ", loaded->file,
                " does not apply: ", applied.ToString(), "; starting without config");
    return;
  }
  const auto elapsed = SteadyClock::now() - start;
  double synced_at = 0;
  struct stat st;
  if (::stat(loaded->file.c_str(), &st) == 0) synced_at = static_cast<double>(st.st_mtime);
  {
    std::lock_guard<std::mutex> lock(mu_);
    serving_ = version;
    stats_.loaded_from_cache = true;
    last_sync_unix_ = synced_at;
  }
  PORTICO_LOG(kInfo, kLog, "serving cached config version ", version.version, " hash ",
              ToHex(version.hash).substr(0, 12), " from ", loaded->file, " (",
              loaded->decoded.config->services.size(), " services, ",
              loaded->decoded.config->routes.size(), " routes, applied in ",
              std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), " ms)");
  held_ = std::move(loaded->decoded);
  if (!options_.incremental) held_.resources.reset();  // bodies are kept only as a delta base
  if (options_.incremental) KeepCopyForTheNextDelta();
}

absl::StatusOr<std::vector<std::string>> SyncClient::Impl::ResolveBounded(const std::string& host) {
  // The lookup may outlive this call (a stuck resolver): it shares this state, never `this`.
  struct Lookup {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    absl::StatusOr<std::vector<std::string>> result;
  };
  auto lookup = std::make_shared<Lookup>();
  std::thread([lookup, host, resolve = options_.resolve] {
    absl::StatusOr<std::vector<std::string>> result = resolve ? resolve(host) : ResolveHostAddresses(host);
    std::lock_guard<std::mutex> lock(lookup->mu);
    lookup->result = std::move(result);
    lookup->done = true;
    lookup->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(lookup->mu);
  while (!lookup->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return lookup->done; })) {
    std::lock_guard<std::mutex> stop_lock(mu_);
    if (stopping_) return absl::CancelledError("stopping");
  }
  return std::move(lookup->result);
}

void SyncClient::Impl::Run() {
  if (cache_) LoadFromCache();
  absl::BitGen rng;
  absl::Duration backoff = options_.backoff_initial;
  absl::StatusOr<DialTarget> target = rotation_->Next();
  if (absl::IsCancelled(target.status())) return;  // Stop() during the lookup
  std::string last_address;  // of the attempt before
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    SessionOutcome outcome;
    if (target.ok()) {
      if (!last_address.empty() && target->address != last_address) {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.control_plane_moves;
      }
      last_address = target->address;
      outcome = RunSession(*target);
    } else {
      outcome.why = std::string(target.status().message());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      connected_ = false;
      if (stopping_) return;
    }
    absl::Duration delay;
    if (outcome.refused) {
      delay = options_.refused_retry;
    } else {
      if (outcome.answered) backoff = options_.backoff_initial;  // reset after a good Hello
      delay = backoff * absl::Uniform(rng, 1.0 - kJitter, 1.0 + kJitter);
      backoff = std::min(backoff * kBackoffMultiplier, options_.backoff_max);
    }
    // The CP's retry_after_s is a floor; the log names the delay actually waited.
    std::string asked;
    if (outcome.retry_after_s > 0 && absl::Seconds(outcome.retry_after_s) > delay) {
      delay = absl::Seconds(outcome.retry_after_s);
      asked = absl::StrCat(" (the control plane asked for ", outcome.retry_after_s, "s)");
    }
    const std::string from = target.ok() ? Describe(*target) : std::string();
    absl::StatusOr<DialTarget> next = rotation_->Next();
    if (absl::IsCancelled(next.status())) return;  // Stop() during the lookup
    // Where the next attempt goes: a move to another CP is named.
    std::string then;
    if (!next.ok()) {
      then = absl::StrCat("; next attempt in ", absl::FormatDuration(delay), asked, " (", next.status().message(), ")");
    } else if (target.ok() && next->address == target->address) {
      then = absl::StrCat("; reconnecting in ", absl::FormatDuration(delay), asked);
    } else {
      then = absl::StrCat("; moving to control plane ", Describe(*next), " in ", absl::FormatDuration(delay), asked);
    }
    if (outcome.refused) {
      PORTICO_LOG(kError, kLog, "control plane ", from, " refused this data plane (", node_id_, "): ", outcome.why, then);
    } else if (target.ok()) {
      PORTICO_LOG(kWarn, kLog, "stream to ", from, " ended: ", outcome.why, then);
    } else {
      PORTICO_LOG(kWarn, kLog, outcome.why, then);
    }
    if (!SleepFor(delay)) return;
    target = std::move(next);
  }
}

SessionOutcome SyncClient::Impl::RunSession(const DialTarget& target) {
  SessionOutcome outcome;
  std::shared_ptr<grpc::Channel> channel = MakeChannel(target);
  std::unique_ptr<sync::v1::ConfigSync::Stub> stub = sync::v1::ConfigSync::NewStub(channel);
  grpc::ClientContext context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return outcome;
    context_ = &context;
    ++stats_.connect_attempts;
  }
  // Watchdog: cancels the stream when the CP answers the Hello with nothing in time. Started
  // before the stream: creating it already waits for the connection (TCP, TLS, HTTP/2).
  bool hello_settled = false;  // guarded by mu_: HelloReply or Goaway seen, or the stream ended
  bool hello_timed_out = false;  // guarded by mu_
  std::thread hello_watchdog([this, &context, &hello_settled, &hello_timed_out] {
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.hello_reply_timeout)),
                     [&] { return hello_settled || stopping_; })) {
      return;
    }
    hello_timed_out = true;
    context.TryCancel();
  });
  auto settle_hello = [this, &hello_settled] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      hello_settled = true;
    }
    cv_.notify_all();
  };
  std::unique_ptr<Stream> stream = stub->Stream(&context);
  StreamWriter writer(stream.get());

  DpMessage hello_msg;
  sync::v1::Hello* hello = hello_msg.mutable_hello();
  hello->set_node_id(test_hooks_ != nullptr ? test_hooks_->HelloNodeId(node_id_) : node_id_);
  hello->set_protocol_version(kProtocolVersion);
  hello->set_dp_build(options_.dp_build);
  hello->add_capabilities("enc.gzip");
  if (options_.incremental) hello->add_capabilities("delta.v1");  // SnapshotChunk.base set: a ConfigDelta from that version
  ConfigVersion serving = Serving();
  if (!serving.empty()) ToVersionRef(serving, hello->mutable_serving());
  hello->set_hostname(options_.hostname);
  hello->mutable_labels()->insert(options_.labels.begin(), options_.labels.end());
  hello->set_max_snapshot_bytes(options_.max_snapshot_bytes);
  for (const std::string& plugin : options_.plugins) hello->add_plugins(plugin);

  std::thread heartbeat;
  bool heartbeat_stop = false;  // guarded by mu_
  assembler_.reset();
  has_dropped_nonce_ = false;
  receiving_ = CachedSnapshot();
  MarkInSync(false);

  if (writer.Write(hello_msg)) {
    CpMessage msg;
    while (stream->Read(&msg)) {
      switch (msg.msg_case()) {
        case CpMessage::kHelloReply: {
          if (outcome.answered) break;
          outcome.answered = true;
          settle_hello();
          const sync::v1::HelloReply& reply = msg.hello_reply();
          if (reply.protocol_version() != kProtocolVersion) {
            PORTICO_LOG(kWarn, kLog, "control plane speaks protocol ", reply.protocol_version());
          }
          {
            std::lock_guard<std::mutex> lock(mu_);
            connected_ = true;
            ++stats_.sessions;
            link_ = ControlPlaneLink{target.entry, target.address, reply.cp_id()};
          }
          PORTICO_LOG(kInfo, kLog, "connected to control plane ", reply.cp_id(), " at ", Describe(target), " as ",
                      node_id_, "; latest version ", reply.latest().version());
          const auto interval = std::chrono::seconds(std::max<uint32_t>(1, reply.heartbeat_interval_s()));
          heartbeat = std::thread(
              [this, interval, &writer, &heartbeat_stop] { HeartbeatLoop(interval, &writer, &heartbeat_stop); });
          break;
        }
        case CpMessage::kUpToDate: {
          std::lock_guard<std::mutex> lock(mu_);
          ++stats_.up_to_date;
          in_sync_ = true;
          last_sync_unix_ = NowUnixSeconds();
          PORTICO_LOG(kInfo, kLog, "control plane says version ", msg.up_to_date().latest().version(),
                      " is up to date");
          break;
        }
        case CpMessage::kChunk:
          HandleChunk(msg.chunk(), &writer);
          break;
        case CpMessage::kHealthOverride:
          HandleHealthOverride(msg.health_override());
          break;
        case CpMessage::kGoaway: {
          settle_hello();
          const sync::v1::Goaway& goaway = msg.goaway();
          outcome.why = absl::StrCat("goaway ", sync::v1::Goaway::Code_Name(goaway.code()), ": ",
                                     goaway.reason());
          outcome.retry_after_s = goaway.retry_after_s();
          if (goaway.code() == sync::v1::Goaway::INCOMPATIBLE ||
              goaway.code() == sync::v1::Goaway::UNAUTHORIZED ||
              goaway.code() == sync::v1::Goaway::DUPLICATE_NODE) {
            outcome.refused = true;
          }
          PORTICO_LOG(kWarn, kLog, "control plane says ", outcome.why);
          writer.Close();  // let the CP close the stream
          break;
        }
        default:
          break;
      }
    }
  }
  if (partial_received_ > 0) {
    PORTICO_LOG(kWarn, kLog, "stream ended after ", partial_received_, " of ", partial_count_,
                " chunks of config version ", partial_version_,
                "; discarded the partial snapshot, still serving version ", Serving().version);
    partial_received_ = 0;
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.partial_discarded;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    heartbeat_stop = true;
    connected_ = false;
    link_ = ControlPlaneLink();
    if (in_sync_) last_sync_unix_ = NowUnixSeconds();  // in sync up to this moment
    in_sync_ = false;
  }
  cv_.notify_all();
  if (heartbeat.joinable()) heartbeat.join();
  settle_hello();
  hello_watchdog.join();
  bool finished = false;  // guarded by mu_
  std::thread finish_watchdog([this, &context, &finished] {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, kFinishGrace, [&] { return finished || stopping_; })) context.TryCancel();
  });
  grpc::Status status = stream->Finish();
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished = true;
  }
  cv_.notify_all();
  finish_watchdog.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    context_ = nullptr;
  }
  if (status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
      status.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
      status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    outcome.refused = true;
  }
  if (outcome.refused) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.refusals;
  }
  if (outcome.why.empty()) {
    bool timed_out = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      timed_out = hello_timed_out;
    }
    outcome.why = timed_out ? absl::StrCat("no answer to Hello within ", absl::FormatDuration(options_.hello_reply_timeout),
                                           "; stream cancelled")
                  : status.ok() ? std::string("closed by the control plane")
                                : absl::StrCat("status ", status.error_code(), ": ", status.error_message());
  }
  return outcome;
}

void SyncClient::Impl::HeartbeatLoop(std::chrono::seconds interval, StreamWriter* writer, const bool* stop) {
  const bool reports = static_cast<bool>(options_.target_health);
  const auto gap = std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.health_heartbeat_min_gap));
  std::vector<TargetHealthView> last_view;  // the last FULL view sent on this stream
  bool view_sent = false;
  auto last_sent = SteadyClock::now();
  auto next_regular = last_sent + interval;
  bool send_now = reports;  // the view at once: the CP knows it right after the connect
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (!send_now) {
        if (*stop || stopping_) return;
        const auto now = SteadyClock::now();
        if (now >= next_regular) break;
        const bool early = reports && health_dirty_;
        if (early && now >= last_sent + gap) break;
        cv_.wait_until(lock, early ? std::min(next_regular, last_sent + gap) : next_regular);
      }
      if (*stop || stopping_) return;
      health_dirty_ = false;  // a change from here on asks for the next one
    }
    send_now = false;
    DpMessage msg;
    sync::v1::Heartbeat* hb = msg.mutable_heartbeat();
    ConfigVersion now_serving = Serving();
    if (!now_serving.empty()) ToVersionRef(now_serving, hb->mutable_serving());
    hb->set_uptime_s(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(SteadyClock::now() - started_).count()));
    if (options_.requests_total) hb->set_requests_total(options_.requests_total());
    if (reports) FillHealthReport(hb, &last_view, &view_sent);
    if (!writer->Write(msg)) return;
    last_sent = SteadyClock::now();
    next_regular = last_sent + interval;
  }
}

void SyncClient::Impl::FillHealthReport(sync::v1::Heartbeat* heartbeat, std::vector<TargetHealthView>* last,
                                        bool* sent_once) {
  std::vector<TargetHealthView> view = options_.target_health();  // no lock held
  auto key = [](const TargetHealthView& v) { return std::tie(v.upstream_id, v.upstream_name, v.target, v.health); };
  std::sort(view.begin(), view.end(), [&](const auto& a, const auto& b) { return key(a) < key(b); });
  const bool same = *sent_once && view.size() == last->size() &&
                    std::equal(view.begin(), view.end(), last->begin(),
                               [&](const auto& a, const auto& b) { return key(a) == key(b); });
  if (same) {
    heartbeat->set_health_report(sync::v1::Heartbeat::UNCHANGED);
    return;
  }
  heartbeat->set_health_report(sync::v1::Heartbeat::FULL);
  size_t bytes = 0;
  for (const TargetHealthView& v : view) {
    const size_t entry_bytes = v.upstream_id.size() + v.upstream_name.size() + v.target.size() + v.health.size() + 16;
    if (static_cast<size_t>(heartbeat->target_health_size()) >= options_.max_target_health_entries ||
        bytes + entry_bytes > kMaxHealthReportBytes) {
      heartbeat->set_target_health_truncated(true);
      break;
    }
    bytes += entry_bytes;
    sync::v1::TargetHealth* t = heartbeat->add_target_health();
    t->set_upstream_id(v.upstream_id);
    t->set_upstream_name(v.upstream_name);
    t->set_target(v.target);
    t->set_health(v.health);
  }
  if (heartbeat->target_health_truncated()) {  // sent only when the view changes (<= 1/s)
    PORTICO_LOG(kWarn, kLog, "target health report truncated: ", heartbeat->target_health_size(), " of ",
                view.size(), " entries sent to the control plane");
  }
  *last = std::move(view);
  *sent_once = true;
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.health_reports;
}

void SyncClient::Impl::HandleHealthOverride(const sync::v1::HealthOverride& message) {
  HealthOverrideCommand command;
  command.upstream_id = message.upstream_id();
  command.upstream_name = message.upstream_name();
  command.target = message.target();
  command.healthy = message.healthy();
  const absl::Status status = options_.on_health_override
                                  ? options_.on_health_override(command)
                                  : absl::UnimplementedError("this data plane has no target health registry");
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.health_overrides;
    if (!status.ok()) ++stats_.health_override_failures;
    if (status.ok()) health_dirty_ = true;  // tell the CP the new view soon
  }
  if (status.ok()) {
    cv_.notify_all();
    PORTICO_LOG(kInfo, kLog, "health override ", message.id(), " from the control plane: target ", command.target,
                " of upstream ", command.upstream_name, " (", command.upstream_id, ") set ",
                command.healthy ? "healthy" : "unhealthy");
  } else {
    PORTICO_LOG(kWarn, kLog, "health override ", message.id(), " from the control plane (target ", command.target,
                " of upstream ", command.upstream_name, ", ", command.healthy ? "healthy" : "unhealthy",
                ") not applied: ", status.ToString());
  }
}

void SyncClient::Impl::SendNack(StreamWriter* writer, uint64_t nonce,
                                const ConfigVersion& rejected, int code,
                                const std::string& message, bool delta) {
  DpMessage msg;
  sync::v1::Nack* nack = msg.mutable_nack();
  nack->set_nonce(nonce);
  ToVersionRef(rejected, nack->mutable_rejected());
  ConfigVersion serving = Serving();
  if (!serving.empty()) ToVersionRef(serving, nack->mutable_serving());
  nack->set_code(static_cast<sync::v1::Nack::Code>(code));
  nack->set_message(message.substr(0, kMaxNackText));
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.snapshots_rejected;
    if (delta) ++stats_.deltas_rejected;
    in_sync_ = false;
  }
  PORTICO_LOG(kError, kLog, "rejecting ", delta ? "delta to " : "", "config version ", rejected.version, " (",
              sync::v1::Nack::Code_Name(static_cast<sync::v1::Nack::Code>(code)), "): ", message,
              "; still serving version ", serving.version);
  dropped_nonce_ = nonce;
  has_dropped_nonce_ = true;
  writer->Write(msg);
}

void SyncClient::Impl::HandleChunk(const sync::v1::SnapshotChunk& chunk, StreamWriter* writer) {
  if (has_dropped_nonce_ && chunk.nonce() == dropped_nonce_) return;
  if (!assembler_) {
    SnapshotLimits limits;
    limits.max_snapshot_bytes = options_.max_snapshot_bytes;
    assembler_ = std::make_unique<SnapshotAssembler>(limits);
  }
  if (chunk.index() == 0) MarkInSync(false);
  absl::Status added = assembler_->Add(chunk);
  if (!added.ok()) {
    receiving_ = CachedSnapshot();
    partial_received_ = 0;
    SendNack(writer, assembler_->nonce(), assembler_->target(), NackCodeFor(added),
             added.ToString(), chunk.has_base());
    return;
  }
  // The bytes of a full snapshot are persisted as received; a delta is persisted as the full
  // payload it yields (below), so its bytes are not kept.
  if (cache_) {
    if (chunk.index() == 0) {
      receiving_ = CachedSnapshot();
      if (!chunk.has_base()) {
        receiving_.version = assembler_->target();
        receiving_.gzip = chunk.encoding() == sync::v1::SnapshotChunk::GZIP;
        receiving_.uncompressed_size = chunk.uncompressed_size();
        receiving_.compressed.reserve(static_cast<size_t>(chunk.compressed_size()));
      }
    }
    if (!chunk.has_base()) receiving_.compressed.append(chunk.data());
  }
  if (!assembler_->complete()) {
    partial_received_ = chunk.index() + 1;
    partial_count_ = chunk.count();
    partial_version_ = chunk.target().version();
    return;
  }
  partial_received_ = 0;
  CachedSnapshot received = std::move(receiving_);
  receiving_ = CachedSnapshot();
  const uint64_t nonce = assembler_->nonce();
  const ConfigVersion target = assembler_->target();
  const bool is_delta = assembler_->delta();
  const ConfigVersion base = assembler_->base();
  const uint64_t payload_bytes = chunk.compressed_size();
  const auto start = SteadyClock::now();  // decode + verify + apply
  const ConfigVersion current = Serving();
  absl::StatusOr<DecodedSnapshot> decoded;
  bool in_place = false;
  if (!is_delta) {
    decoded = assembler_->Finish();
  } else if (!current.empty() && target == current && held_.config != nullptr) {
    // A delta to what is served already (whatever its base): ACKed like a full snapshot of it.
    assembler_->Reset();
    decoded = held_;
  } else if (held_.config == nullptr || held_.version != base) {
    assembler_->Reset();
    SendNack(writer, nonce, target, sync::v1::Nack::INTERNAL,
             absl::StrCat("delta from version ", base.version, " (hash ", ToHex(base.hash).substr(0, 12),
                          ") does not apply: its base is not the served version ",
                          held_.config == nullptr ? std::string("(none)")
                                                  : absl::StrCat(held_.version.version, " (hash ",
                                                                 ToHex(held_.version.hash).substr(0, 12), ")")),
             true);
    return;
  } else {
    const ConfigSet* recyclable = previous_.snapshot.config.get();
    decoded = assembler_->FinishDelta(held_, &previous_);  // the result's hash is verified against target
    in_place = decoded.ok() && recyclable != nullptr && decoded->config.get() == recyclable;
    if (previous_.spoiled) DropPrevious();  // modified, then the delta failed
  }
  const auto decode_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
  if (!decoded.ok()) {
    SendNack(writer, nonce, target, NackCodeFor(decoded.status()),
             decoded.status().ToString(), is_delta);
    return;
  }
  bool persisted = false;
  const bool changed = decoded->version != current;
  if (changed) {
    if (!current.empty() && current.epoch == target.epoch && target.version < current.version) {
      SendNack(writer, nonce, target, sync::v1::Nack::INTERNAL,
               absl::StrCat("version ", target.version, " is older than the served version ",
                            current.version, " of the same epoch"),
               is_delta);
      return;
    }
    const absl::Status applied = is_delta && options_.apply_delta && decoded->upserted != nullptr
                                     ? options_.apply_delta(decoded->config, decoded->version, *decoded->upserted)
                                     : apply_(decoded->config, decoded->version);
    if (!applied.ok()) {
      SendNack(writer, nonce, target,
               applied.code() == absl::StatusCode::kInvalidArgument ? sync::v1::Nack::VALIDATION
                                                                     : sync::v1::Nack::BUILD,
               std::string(applied.message()), is_delta);
      return;
    }
    if (options_.on_applied) options_.on_applied(absl::FromChrono(SteadyClock::now() - start));
    // Persist only after a successful apply: a bad snapshot never replaces the last good file.
    if (cache_) {
      if (is_delta) {  // the full config it yields, uncompressed (the loader takes NONE)
        received.version = decoded->version;
        received.gzip = false;
        received.compressed = SerializeFullPayload(decoded->version, *decoded->resources);
        received.uncompressed_size = received.compressed.size();
      }
      absl::Status stored = received.compressed.empty()
                                ? absl::InternalError("cannot serialize the full payload")
                                : cache_->Store(received);
      persisted = stored.ok();
      if (!stored.ok()) {
        PORTICO_LOG(kError, kLog, "cannot persist config version ", target.version, " to ",
                    cache_->dir(), ": ", stored.ToString(), " (still serving it)");
      }
      std::lock_guard<std::mutex> lock(mu_);
      ++(stored.ok() ? stats_.persisted : stats_.persist_failures);
    }
  }
  const auto apply_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
  {
    std::lock_guard<std::mutex> lock(mu_);
    serving_ = decoded->version;
    ++stats_.snapshots_applied;
    if (is_delta) ++stats_.deltas_applied;
    if (in_place) ++stats_.deltas_in_place;
    in_sync_ = true;
    last_sync_unix_ = NowUnixSeconds();
  }
  const size_t changes = decoded->change_count;
  DpMessage msg;
  sync::v1::Ack* ack = msg.mutable_ack();
  ack->set_nonce(nonce);
  ToVersionRef(decoded->version, ack->mutable_serving());
  ack->set_apply_ms(static_cast<uint32_t>(apply_ms));
  ack->set_persisted(persisted);
  writer->Write(msg);
  // After the ACK: what is no longer needed (the previous version, or a second copy of the
  // served one, which the runtime does not use) is freed here, tens of ms at 100,000 routes,
  // unless options_.release takes it.
  const bool replace = changed || held_.config == nullptr;
  DecodedSnapshot unused = replace ? std::exchange(held_, *std::move(decoded)) : *std::move(decoded);
  if (replace) {
    // A version kept to be brought forward and not used (the next delta was copied instead):
    // one step behind now, so released.
    DropPrevious();
    if (is_delta && options_.incremental && held_.changes != nullptr && unused.config != nullptr &&
        unused.resources != nullptr) {
      previous_.snapshot = std::move(unused);
      previous_.to_held = held_.changes;
    } else if (!is_delta && options_.incremental) {
      KeepCopyForTheNextDelta();
    }
  }
  // (A delta to the served version decodes as held_ itself: not released.)
  Release(std::move(unused));
  // The bodies are kept only as the base of the next delta.
  if (!options_.incremental) held_.resources.reset();
  if (is_delta && changed) {
    PORTICO_LOG(kInfo, kLog, "applied delta from version ", base.version, " to ", target.version, " (", changes,
                " changes, ", absl::StrFormat("%.1f", static_cast<double>(payload_bytes) / 1024.0), " KiB) in ",
                apply_ms, " ms (decoded in ", decode_ms, " ms)");
  } else {
    PORTICO_LOG(kInfo, kLog, "serving config version ", target.version, " hash ",
                ToHex(target.hash).substr(0, 12), " (", held_.config->services.size(),
                " services, ", held_.config->routes.size(), " routes, applied in ", apply_ms, " ms)");
  }
}

void SyncClient::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SyncClient::SyncClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SyncClient::~SyncClient() { Stop(); }

absl::StatusOr<std::unique_ptr<SyncClient>> SyncClient::Start(SyncClientOptions options, ApplyConfigFn apply,
                                                              const SyncClientTestHooks* test_hooks) {
  if (!apply) return absl::InvalidArgumentError("apply function is required");
  if (options.control_plane.empty()) return absl::InvalidArgumentError("control_plane is required");
  absl::StatusOr<std::vector<ControlPlaneEntry>> entries = ParseControlPlaneList(options.control_plane);
  if (!entries.ok()) return absl::InvalidArgumentError(absl::StrCat("control_plane: ", entries.status().message()));
  absl::StatusOr<TlsMaterial> tls = LoadTlsMaterial(options.cert_file, options.key_file, options.ca_file);
  if (!tls.ok()) return tls.status();
  absl::StatusOr<CertificateInfo> info = InspectCertificate(tls->cert_pem);
  if (!info.ok()) return info.status();
  if (info->node_id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.cert_file, " has no data plane identity (URI SAN ", kDataPlaneUriPrefix, "<node_id>)"));
  }
  std::unique_ptr<SnapshotCache> cache;
  if (!options.snapshot_cache_dir.empty()) {
    SnapshotLimits limits;
    limits.max_snapshot_bytes = options.max_snapshot_bytes;
    cache = std::make_unique<SnapshotCache>(options.snapshot_cache_dir, limits);
    if (absl::Status s = cache->Prepare(); !s.ok()) return s;
  }
  if (options.backoff_initial <= absl::ZeroDuration()) options.backoff_initial = absl::Milliseconds(1);
  if (options.backoff_max < options.backoff_initial) options.backoff_max = options.backoff_initial;
  auto impl = std::make_unique<Impl>(std::move(options), std::move(apply), test_hooks, *std::move(tls),
                                     info->node_id);
  Impl* raw = impl.get();
  raw->cache_ = std::move(cache);
  const uint64_t start = raw->options_.rotation_start.has_value() ? *raw->options_.rotation_start
                                                                  : absl::Uniform<uint64_t>(absl::BitGen());
  raw->rotation_ = std::make_unique<ControlPlaneRotation>(
      *std::move(entries), raw->options_.server_name,
      [raw](const std::string& host) { return raw->ResolveBounded(host); }, start);
  raw->thread_ = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<SyncClient>(new SyncClient(std::move(impl)));
}

bool SyncClient::connected() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->connected_;
}

ControlPlaneLink SyncClient::control_plane() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->link_;
}

ConfigVersion SyncClient::serving() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->serving_;
}

std::string SyncClient::node_id() const { return impl_->node_id_; }

double SyncClient::last_sync_unix() const { return impl_->LastSyncUnix(); }

SyncClientStats SyncClient::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->stats_;
}

void SyncClient::NotifyTargetHealthChanged() { impl_->NotifyTargetHealthChanged(); }

absl::Status SyncClient::ReloadCertificates() {
  const SyncClientOptions& options = impl_->options_;
  absl::StatusOr<TlsMaterial> tls = LoadTlsMaterial(options.cert_file, options.key_file, options.ca_file);
  absl::Status s = tls.status();
  absl::StatusOr<CertificateInfo> info;
  if (s.ok()) {
    info = InspectCertificate(tls->cert_pem);
    s = info.status();
  }
  if (s.ok() && info->node_id != impl_->node_id_) {
    s = absl::InvalidArgumentError(absl::StrCat(options.cert_file, " is for node id '", info->node_id,
                                                "', not this data plane's '", impl_->node_id_,
                                                "' (a new identity needs a restart)"));
  }
  if (!s.ok()) {
    PORTICO_LOG(kError, kLog, "cluster certificate reload failed, keeping the current one: ", s.message());
    return s;
  }
  const int64_t not_after = tls->not_after;
  absl::StatusOr<int> cas = CountCertificates(tls->ca_pem, options.ca_file);
  {
    std::lock_guard<std::mutex> lock(impl_->mu_);
    impl_->tls_ = *std::move(tls);
  }
  PORTICO_LOG(kInfo, kLog, "cluster certificate reloaded from ", options.cert_file, " (serial ", info->serial_hex,
              ", notAfter ", not_after, ") with ", cas.ok() ? *cas : 0, " CA certificate(s) from ",
              options.ca_file, "; the next connection to the control plane uses it");
  return absl::OkStatus();
}

int64_t SyncClient::certificate_not_after() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->tls_.not_after;
}

void SyncClient::Stop() { impl_->Stop(); }

}  // namespace portico::dp
