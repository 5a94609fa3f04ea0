#include "data_plane/health/health_registry.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/config/upstreams.h"

namespace portico::dp {
namespace {

int Shift(HealthEvent kind) {
  switch (kind) {
    case HealthEvent::kSuccess:
      return 0;
    case HealthEvent::kTcpFailure:
      return 8;
    case HealthEvent::kTimeout:
      return 16;
    case HealthEvent::kHttpFailure:
      return 24;
  }
  return 0;
}

uint32_t LimitOf(HealthEvent kind, const HealthLimits& limits) {
  switch (kind) {
    case HealthEvent::kSuccess:
      return limits.successes;
    case HealthEvent::kTcpFailure:
      return limits.tcp_failures;
    case HealthEvent::kTimeout:
      return limits.timeouts;
    case HealthEvent::kHttpFailure:
      return limits.http_failures;
  }
  return 0;
}

const char* Plural(HealthEvent kind) {
  switch (kind) {
    case HealthEvent::kSuccess:
      return "successes";
    case HealthEvent::kTcpFailure:
      return "tcp failures";
    case HealthEvent::kTimeout:
      return "timeouts";
    case HealthEvent::kHttpFailure:
      return "http failures";
  }
  return "";
}

}  // namespace

absl::string_view TargetHealthName(TargetHealthState state) {
  switch (state) {
    case TargetHealthState::kHealthy:
      return "HEALTHY";
    case TargetHealthState::kUnhealthy:
      return "UNHEALTHY";
    case TargetHealthState::kDnsError:
      return "DNS_ERROR";
    case TargetHealthState::kHealthchecksOff:
      return "HEALTHCHECKS_OFF";
  }
  return "UNKNOWN";
}

TargetHealth::TargetHealth(HealthRegistry* registry, std::string upstream_id, std::string upstream_name,
                           std::string target, std::string fingerprint)
    : registry_(registry),
      upstream_id_(std::move(upstream_id)),
      upstream_name_(std::move(upstream_name)),
      target_(std::move(target)),
      fingerprint_(std::move(fingerprint)) {}

uint32_t TargetHealth::count(HealthEvent kind) const {
  return static_cast<uint32_t>((word_.load(std::memory_order_relaxed) >> Shift(kind)) & 0xff);
}

void TargetHealth::Report(HealthEvent event, const HealthLimits& limits, absl::string_view source, int status) {
  const uint32_t limit = LimitOf(event, limits);
  uint64_t old = word_.load(std::memory_order_relaxed);
  uint64_t next = 0;
  uint32_t reached = 0;  // the count that flipped the state (0: no flip)
  for (;;) {
    const bool unhealthy = (old & kUnhealthyBit) != 0;
    reached = 0;
    if (event == HealthEvent::kSuccess) {
      if (!unhealthy) {
        if ((old & kCounters) == 0) return;  // the common case: nothing to write
        next = 0;                            // failure streaks end
      } else {
        if (limit == 0) return;
        const uint32_t n = std::min<uint32_t>(255, static_cast<uint32_t>(old & 0xff) + 1);
        if (n >= limit) {
          next = 0;
          reached = n;
        } else {
          next = kUnhealthyBit | n;
        }
      }
    } else {
      if (limit == 0) return;  // this kind is not checked
      if (unhealthy) {
        if ((old & kCounters) == 0) return;
        next = kUnhealthyBit;  // the success streak ends
      } else {
        const int shift = Shift(event);
        const uint32_t n = std::min<uint32_t>(255, static_cast<uint32_t>((old >> shift) & 0xff) + 1);
        if (n >= limit) {
          next = kUnhealthyBit;
          reached = n;
        } else {
          // The other failure kinds keep counting (lua-resty-healthcheck resets only the
          // success count on a failure); any success ends them all.
          next = (old & kCounters & ~(uint64_t{0xff} << shift) & ~uint64_t{0xff}) | (static_cast<uint64_t>(n) << shift);
        }
      }
    }
    if (word_.compare_exchange_weak(old, next, std::memory_order_acq_rel, std::memory_order_relaxed)) break;
  }
  if (reached == 0) return;
  std::string reason = absl::StrCat(source, ": ", reached, " ", Plural(event));
  if (event == HealthEvent::kHttpFailure && status != 0) absl::StrAppend(&reason, " (last status ", status, ")");
  registry_->OnStateChange(*this, event == HealthEvent::kSuccess, reason);
}

void TargetHealth::Set(bool healthy, absl::string_view reason) {
  const uint64_t old = word_.exchange(healthy ? 0 : kUnhealthyBit, std::memory_order_acq_rel);
  if (((old & kUnhealthyBit) == 0) != healthy) registry_->OnStateChange(*this, healthy, reason);
}

void HealthRegistry::OnStateChange(const TargetHealth& record, bool healthy, absl::string_view reason) {
  epoch_.fetch_add(1, std::memory_order_release);
  if (healthy) {
    PORTICO_LOG(kInfo, "health", "upstream ", record.upstream_name(), " target ", record.target(),
                " is HEALTHY again (", reason, ")");
  } else {
    PORTICO_LOG(kWarn, "health", "upstream ", record.upstream_name(), " target ", record.target(),
                " is UNHEALTHY (", reason, ")");
  }
  NotifyChange();
}

void HealthRegistry::NotifyChange() {
  std::function<void()> callback;
  {
    std::lock_guard<std::mutex> lock(callback_mu_);
    callback = on_change_;
  }
  if (callback) callback();
}

void TargetHealth::ChangeDnsError(bool failed) {
  // Two workers may see the same change: only the one that flips the flag logs and notifies.
  bool expected = !failed;
  if (!dns_error_.compare_exchange_strong(expected, failed, std::memory_order_relaxed)) return;
  if (failed) {
    PORTICO_LOG(kWarn, "health", "upstream ", upstream_name_, " target ", target_, ": DNS_ERROR (no address)");
  } else {
    PORTICO_LOG(kInfo, "health", "upstream ", upstream_name_, " target ", target_, " resolves again");
  }
  registry_->NotifyChange();
}

void HealthRegistry::SetOnChange(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(callback_mu_);
  on_change_ = std::move(callback);
}

std::shared_ptr<TargetHealth> HealthRegistry::Acquire(const std::string& upstream_id,
                                                      const std::string& upstream_name, const std::string& target,
                                                      absl::string_view healthchecks_text) {
  std::string fingerprint = absl::StrCat(upstream_name, "\n", healthchecks_text);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = targets_.find({upstream_id, target});
    if (it != targets_.end() && it->second.record->fingerprint_ == fingerprint) return it->second.record;
  }
  return std::make_shared<TargetHealth>(this, upstream_id, upstream_name, target, std::move(fingerprint));
}

