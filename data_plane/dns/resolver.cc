#include "data_plane/dns/resolver.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"

namespace portico::dp {
namespace {

constexpr int64_t kMaintenanceMs = 1000;
constexpr int64_t kHostsTtlS = INT32_MAX;  // hosts answers last until the file changes

void InitLibraryOnce() {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

// _service._proto.name: asked as SRV.
bool IsSrvName(absl::string_view name) {
  if (name.size() < 2 || name[0] != '_') return false;
  const size_t dot = name.find('.');
  return dot != absl::string_view::npos && dot + 1 < name.size() && name[dot + 1] == '_';
}

// The smallest TTL of the answer section's records (-1 when none can be read).
int64_t MinAnswerTtl(const unsigned char* abuf, int alen) {
  if (alen < 12) return -1;
  const int qdcount = (abuf[4] << 8) | abuf[5];
  const int ancount = (abuf[6] << 8) | abuf[7];
  const unsigned char* p = abuf + 12;
  const unsigned char* end = abuf + alen;
  auto skip_name = [&](const unsigned char* at) -> const unsigned char* {
    char* name = nullptr;
    long length = 0;
    if (ares_expand_name(at, abuf, alen, &name, &length) != ARES_SUCCESS) return nullptr;
    ares_free_string(name);
    return at + length;
  };
  for (int i = 0; i < qdcount; ++i) {
    p = skip_name(p);
    if (p == nullptr || p + 4 > end) return -1;
    p += 4;
  }
  int64_t ttl = -1;
  for (int i = 0; i < ancount; ++i) {
    p = skip_name(p);
    if (p == nullptr || p + 10 > end) break;
    const int64_t record_ttl = (static_cast<int64_t>(p[4]) << 24) | (p[5] << 16) | (p[6] << 8) | p[7];
    const int rdlength = (p[8] << 8) | p[9];
    p += 10 + rdlength;
    if (p > end) break;
    ttl = ttl < 0 ? record_ttl : std::min(ttl, record_ttl);
  }
  return ttl;
}

// Numeric form of a c-ares address node; false for other families.
bool NodeIp(const ares_addrinfo_node* node, std::string* out) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (node->ai_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(node->ai_addr)->sin_addr, text, sizeof(text));
  } else if (node->ai_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(node->ai_addr)->sin6_addr, text, sizeof(text));
  } else {
    return false;
  }
  *out = text;
  return true;
}

DnsOutcome OutcomeOf(int status) {
  return status == ARES_ENOTFOUND || status == ARES_ENODATA || status == ARES_ENONAME ? DnsOutcome::kNotFound
                                                                                      : DnsOutcome::kError;
}

// Adds the addresses of `result` with `port` (and SRV weight/priority) to `records`, without
// duplicates; lowers *ttl to their smallest TTL.
void AddNodes(const ares_addrinfo* result, uint16_t port, uint16_t priority, uint16_t weight,
              std::vector<DnsAnswer::Record>* records, int64_t* ttl) {
  if (result == nullptr) return;
  for (const ares_addrinfo_node* n = result->nodes; n != nullptr; n = n->ai_next) {
    std::string ip;
    if (!NodeIp(n, &ip)) continue;
    DnsAnswer::Record r;
    if (!MakeTarget(ip, port, &r.target)) continue;
    r.priority = priority;
    r.weight = weight;
    const bool seen = std::any_of(records->begin(), records->end(),
                                  [&](const DnsAnswer::Record& x) { return x.target.pool_key == r.target.pool_key; });
    if (seen) continue;
    records->push_back(std::move(r));
    *ttl = *ttl < 0 ? n->ai_ttl : std::min<int64_t>(*ttl, n->ai_ttl);
  }
}

ares_addrinfo_hints Hints() {
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = ARES_AI_NOSORT;  // sorting connect()s a UDP socket per address: not needed here
  return hints;
}

}  // namespace

// One c-ares socket's poll handle. Freed by its close callback.
struct Resolver::Poll {
  uv_poll_t handle;
  Resolver* resolver = nullptr;
  int fd = -1;
};

