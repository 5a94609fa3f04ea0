#include "data_plane/health/health_checker.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <uv.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"

namespace portico::dp {
namespace {

constexpr uint64_t kTickMs = 20;          // how often due probes are looked for
constexpr size_t kMaxStatusLine = 1024;   // bytes read for the status line

struct Group {  // one upstream's probes
  int in_flight = 0;
};

struct Entry {  // one target to probe
  HealthTarget target;
  std::shared_ptr<Group> group;
  std::string request;  // the http probe's request
  uint64_t last_probe_ms = 0;
  uint64_t turn = 0;  // a hostname target: which address of its answer the next probe takes
  bool probing = false;
};

// The host of "host:port" / "[v6]:port" (no brackets).
std::string HostOf(absl::string_view target) {
  if (!target.empty() && target.front() == '[') {
    const size_t close = target.find(']');
    return std::string(target.substr(1, close == absl::string_view::npos ? absl::string_view::npos : close - 1));
  }
  const size_t colon = target.rfind(':');
  return std::string(colon == absl::string_view::npos ? target : target.substr(0, colon));
}

bool IsIpLiteral(const std::string& host) {
  in6_addr v6;
  in_addr v4;
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

// The status of an "HTTP/1.x NNN ..." line; 0 when it is not one.
int ParseStatusLine(absl::string_view line) {
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[8] != ' ') return 0;
  int status = 0;
  if (!absl::SimpleAtoi(line.substr(9, 3), &status) || status < 100 || status > 999) return 0;
  return status;
}

}  // namespace

struct HealthChecker::Impl {
  struct Probe {
    Impl* owner = nullptr;
    std::shared_ptr<Entry> entry;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    sockaddr_storage address{};
    std::string response;
    char buffer[kMaxStatusLine];
    int open_handles = 0;
    bool done = false;
    // https: TLS in memory BIOs over the socket.
    SSL* ssl = nullptr;
    BIO* network_in = nullptr;   // bytes read from the socket, for OpenSSL (owned by ssl)
    BIO* network_out = nullptr;  // bytes OpenSSL wants sent (owned by ssl)
    bool request_written = false;
    ~Probe() {
      if (ssl != nullptr) SSL_free(ssl);
    }
  };
  struct TlsWrite {
    uv_write_t req;
    std::string data;
    Probe* probe;
  };

  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t tick;
  std::thread thread;
  bool started = false;
  SSL_CTX* tls_verify = nullptr;     // https probes with https_verify_certificate (system CAs)
  SSL_CTX* tls_no_verify = nullptr;  // ... without
  std::unique_ptr<ProbeResolver> resolver;  // hostname targets; null: they are not probed

  std::mutex mu;
  std::optional<std::vector<HealthTarget>> pending;  // guarded by mu
  bool stopping = false;                            // guarded by mu

  // Loop thread only.
  std::vector<std::shared_ptr<Entry>> entries;
  std::set<Probe*> probes;
  std::set<std::string> warned;  // upstream ids told about an unsupported type

  static Impl* Self(uv_handle_t* h) { return static_cast<Impl*>(h->data); }

  void OnWake() {
    std::optional<std::vector<HealthTarget>> next;
    bool stop = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      next.swap(pending);
      stop = stopping;
    }
    if (stop) {
      for (Probe* p : std::set<Probe*>(probes)) Finish(p, std::nullopt, 0);
      if (resolver != nullptr) resolver->Close();
      uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
      return;
    }
    if (next.has_value()) Apply(*std::move(next));
  }

