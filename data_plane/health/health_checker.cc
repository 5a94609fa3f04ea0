#include "data_plane/health/health_checker.h"

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
  bool probing = false;
};

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
    std::string response;
    char buffer[kMaxStatusLine];
    int open_handles = 0;
    bool done = false;
  };

  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t tick;
  std::thread thread;
  bool started = false;

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
      if (type != HealthCheckType::kTcp && type != HealthCheckType::kHttp) {
        if (warned.insert(t.upstream_id).second) {
          PORTICO_LOG(kWarn, "health", "upstream ", t.upstream_name, ": active ", HealthCheckTypeName(type),
                      " checks are not supported yet; its targets are not probed");
        }
        continue;
      }
      if (!t.has_address) continue;  // TODO(dns): probe the addresses the resolver gives
      auto entry = std::make_shared<Entry>();
      auto it = old.find({t.upstream_id, t.target});
      entry->last_probe_ms = it != old.end() ? it->second->last_probe_ms : now;
      auto& group = groups[t.upstream_id];
      if (group == nullptr) group = std::make_shared<Group>();
      entry->group = group;
      if (type == HealthCheckType::kHttp) {
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
    auto* p = new Probe();
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
    const int r = uv_tcp_connect(&p->connect, &p->tcp, reinterpret_cast<const sockaddr*>(&entry->target.address),
                                 [](uv_connect_t* req, int status) {
                                   auto* probe = static_cast<Probe*>(req->data);
                                   probe->owner->OnConnect(probe, status);
                                 });
    if (r != 0) Finish(p, HealthEvent::kTcpFailure, 0);
  }

  void OnConnect(Probe* p, int status) {
    if (p->done) return;  // cancelled (the handle is closing)
    if (status != 0) return Finish(p, HealthEvent::kTcpFailure, 0);
    if (p->entry->target.config->active.type == HealthCheckType::kTcp) return Finish(p, HealthEvent::kSuccess, 0);
    uv_buf_t buf = uv_buf_init(p->entry->request.data(), static_cast<unsigned>(p->entry->request.size()));
    auto* stream = reinterpret_cast<uv_stream_t*>(&p->tcp);
    if (uv_write(&p->write, stream, &buf, 1, [](uv_write_t* req, int status) {
          auto* probe = static_cast<Probe*>(req->data);
          if (status != 0 && !probe->done) probe->owner->Finish(probe, HealthEvent::kTcpFailure, 0);
        }) != 0) {
      return Finish(p, HealthEvent::kTcpFailure, 0);
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
  }

  void OnRead(Probe* p, ssize_t n) {
    if (p->done) return;
    if (n > 0) {
      const size_t room = kMaxStatusLine - p->response.size();
      p->response.append(p->buffer, std::min(room, static_cast<size_t>(n)));
    }
    const size_t eol = p->response.find("\r\n");
    if (eol == std::string::npos && p->response.size() < kMaxStatusLine && n >= 0) return;  // read on
    const int status = ParseStatusLine(absl::string_view(p->response).substr(0, eol));
    if (status == 0) return Finish(p, HealthEvent::kTcpFailure, 0);  // closed, reset or not HTTP
    const ActiveHealthConfig& active = p->entry->target.config->active;
    if (active.healthy_statuses.Contains(status)) return Finish(p, HealthEvent::kSuccess, status);
    if (active.unhealthy_statuses.Contains(status)) return Finish(p, HealthEvent::kHttpFailure, status);
    Finish(p, std::nullopt, status);  // in neither list: counts nothing
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

absl::Status HealthChecker::Start() {
  Impl* impl = impl_.get();
  if (impl->started) return absl::FailedPreconditionError("health checker already started");
  if (int r = uv_loop_init(&impl->loop); r != 0) return absl::InternalError(absl::StrCat("uv_loop_init: ", uv_strerror(r)));
  impl->wake.data = impl;
  impl->tick.data = impl;
  uv_async_init(&impl->loop, &impl->wake, [](uv_async_t* a) { Impl::Self(reinterpret_cast<uv_handle_t*>(a))->OnWake(); });
  uv_timer_init(&impl->loop, &impl->tick);
  impl->started = true;
  impl->thread = std::thread([impl] {
    pthread_setname_np(pthread_self(), "portico-health");
    uv_async_send(&impl->wake);  // a Reconfigure before Start
    uv_run(&impl->loop, UV_RUN_DEFAULT);
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
}

}  // namespace portico::dp