// One A/AAAA (or SRV) query for a cache key.
struct Resolver::Query {
  Resolver* resolver;
  DnsKey key;
};

// An SRV query and the A/AAAA lookups of its targets.
struct Resolver::SrvQuery {
  Resolver* resolver;
  DnsKey key;
  struct Target {
    std::string host;
    uint16_t port, priority, weight;
  };
  std::vector<Target> targets;
  std::vector<DnsAnswer::Record> records;
  int64_t ttl = -1;
  int remaining = 0;
  bool any_error = false;
  bool destroyed = false;
};
struct SrvTargetArg {
  void* query;
  size_t index;
};

struct Resolver::Uv {
  static void SocketState(void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<Resolver*>(data)->OnSocketState(fd, readable != 0, writable != 0);
  }
  static void PollCb(uv_poll_t* h, int status, int events) {
    Poll* p = static_cast<Poll*>(h->data);
    p->resolver->OnPoll(p, status, events);
  }
  static void PollClosed(uv_handle_t* h) { delete static_cast<Poll*>(h->data); }
  static void Timer(uv_timer_t* t) { static_cast<Resolver*>(t->data)->OnTimer(); }
  static void Maintenance(uv_timer_t* t) { static_cast<Resolver*>(t->data)->OnMaintenance(); }
  static void TimerClosed(uv_handle_t*) {}  // members of the resolver
};

absl::Status Resolver::CheckServers(const std::string& servers) {
  if (servers.empty()) return absl::OkStatus();
  InitLibraryOnce();
  ares_channel channel = nullptr;
  ares_options opts{};
  opts.lookups = const_cast<char*>("b");
  if (int rc = ares_init_options(&channel, &opts, ARES_OPT_LOOKUPS); rc != ARES_SUCCESS) {
    return absl::InternalError(absl::StrCat("c-ares init: ", ares_strerror(rc)));
  }
  const int rc = ares_set_servers_ports_csv(channel, servers.c_str());
  ares_destroy(channel);
  if (rc != ARES_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dns-resolver '", servers, "': expected ip[:port][,ip[:port]...] (", ares_strerror(rc), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Resolver>> Resolver::Create(uv_loop_t* loop, ResolverOptions options) {
  InitLibraryOnce();
  std::unique_ptr<Resolver> r(new Resolver(loop, std::move(options)));
  r->cache_ = DnsCache(r->options_.cache);
  ares_options opts{};
  opts.sock_state_cb = Uv::SocketState;
  opts.sock_state_cb_data = r.get();
  opts.lookups = const_cast<char*>("b");  // DNS only: the hosts file is ours (--dns-hostsfile)
  opts.timeout = r->options_.query_timeout_ms;
  opts.tries = r->options_.tries;
  const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  if (int rc = ares_init_options(&r->channel_, &opts, mask); rc != ARES_SUCCESS) {
    r->channel_ = nullptr;
    return absl::InternalError(absl::StrCat("c-ares init: ", ares_strerror(rc)));
  }
  if (!r->options_.servers.empty()) {
    if (int rc = ares_set_servers_ports_csv(r->channel_, r->options_.servers.c_str()); rc != ARES_SUCCESS) {
      return absl::InvalidArgumentError(absl::StrCat("--dns-resolver '", r->options_.servers,
                                                     "': expected ip[:port][,ip[:port]...] (", ares_strerror(rc), ")"));
    }
  }
  r->ReloadHostsIfChanged(/*force=*/true);
  uv_timer_init(loop, &r->ares_timer_);
  r->ares_timer_.data = r.get();
  uv_timer_init(loop, &r->maintenance_);
  r->maintenance_.data = r.get();
  uv_timer_start(&r->maintenance_, Uv::Maintenance, kMaintenanceMs, kMaintenanceMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&r->maintenance_));
  r->timers_ready_ = true;
  return r;
}

Resolver::~Resolver() {
  if (channel_ != nullptr) {
    closed_ = true;  // socket callbacks from ares_destroy touch no uv handle now
    ares_destroy(channel_);
    channel_ = nullptr;
  }
}

void Resolver::Close() {
  if (closed_) return;
  closed_ = true;
  cache_.AbandonQueries();
  // The poll handles go before c-ares closes their sockets (as OnSocketState does one by one).
  for (auto& [fd, poll] : polls_) uv_close(reinterpret_cast<uv_handle_t*>(&poll->handle), Uv::PollClosed);
  polls_.clear();
  if (channel_ != nullptr) {
    ares_destroy(channel_);  // pending callbacks run now with ARES_EDESTRUCTION
    channel_ = nullptr;
  }
  if (timers_ready_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&ares_timer_), Uv::TimerClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&maintenance_), Uv::TimerClosed);
  }
}

