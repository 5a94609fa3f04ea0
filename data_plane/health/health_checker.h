#pragma once
// Active health checks (KONG-REFERENCE.md §4.3): one thread with its own libuv loop probes the
// targets of upstreams whose checks have an active interval, and reports into the same
// TargetHealth records the proxied traffic updates (passive checks). Never runs on a worker loop.
//
// Probes: `tcp` — the connect succeeds; `http` — `GET <http_path> HTTP/1.1` with the target's
// Host, the configured headers and `Connection: close`; the status line (at most 1 KiB read) is
// compared with the healthy/unhealthy http_statuses (a status in neither list counts nothing);
// `https` — the same over TLS (SNI https_sni or the target's host name; with
// https_verify_certificate, the system CAs and a name/IP check). A connect error, a reset or a
// failed TLS handshake is a tcp failure, no answer within `timeout` a timeout. Healthy targets
// are probed every healthy.interval, unhealthy ones every unhealthy.interval (0: not in that
// state), at most `concurrency` probes at once per upstream; weight-0 targets are not probed.
// A target given by hostname is probed at one address of its DNS answer per probe (in turn),
// resolved by the ProbeResolver given to Start on the checker's own loop; a name without an
// answer is reported DNS_ERROR and not probed. Not built yet: `grpc` and `grpcs` probes (logged
// once per upstream, such targets are not probed).
#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data_plane/health/health_registry.h"

namespace portico::dp {

// Addresses of target hostnames for probes, on the checker's loop (the DP plugs its c-ares
// resolver in: data_plane/main.cc). Called on the checker's thread only.
class ProbeResolver {
 public:
  virtual ~ProbeResolver() = default;
  // An address of name:port now, the `turn`-th of its answer (copied to *out); false when there
  // is none yet (*pending: a query runs, ask again later) or the name does not resolve.
  virtual bool Resolve(const std::string& name, uint16_t port, uint64_t turn, sockaddr_storage* out,
                       bool* pending) = 0;
  // Closes its handles; the loop then runs until they are closed, and the resolver is destroyed
  // after the loop ends.
  virtual void Close() = 0;
};
// Makes the checker's resolver on its loop (before the loop runs).
using ProbeResolverFactory = std::function<absl::StatusOr<std::unique_ptr<ProbeResolver>>(uv_loop_t*)>;

class HealthChecker {
 public:
  HealthChecker();
  ~HealthChecker();  // Stop()
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts the checker thread. REQUIRES: called once. Without `resolvers`, targets given by
  // hostname are not probed.
  absl::Status Start(ProbeResolverFactory resolvers = nullptr);
  // Thread-safe. The targets to probe from now on (those of the snapshot just published). A
  // target kept from the previous set keeps its schedule; probes in flight finish and report.
  void Reconfigure(std::vector<HealthTarget> targets);
  // Cancels the probes in flight and joins the thread. Idempotent.
  void Stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::dp
