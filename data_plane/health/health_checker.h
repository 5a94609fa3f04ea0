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
// Not built yet: `grpc` and `grpcs` probes (logged once per upstream, such targets are not
// probed) and targets given by hostname (the checker has no resolver: HealthTarget::has_address).
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "data_plane/health/health_registry.h"

namespace portico::dp {

class HealthChecker {
 public:
  HealthChecker();
  ~HealthChecker();  // Stop()
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts the checker thread. REQUIRES: called once.
  absl::Status Start();
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