const DnsAnswerPtr* Resolver::Lookup(absl::string_view name, uint16_t port, bool* pending) {
  DnsCache::Result r = cache_.Get({name, port}, Now());
  if (r.start_query) {
    if (closed_) {
      cache_.Complete({name, port}, DnsOutcome::kError, nullptr, 0, Now());
    } else {
      StartQuery(DnsKey{std::string(name), port});
    }
    r = cache_.Get({name, port}, Now());  // the query may have completed at once
  }
  if (pending != nullptr) *pending = r.pending;
  return r.answer;
}

uint64_t Resolver::Wait(absl::string_view name, uint16_t port, std::function<void()> done) {
  return cache_.Wait({name, port}, std::move(done));
}

void Resolver::CancelWait(uint64_t ticket) { cache_.CancelWait(ticket); }

void Resolver::SetConfigNames(const std::vector<DnsKey>& names) {
  if (closed_) return;
  for (const DnsKey& key : cache_.SetConfigNames(names, Now())) StartQuery(key);
}

void Resolver::StartQuery(const DnsKey& key) {
  // The hosts file first.
  if (auto it = hosts_.find(key.name); it != hosts_.end()) {
    std::vector<DnsAnswer::Record> records;
    for (const std::string& ip : it->second) {
      DnsAnswer::Record r;
      if (MakeTarget(ip, key.port, &r.target)) records.push_back(std::move(r));
    }
    if (!records.empty()) {
      Finish(key, DnsOutcome::kAnswer, std::make_shared<const DnsAnswer>(std::move(records)), kHostsTtlS, "");
      return;
    }
  }
  if (IsSrvName(key.name)) {
    auto* q = new SrvQuery{this, key, {}, {}, -1, 0, false, false};
    ares_query(channel_, key.name.c_str(), 1 /* C_IN */, 33 /* T_SRV */, OnSrv, q);
  } else {
    auto* q = new Query{this, key};
    const ares_addrinfo_hints hints = Hints();
    ares_getaddrinfo(channel_, key.name.c_str(), nullptr, &hints, OnAddrInfo, q);
  }
  ArmTimer();
}

void Resolver::Finish(const DnsKey& key, DnsOutcome outcome, DnsAnswerPtr answer, int64_t ttl_s,
                      absl::string_view why) {
  if (closed_) return;
  const bool had_answer = cache_.Peek(key.view()) != nullptr;
  if (outcome == DnsOutcome::kNotFound) {
    PORTICO_LOG(kWarn, "dns", "name resolution failed for ", key.name, ": ", why);
  } else if (outcome == DnsOutcome::kError) {
    PORTICO_LOG(kWarn, "dns", "resolving ", key.name, " failed: ", why,
                had_answer ? "; serving its last good answer" : "; no answer yet");
  }
  std::vector<DnsCache::Waiter> waiters = cache_.Complete(key.view(), outcome, std::move(answer), ttl_s, Now());
  for (DnsCache::Waiter& w : waiters) w();
}

void Resolver::OnAddrInfo(void* arg, int status, int, ares_addrinfo* result) {
  std::unique_ptr<Query> q(static_cast<Query*>(arg));
  if (status == ARES_EDESTRUCTION || q->resolver->closed_) {
    if (result != nullptr) ares_freeaddrinfo(result);
    return;
  }
  std::vector<DnsAnswer::Record> records;
  int64_t ttl = -1;
  if (status == ARES_SUCCESS) AddNodes(result, q->key.port, 0, 1, &records, &ttl);
  if (result != nullptr) ares_freeaddrinfo(result);
  if (!records.empty()) {
    q->resolver->Finish(q->key, DnsOutcome::kAnswer, std::make_shared<const DnsAnswer>(std::move(records)),
                        std::max<int64_t>(ttl, 0), "");
  } else {
    q->resolver->Finish(q->key, status == ARES_SUCCESS ? DnsOutcome::kNotFound : OutcomeOf(status), nullptr, 0,
                        status == ARES_SUCCESS ? "no A or AAAA records" : ares_strerror(status));
  }
}

