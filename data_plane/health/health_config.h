#pragma once
// An upstream's `healthchecks` record (Kong's, KONG-REFERENCE.md §4.3) compiled once per snapshot:
// typed fields, durations, status sets. Missing fields take Kong's defaults, so a record the CP
// normalized and `{}` compile to the same thing. Immutable after ParseHealthConfig; thread-safe.
#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace portico::dp {

// A set of HTTP statuses (100..999); lookups allocate nothing.
class StatusSet {
 public:
  StatusSet() = default;
  StatusSet(std::initializer_list<int> statuses) {
    for (int s : statuses) Add(s);
  }
  void Add(int status) {
    if (status >= 0 && status < kSize) bits_.set(static_cast<size_t>(status));
  }
  bool Contains(int status) const { return status >= 0 && status < kSize && bits_.test(static_cast<size_t>(status)); }
  bool operator==(const StatusSet& other) const { return bits_ == other.bits_; }

 private:
  static constexpr int kSize = 1000;
  std::bitset<kSize> bits_;
};

enum class HealthCheckType { kTcp, kHttp, kHttps, kGrpc, kGrpcs };
absl::string_view HealthCheckTypeName(HealthCheckType type);

// What it takes to change a target's state; 0 = that kind never changes it.
struct HealthLimits {
  uint32_t successes = 0;      // consecutive successes: unhealthy -> healthy
  uint32_t tcp_failures = 0;   // consecutive failures of one kind: healthy -> unhealthy
  uint32_t timeouts = 0;
  uint32_t http_failures = 0;
};

struct ActiveHealthConfig {
  HealthCheckType type = HealthCheckType::kHttp;
  absl::Duration timeout = absl::Seconds(1);
  int concurrency = 10;  // probes at once for one upstream
  std::string http_path = "/";
  std::string https_sni;  // empty: none
  bool https_verify_certificate = true;
  std::vector<std::pair<std::string, std::string>> headers;  // one pair per value, in order
  absl::Duration healthy_interval = absl::ZeroDuration();    // 0: healthy targets are not probed
  absl::Duration unhealthy_interval = absl::ZeroDuration();  // 0: unhealthy targets are not probed
  StatusSet healthy_statuses{200, 302};
  StatusSet unhealthy_statuses{429, 404, 500, 501, 502, 503, 504, 505};
  HealthLimits limits;
};

struct PassiveHealthConfig {
  HealthCheckType type = HealthCheckType::kHttp;  // kTcp: response statuses are not looked at
  StatusSet healthy_statuses{200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                             300, 301, 302, 303, 304, 305, 306, 307, 308};
  StatusSet unhealthy_statuses{429, 500, 503};
  HealthLimits limits;
};

struct HealthConfig {
  ActiveHealthConfig active;
  PassiveHealthConfig passive;
  double threshold = 0;  // %: below this share of healthy weight the upstream takes no traffic

  // Kong's rule for "health checks on": an active interval or a passive failure limit is set.
  // Off: every target counts as healthy and is reported HEALTHCHECKS_OFF.
  bool active_enabled() const {
    return active.healthy_interval > absl::ZeroDuration() || active.unhealthy_interval > absl::ZeroDuration();
  }
  bool passive_enabled() const {
    return passive.limits.tcp_failures > 0 || passive.limits.timeouts > 0 || passive.limits.http_failures > 0;
  }
  bool enabled() const { return active_enabled() || passive_enabled(); }
};

// Compiles `json_text` (the Upstream.healthchecks field; empty means `{}`). InvalidArgument naming
// the field path ("healthchecks.active.timeout: ...") when it is not JSON, not an object, or a
// field has the wrong type or range. Unknown fields are ignored (the CP refuses them; a newer CP
// may add some). Runs at snapshot compile time, never on the request path.
absl::StatusOr<std::shared_ptr<const HealthConfig>> ParseHealthConfig(absl::string_view json_text);

}  // namespace portico::dp