  void Apply(std::vector<HealthTarget> targets) {
    std::map<std::pair<std::string, std::string>, std::shared_ptr<Entry>> old;
    for (auto& e : entries) old[{e->target.upstream_id, e->target.target}] = e;
    std::map<std::string, std::shared_ptr<Group>> groups;
    for (auto& e : entries) groups.emplace(e->target.upstream_id, e->group);
    std::vector<std::shared_ptr<Entry>> next;
    const uint64_t now = uv_now(&loop);
    for (HealthTarget& t : targets) {
      const HealthConfig& config = *t.config;
      if (!config.active_enabled() || t.weight == 0) continue;
      const HealthCheckType type = config.active.type;
      if (type == HealthCheckType::kGrpc || type == HealthCheckType::kGrpcs) {
        if (warned.insert(t.upstream_id).second) {
          PORTICO_LOG(kWarn, "health", "upstream ", t.upstream_name, ": active ", HealthCheckTypeName(type),
                      " checks are not supported yet; its targets are not probed");
        }
        continue;
      }
      if (!t.has_address && (t.dns_name.empty() || resolver == nullptr)) continue;
      auto it = old.find({t.upstream_id, t.target});
      // The same record (same upstream config): keep the entry, so that a probe in flight is
      // not started twice and finishes on the entry that is probed from now on.
      std::shared_ptr<Entry> entry =
          it != old.end() && it->second->target.record == t.record ? it->second : std::make_shared<Entry>();
      entry->last_probe_ms = it != old.end() ? it->second->last_probe_ms : now;
      auto& group = groups[t.upstream_id];
      if (group == nullptr) group = std::make_shared<Group>();
      entry->group = group;
      entry->request.clear();
      if (type == HealthCheckType::kHttp || type == HealthCheckType::kHttps) {
        entry->request = absl::StrCat("GET ", config.active.http_path, " HTTP/1.1\r\nHost: ", t.host_header, "\r\n");
        for (const auto& [name, value] : config.active.headers) absl::StrAppend(&entry->request, name, ": ", value, "\r\n");
        absl::StrAppend(&entry->request, "Connection: close\r\nUser-Agent: portico-health-check\r\n\r\n");
      }
      entry->target = std::move(t);
      next.push_back(std::move(entry));
    }
    entries = std::move(next);
    if (entries.empty()) {
      uv_timer_stop(&tick);
    } else if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&tick))) {
      uv_timer_start(&tick, [](uv_timer_t* t) { Self(reinterpret_cast<uv_handle_t*>(t))->OnTick(); }, kTickMs,
                     kTickMs);
    }
  }

  void OnTick() {
    const uint64_t now = uv_now(&loop);
    for (const std::shared_ptr<Entry>& e : entries) {
      if (e->probing) continue;
      const ActiveHealthConfig& active = e->target.config->active;
      const absl::Duration interval =
          e->target.record->healthy() ? active.healthy_interval : active.unhealthy_interval;
      if (interval <= absl::ZeroDuration()) continue;
      if (now < e->last_probe_ms + static_cast<uint64_t>(absl::ToInt64Milliseconds(interval))) continue;
      if (e->group->in_flight >= active.concurrency) continue;
      StartProbe(e);
    }
  }

  void StartProbe(const std::shared_ptr<Entry>& entry) {
    sockaddr_storage address = entry->target.address;
    if (!entry->target.has_address) {  // a hostname: one address of its answer, in turn
      bool pending = false;
      if (!resolver->Resolve(entry->target.dns_name, entry->target.dns_port, entry->turn++, &address, &pending)) {
        if (pending) return;  // the answer is on its way: the next tick probes
        entry->target.record->SetDnsError(true);
        entry->last_probe_ms = uv_now(&loop);  // asked again at the next interval
        return;
      }
      entry->target.record->SetDnsError(false);
    }
    auto* p = new Probe();
    p->address = address;
    p->owner = this;
    p->entry = entry;
    entry->probing = true;
    ++entry->group->in_flight;
    probes.insert(p);
    uv_tcp_init(&loop, &p->tcp);
    uv_timer_init(&loop, &p->timer);
    p->tcp.data = p;
    p->timer.data = p;
    p->connect.data = p;
    p->write.data = p;
    p->open_handles = 2;
    const int64_t timeout_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(entry->target.config->active.timeout));
    uv_timer_start(&p->timer, [](uv_timer_t* t) {
      auto* probe = static_cast<Probe*>(t->data);
      probe->owner->Finish(probe, HealthEvent::kTimeout, 0);
    }, static_cast<uint64_t>(timeout_ms), 0);
    const int r = uv_tcp_connect(&p->connect, &p->tcp, reinterpret_cast<const sockaddr*>(&p->address),
                                 [](uv_connect_t* req, int status) {
                                   auto* probe = static_cast<Probe*>(req->data);
                                   probe->owner->OnConnect(probe, status);
                                 });
    if (r != 0) Finish(p, HealthEvent::kTcpFailure, 0);
  }

  void OnConnect(Probe* p, int status) {
    if (p->done) return;  // cancelled (the handle is closing)
    if (status != 0) return Finish(p, HealthEvent::kTcpFailure, 0);
    const ActiveHealthConfig& active = p->entry->target.config->active;
    if (active.type == HealthCheckType::kTcp) return Finish(p, HealthEvent::kSuccess, 0);
    auto* stream = reinterpret_cast<uv_stream_t*>(&p->tcp);
    if (active.type == HealthCheckType::kHttps) {
      if (!StartTls(p)) return Finish(p, HealthEvent::kTcpFailure, 0);
    } else {
      uv_buf_t buf = uv_buf_init(p->entry->request.data(), static_cast<unsigned>(p->entry->request.size()));
      if (uv_write(&p->write, stream, &buf, 1, [](uv_write_t* req, int status) {
            auto* probe = static_cast<Probe*>(req->data);
            if (status != 0 && !probe->done) probe->owner->Finish(probe, HealthEvent::kTcpFailure, 0);
          }) != 0) {
        return Finish(p, HealthEvent::kTcpFailure, 0);
      }
    }
    uv_read_start(
        stream,
        [](uv_handle_t* h, size_t, uv_buf_t* out) {
          auto* probe = static_cast<Probe*>(h->data);
          *out = uv_buf_init(probe->buffer, sizeof(probe->buffer));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
          auto* probe = static_cast<Probe*>(s->data);
          probe->owner->OnRead(probe, n);
        });
    if (p->ssl != nullptr) PumpTls(p, /*eof=*/false);  // the ClientHello
  }

  void OnRead(Probe* p, ssize_t n) {
    if (p->done) return;
    if (p->ssl != nullptr) {
      if (n > 0) BIO_write(p->network_in, p->buffer, static_cast<int>(n));
      if (n != 0) PumpTls(p, /*eof=*/n < 0);
      return;
    }
    if (n > 0) Append(p, p->buffer, static_cast<size_t>(n));
    Evaluate(p, /*eof=*/n < 0);
  }

  void Append(Probe* p, const char* data, size_t n) {
    const size_t room = kMaxStatusLine - p->response.size();
    p->response.append(data, std::min(room, n));
  }

  // Decides once the status line is in (or the connection ended, `eof`).
  void Evaluate(Probe* p, bool eof) {
    const size_t eol = p->response.find("\r\n");
    if (eol == std::string::npos && p->response.size() < kMaxStatusLine && !eof) return;  // read on
    const int status = ParseStatusLine(absl::string_view(p->response).substr(0, eol));
    if (status == 0) return Finish(p, HealthEvent::kTcpFailure, 0);  // closed, reset or not HTTP
    const ActiveHealthConfig& active = p->entry->target.config->active;
    if (active.healthy_statuses.Contains(status)) return Finish(p, HealthEvent::kSuccess, status);
    if (active.unhealthy_statuses.Contains(status)) return Finish(p, HealthEvent::kHttpFailure, status);
    Finish(p, std::nullopt, status);  // in neither list: counts nothing
  }

  // https: a client session with SNI (https_sni, else the target's host when it is a name) and,
  // with https_verify_certificate, the system CAs and a name (or IP) check; the upstream's client
  // certificate when it has one (HealthTarget::probe_tls_*).
  bool StartTls(Probe* p) {
    const ActiveHealthConfig& active = p->entry->target.config->active;
    const HealthTarget& target = p->entry->target;
    SSL_CTX* ctx = active.https_verify_certificate
                       ? (target.probe_tls_verify != nullptr ? target.probe_tls_verify.get() : tls_verify)
                       : (target.probe_tls_no_verify != nullptr ? target.probe_tls_no_verify.get() : tls_no_verify);
    if (ctx == nullptr) return false;
    p->ssl = SSL_new(ctx);
    if (p->ssl == nullptr) return false;
    p->network_in = BIO_new(BIO_s_mem());
    p->network_out = BIO_new(BIO_s_mem());
    if (p->network_in == nullptr || p->network_out == nullptr) {
      BIO_free(p->network_in);
      BIO_free(p->network_out);
      p->network_in = p->network_out = nullptr;
      return false;
    }
    SSL_set_bio(p->ssl, p->network_in, p->network_out);
    SSL_set_connect_state(p->ssl);
    const std::string host = HostOf(p->entry->target.target);
    const std::string name = !active.https_sni.empty() ? active.https_sni : IsIpLiteral(host) ? "" : host;
    if (!name.empty()) SSL_set_tlsext_host_name(p->ssl, name.c_str());
    if (active.https_verify_certificate) {
      if (!name.empty()) {
        SSL_set1_host(p->ssl, name.c_str());
      } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->ssl), host.c_str());
      }
    }
    return true;
  }

  // Moves TLS on: writes the request once the session allows, reads the status line, sends what
  // OpenSSL produced. A handshake or verification failure is a tcp failure.
  void PumpTls(Probe* p, bool eof) {
    if (!p->request_written) {
      const int r = SSL_write(p->ssl, p->entry->request.data(), static_cast<int>(p->entry->request.size()));
      if (r > 0) {
        p->request_written = true;
      } else {
        const int e = SSL_get_error(p->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
          ERR_clear_error();
          return Finish(p, HealthEvent::kTcpFailure, 0);
        }
      }
    }
    bool closed = eof;
    if (p->request_written) {
      for (;;) {
        char plain[512];
        const int r = SSL_read(p->ssl, plain, sizeof(plain));
        if (r > 0) {
          Append(p, plain, static_cast<size_t>(r));
          continue;
        }
        const int e = SSL_get_error(p->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) closed = true;
        ERR_clear_error();
        break;
      }
    }
    FlushTls(p);
    if (p->done) return;
    if (p->request_written) return Evaluate(p, closed);
    if (eof) Finish(p, HealthEvent::kTcpFailure, 0);
  }

  void FlushTls(Probe* p) {
    while (!p->done && BIO_ctrl_pending(p->network_out) > 0) {
      auto* w = new TlsWrite();
      w->probe = p;
      w->data.resize(BIO_ctrl_pending(p->network_out));
      const int n = BIO_read(p->network_out, w->data.data(), static_cast<int>(w->data.size()));
      if (n <= 0) {
        delete w;
        return;
      }
      w->data.resize(static_cast<size_t>(n));
      w->req.data = w;
      uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
      if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&p->tcp), &buf, 1, [](uv_write_t* req, int status) {
            auto* write = static_cast<TlsWrite*>(req->data);
            Probe* probe = write->probe;  // alive: a closing handle's requests end before its close callback
            delete write;
            if (status != 0 && !probe->done) probe->owner->Finish(probe, HealthEvent::kTcpFailure, 0);
          }) != 0) {
        delete w;
        return Finish(p, HealthEvent::kTcpFailure, 0);
      }
    }
  }

  // Reports `event` (none: cancelled, or a status in neither list), then closes the probe.
  void Finish(Probe* p, std::optional<HealthEvent> event, int status) {
    if (p->done) return;
    p->done = true;
    if (event.has_value()) {
      p->entry->target.record->Report(*event, p->entry->target.config->active.limits, "active", status);
    }
    p->entry->probing = false;
    p->entry->last_probe_ms = uv_now(&loop);
    --p->entry->group->in_flight;
    probes.erase(p);
    auto closed = [](uv_handle_t* h) {
      auto* probe = static_cast<Probe*>(h->data);
      if (--probe->open_handles == 0) delete probe;
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&p->timer), closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->tcp), closed);
  }
};