void Resolver::OnSrv(void* arg, int status, int, unsigned char* abuf, int alen) {
  auto* q = static_cast<SrvQuery*>(arg);
  Resolver* self = q->resolver;
  if (status == ARES_EDESTRUCTION || self->closed_) {
    delete q;
    return;
  }
  ares_srv_reply* replies = nullptr;
  if (status == ARES_SUCCESS) status = ares_parse_srv_reply(abuf, alen, &replies);
  if (status != ARES_SUCCESS || replies == nullptr) {
    if (replies != nullptr) ares_free_data(replies);
    const DnsKey key = q->key;
    delete q;
    self->Finish(key, status == ARES_SUCCESS ? DnsOutcome::kNotFound : OutcomeOf(status), nullptr, 0,
                 status == ARES_SUCCESS ? "no SRV records" : ares_strerror(status));
    return;
  }
  q->ttl = MinAnswerTtl(abuf, alen);
  for (ares_srv_reply* r = replies; r != nullptr; r = r->next) {
    std::string host = r->host != nullptr ? r->host : "";
    std::transform(host.begin(), host.end(), host.begin(), [](unsigned char c) { return std::tolower(c); });
    if (!host.empty() && host.back() == '.') host.pop_back();
    q->targets.push_back({host, r->port, r->priority, r->weight});
  }
  ares_free_data(replies);
  // Each target: an address itself, from the hosts file, or A/AAAA.
  q->remaining = 1;  // held until every lookup started, so none finishes the query early
  for (size_t i = 0; i < q->targets.size(); ++i) {
    const SrvQuery::Target& t = q->targets[i];
    DnsAnswer::Record rec;
    rec.priority = t.priority;
    rec.weight = t.weight;
    if (MakeTarget(t.host, t.port, &rec.target)) {
      q->records.push_back(std::move(rec));
      continue;
    }
    if (auto it = self->hosts_.find(t.host); it != self->hosts_.end()) {
      for (const std::string& ip : it->second) {
        DnsAnswer::Record h = rec;
        if (MakeTarget(ip, t.port, &h.target)) q->records.push_back(std::move(h));
      }
      continue;
    }
    ++q->remaining;
    const ares_addrinfo_hints hints = Hints();
    ares_getaddrinfo(self->channel_, t.host.c_str(), nullptr, &hints, OnSrvTarget, new SrvTargetArg{q, i});
    if (q->destroyed) break;
  }
  if (--q->remaining == 0) {
    self->FinishSrv(q);
  } else {
    self->ArmTimer();
  }
}

void Resolver::OnSrvTarget(void* arg, int status, int, ares_addrinfo* result) {
  std::unique_ptr<SrvTargetArg> a(static_cast<SrvTargetArg*>(arg));
  auto* q = static_cast<SrvQuery*>(a->query);
  if (status == ARES_EDESTRUCTION || q->resolver->closed_) {
    q->destroyed = true;
    if (result != nullptr) ares_freeaddrinfo(result);
    if (--q->remaining == 0) delete q;
    return;
  }
  const SrvQuery::Target& t = q->targets[a->index];
  if (status == ARES_SUCCESS) {
    AddNodes(result, t.port, t.priority, t.weight, &q->records, &q->ttl);
  } else if (OutcomeOf(status) == DnsOutcome::kError) {
    q->any_error = true;
  }
  if (result != nullptr) ares_freeaddrinfo(result);
  if (--q->remaining == 0) q->resolver->FinishSrv(q);
}