void HealthRegistry::Install(std::vector<HealthTarget> targets) {
  std::map<std::pair<std::string, std::string>, HealthTarget> next;
  for (HealthTarget& t : targets) {
    auto key = std::make_pair(t.upstream_id, t.target);
    next.insert_or_assign(std::move(key), std::move(t));
  }
  std::map<std::pair<std::string, std::string>, HealthTarget> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old.swap(targets_);
    targets_.swap(next);
  }
  // `old` (records no snapshot uses any more, once older snapshots go) is freed outside the lock.
}

std::vector<TargetHealthReport> HealthRegistry::Report() const {
  std::vector<TargetHealthReport> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.reserve(targets_.size());
    for (const auto& [key, t] : targets_) {
      TargetHealthState state = TargetHealthState::kHealthchecksOff;
      if (t.config->enabled()) state = t.record->healthy() ? TargetHealthState::kHealthy : TargetHealthState::kUnhealthy;
      if (t.record->dns_error()) state = TargetHealthState::kDnsError;
      out.push_back(TargetHealthReport{t.upstream_id, t.upstream_name, t.target, state});
    }
  }
  std::sort(out.begin(), out.end(), [](const TargetHealthReport& a, const TargetHealthReport& b) {
    return a.upstream_name != b.upstream_name ? a.upstream_name < b.upstream_name : a.target < b.target;
  });
  return out;
}

absl::Status HealthRegistry::SetManual(absl::string_view upstream, absl::string_view target, bool healthy) {
  const std::optional<std::string> stored = FormatTarget(target);
  std::shared_ptr<TargetHealth> record;
  bool enabled = false;
  std::string upstream_name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, t] : targets_) {
      if (t.upstream_id != upstream && t.upstream_name != upstream) continue;
      if (t.target != target && (!stored.has_value() || t.target != *stored)) continue;
      record = t.record;
      enabled = t.config->enabled();
      upstream_name = t.upstream_name;
      break;
    }
  }
  if (record == nullptr) {
    return absl::NotFoundError(absl::StrCat("no target '", target, "' in upstream '", upstream, "'"));
  }
  if (!enabled) {
    return absl::FailedPreconditionError(
        absl::StrCat("health checks are off for upstream '", upstream_name, "': its targets are always used"));
  }
  record->Set(healthy, "manual override");
  return absl::OkStatus();
}

}  // namespace portico::dp
