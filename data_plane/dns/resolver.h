#pragma once
// Asynchronous DNS for one proxy worker: a c-ares channel driven by the worker's uv loop (its
// sockets watched with uv_poll handles, its timeouts with a uv_timer), the worker's DnsCache, and
// the hosts file. Single-threaded: every call on the worker's loop thread, no locks. Nothing here
// ever blocks on the network (no getaddrinfo(3)); the hosts file is stat()ed at most once a second
// and re-read when its mtime changes.
//
// Order for a name (docs/load-balancing.md, "DNS"): the hosts file; then, for a name of the form
// _service._proto.name, an SRV query (each target then resolved A/AAAA, the SRV port, weight and
// priority kept); else A and AAAA (one ares_getaddrinfo, AF_UNSPEC).
#include <uv.h>

#include <ares.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data_plane/dns/dns_answer.h"
#include "data_plane/dns/dns_cache.h"
#include "data_plane/dns/hosts_file.h"

namespace portico::dp {

struct ResolverOptions {
  std::string hosts_file = "/etc/hosts";  // empty: no hosts file (Kong's dns_hostsfile)
  // "ip[:port][,ip[:port]...]" ("[v6]:port" for IPv6 with a port); empty: /etc/resolv.conf's
  // nameservers (c-ares' default). Kong's dns_resolver.
  std::string servers;
  int query_timeout_ms = 2000;  // per try (c-ares doubles it per round over the servers)
  int tries = 2;
  DnsCacheOptions cache;
};

class Resolver {
 public:
  // Creates the channel and its handles on `loop` (the loop need not run yet; any thread before
  // the loop runs, its thread after). Errors: bad `servers`, c-ares init failure.
  static absl::StatusOr<std::unique_ptr<Resolver>> Create(uv_loop_t* loop, ResolverOptions options);
  // Checks a --dns-resolver value without creating anything lasting.
  static absl::Status CheckServers(const std::string& servers);
  // REQUIRES: Close() was called and the loop ran until its handles closed, or the loop never ran
  // the resolver's handles (then only c-ares is torn down here).
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // The current answer for `name` (lowercase) at `port`, possibly stale while a refresh runs;
  // null when there is none (not resolved yet, or not found). Starts a query when the name is new,
  // due for a refresh or its failure's retry time passed. Never blocks; allocates only for a name
  // it has not seen or when a query starts. `*pending`: a query is in flight (Wait may be used).
  const DnsAnswerPtr* Lookup(absl::string_view name, uint16_t port, bool* pending);
  // Calls `done` once when the query in flight for name:port completes (whatever its outcome),
  // from the loop. REQUIRES: Lookup said pending. Returns a ticket for CancelWait.
  uint64_t Wait(absl::string_view name, uint16_t port, std::function<void()> done);
  void CancelWait(uint64_t ticket);
  // The names the current config uses: looked up now (warming the cache), kept fresh.
  void SetConfigNames(const std::vector<DnsKey>& names);

  // Stops: destroys the channel (pending queries end unanswered, waiters are not called) and
  // closes every handle. The loop must then run until they are closed.
  void Close();

  // For tests and logs.
  size_t cached_names() const { return cache_.size(); }

 private:
  struct Poll;
  struct Query;
  struct SrvQuery;
  struct Uv;
  Resolver(uv_loop_t* loop, ResolverOptions options) : loop_(loop), options_(std::move(options)) {}
  int64_t Now() const { return static_cast<int64_t>(uv_now(loop_)); }
  void StartQuery(const DnsKey& key);
  void Finish(const DnsKey& key, DnsOutcome outcome, DnsAnswerPtr answer, int64_t ttl_s, absl::string_view why);
  void OnSocketState(int fd, bool readable, bool writable);
  void OnPoll(Poll* poll, int status, int events);
  void ArmTimer();
  void OnTimer();
  void OnMaintenance();
  void ReloadHostsIfChanged(bool force);
  static void OnAddrInfo(void* arg, int status, int timeouts, ares_addrinfo* result);
  static void OnSrv(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void OnSrvTarget(void* arg, int status, int timeouts, ares_addrinfo* result);
  void FinishSrv(SrvQuery* q);

  uv_loop_t* loop_;
  ResolverOptions options_;
  ares_channel channel_ = nullptr;
  bool closed_ = false;
  bool timers_ready_ = false;
  uv_timer_t ares_timer_;   // c-ares' next timeout
  uv_timer_t maintenance_;  // refreshes, evictions, hosts file check: every second
  absl::flat_hash_map<int, Poll*> polls_;  // c-ares socket -> its poll handle
  DnsCache cache_;
  HostsTable hosts_;
  int64_t hosts_mtime_ns_ = -1;  // -1: never read (or missing)
  int64_t hosts_checked_ms_ = 0;
};

}  // namespace portico::dp