void Resolver::FinishSrv(SrvQuery* q) {
  std::unique_ptr<SrvQuery> owned(q);
  if (q->destroyed || closed_) return;
  if (q->records.empty()) {
    Finish(q->key, q->any_error ? DnsOutcome::kError : DnsOutcome::kNotFound, nullptr, 0,
           "no address for any SRV target");
    return;
  }
  Finish(q->key, DnsOutcome::kAnswer, std::make_shared<const DnsAnswer>(std::move(q->records), /*from_srv=*/true),
         std::max<int64_t>(q->ttl, 0), "");
}

void Resolver::OnSocketState(int fd, bool readable, bool writable) {
  if (closed_) return;  // Close() closes the handles (or the loop is gone)
  auto it = polls_.find(fd);
  if (!readable && !writable) {
    if (it == polls_.end()) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&it->second->handle), Uv::PollClosed);  // before c-ares closes fd
    polls_.erase(it);
    return;
  }
  Poll* poll = nullptr;
  if (it == polls_.end()) {
    poll = new Poll;
    poll->resolver = this;
    poll->fd = fd;
    poll->handle.data = poll;
    if (int rc = uv_poll_init_socket(loop_, &poll->handle, fd); rc != 0) {
      PORTICO_LOG(kError, "dns", "uv_poll_init_socket: ", uv_strerror(rc));
      delete poll;
      return;  // the query times out
    }
    polls_.emplace(fd, poll);
  } else {
    poll = it->second;
  }
  uv_poll_start(&poll->handle, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), Uv::PollCb);
}

void Resolver::OnPoll(Poll* poll, int status, int events) {
  if (closed_ || channel_ == nullptr) return;
  const int fd = poll->fd;  // `poll` may be closed by what follows
  ares_socket_t read_fd = ARES_SOCKET_BAD, write_fd = ARES_SOCKET_BAD;
  if (status < 0) {  // let c-ares find the error
    read_fd = write_fd = fd;
  } else {
    if (events & UV_READABLE) read_fd = fd;
    if (events & UV_WRITABLE) write_fd = fd;
  }
  ares_process_fd(channel_, read_fd, write_fd);
  ArmTimer();
}

void Resolver::ArmTimer() {
  if (closed_ || channel_ == nullptr || !timers_ready_) return;
  timeval max_wait{}, wait{};
  max_wait.tv_sec = 3600;
  timeval* next = ares_timeout(channel_, &max_wait, &wait);
  // With nothing pending c-ares returns max_wait: stop instead.
  if (next == nullptr || next == &max_wait) {
    uv_timer_stop(&ares_timer_);
    return;
  }
  const uint64_t ms = static_cast<uint64_t>(next->tv_sec) * 1000 + static_cast<uint64_t>(next->tv_usec + 999) / 1000;
  uv_timer_start(&ares_timer_, Uv::Timer, ms, 0);
}

void Resolver::OnTimer() {
  if (closed_ || channel_ == nullptr) return;
  ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  ArmTimer();
}

void Resolver::OnMaintenance() {
  if (closed_) return;
  ReloadHostsIfChanged(/*force=*/false);
  for (const DnsKey& key : cache_.Maintain(Now())) StartQuery(key);
}

void Resolver::ReloadHostsIfChanged(bool force) {
  if (options_.hosts_file.empty()) return;
  const int64_t now = Now();
  if (!force && now - hosts_checked_ms_ < kMaintenanceMs) return;
  hosts_checked_ms_ = now;
  struct stat st {};
  int64_t mtime = -1;
  if (::stat(options_.hosts_file.c_str(), &st) == 0) {
    mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  if (!force && mtime == hosts_mtime_ns_) return;
  hosts_mtime_ns_ = mtime;
  HostsTable table;
  if (mtime >= 0) {
    std::ifstream in(options_.hosts_file);
    std::stringstream text;
    text << in.rdbuf();
    table = ParseHosts(text.str());
  } else if (!force) {
    PORTICO_LOG(kWarn, "dns", "hosts file ", options_.hosts_file, " is gone: resolving with DNS only");
  }
  hosts_ = std::move(table);
  if (!force) cache_.ExpireAll();  // every name looks again: hosts file first
}

}  // namespace portico::dp