HealthChecker::HealthChecker() : impl_(std::make_unique<Impl>()) {}

HealthChecker::~HealthChecker() { Stop(); }

absl::Status HealthChecker::Start(ProbeResolverFactory resolvers) {
  Impl* impl = impl_.get();
  if (impl->started) return absl::FailedPreconditionError("health checker already started");
  if (int r = uv_loop_init(&impl->loop); r != 0) return absl::InternalError(absl::StrCat("uv_loop_init: ", uv_strerror(r)));
  if (resolvers) {
    absl::StatusOr<std::unique_ptr<ProbeResolver>> resolver = resolvers(&impl->loop);
    if (!resolver.ok()) {
      uv_loop_close(&impl->loop);
      return resolver.status();
    }
    impl->resolver = *std::move(resolver);
  }
  impl->wake.data = impl;
  impl->tick.data = impl;
  uv_async_init(&impl->loop, &impl->wake, [](uv_async_t* a) { Impl::Self(reinterpret_cast<uv_handle_t*>(a))->OnWake(); });
  uv_timer_init(&impl->loop, &impl->tick);
  // TLS 1.2+ client contexts for https probes (a failure only disables https probes).
  impl->tls_verify = SSL_CTX_new(TLS_client_method());
  impl->tls_no_verify = SSL_CTX_new(TLS_client_method());
  for (SSL_CTX* ctx : {impl->tls_verify, impl->tls_no_verify}) {
    if (ctx != nullptr) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  }
  if (impl->tls_verify != nullptr) {
    SSL_CTX_set_verify(impl->tls_verify, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_default_verify_paths(impl->tls_verify);
  }
  impl->started = true;
  impl->thread = std::thread([impl] {
    pthread_setname_np(pthread_self(), "portico-health");
    uv_async_send(&impl->wake);  // a Reconfigure before Start
    uv_run(&impl->loop, UV_RUN_DEFAULT);
    impl->resolver.reset();  // closed in OnWake; its handles are closed now
    uv_loop_close(&impl->loop);
  });
  return absl::OkStatus();
}

void HealthChecker::Reconfigure(std::vector<HealthTarget> targets) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->pending = std::move(targets);
  if (impl_->started && !impl_->stopping) uv_async_send(&impl_->wake);
}

void HealthChecker::Stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!impl_->started || impl_->stopping) return;
    impl_->stopping = true;
    uv_async_send(&impl_->wake);
  }
  impl_->thread.join();
  if (impl_->tls_verify != nullptr) SSL_CTX_free(impl_->tls_verify);
  if (impl_->tls_no_verify != nullptr) SSL_CTX_free(impl_->tls_no_verify);
  impl_->tls_verify = impl_->tls_no_verify = nullptr;
}

}  // namespace portico::dp
