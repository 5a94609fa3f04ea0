#include "data_plane/plugins/rate_limiting/rate_limiting.h"

#include <time.h>

#include <cstdint>
#include <limits>
#include <string>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "data_plane/plugins/rate_limiting/counters.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

enum Period { kSecond, kMinute, kHour, kDay, kMonth, kYear, kPeriods };
constexpr const char* kNames[kPeriods] = {"second", "minute", "hour", "day", "month", "year"};
constexpr const char* kLimitHeaders[kPeriods] = {"X-RateLimit-Limit-Second", "X-RateLimit-Limit-Minute",
                                                 "X-RateLimit-Limit-Hour",   "X-RateLimit-Limit-Day",
                                                 "X-RateLimit-Limit-Month",  "X-RateLimit-Limit-Year"};
constexpr const char* kRemainingHeaders[kPeriods] = {
    "X-RateLimit-Remaining-Second", "X-RateLimit-Remaining-Minute", "X-RateLimit-Remaining-Hour",
    "X-RateLimit-Remaining-Day",    "X-RateLimit-Remaining-Month",  "X-RateLimit-Remaining-Year"};

enum class LimitBy { kConsumer, kCredential, kIp, kService, kHeader, kPath };

// The current window of each period and the seconds until it ends, from one wall-clock reading.
struct Windows {
  uint64_t index[kPeriods];
  int64_t reset_s[kPeriods];
};

// Month and year windows change rarely: each worker thread keeps the current ones and computes
// them again (gmtime_r, timegm) only when the month has ended.
struct CalendarWindows {
  int64_t valid_until = 0;  // start of the next month
  uint64_t month = 0, year = 0;
  int64_t month_end = 0, year_end = 0;
};

const CalendarWindows& CalendarAt(int64_t now) {
  thread_local CalendarWindows cached;
  if (now < cached.valid_until && now >= cached.valid_until - 31 * 86400) return cached;
  const time_t t = static_cast<time_t>(now);
  struct tm tm;
  gmtime_r(&t, &tm);
  const int year = tm.tm_year + 1900;
  cached.month = static_cast<uint64_t>(year) * 12 + static_cast<uint64_t>(tm.tm_mon);
  cached.year = static_cast<uint64_t>(year);
  struct tm next = {};
  next.tm_mday = 1;
  next.tm_year = tm.tm_mon == 11 ? tm.tm_year + 1 : tm.tm_year;
  next.tm_mon = (tm.tm_mon + 1) % 12;
  cached.month_end = static_cast<int64_t>(timegm(&next));
  next.tm_year = tm.tm_year + 1;
  next.tm_mon = 0;
  cached.year_end = static_cast<int64_t>(timegm(&next));
  cached.valid_until = cached.month_end;
  return cached;
}

// The current window of each period and the seconds until it ends (`calendar`: also month and
// year, which only limits on those periods need).
Windows WindowsAt(int64_t now, bool calendar) {
  Windows w = {};
  constexpr int64_t kLengths[4] = {1, 60, 3600, 86400};
  for (int p = kSecond; p <= kDay; ++p) {
    w.index[p] = static_cast<uint64_t>(now / kLengths[p]);
    w.reset_s[p] = kLengths[p] - now % kLengths[p];
  }
  if (calendar) {
    const CalendarWindows& c = CalendarAt(now);
    w.index[kMonth] = c.month;
    w.index[kYear] = c.year;
    w.reset_s[kMonth] = c.month_end - now;
    w.reset_s[kYear] = c.year_end - now;
  }
  return w;
}

class RateLimiting final : public PluginHandler {
 public:
  StepStatus Access(RequestContext& request) const override {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    const Windows windows = WindowsAt(static_cast<int64_t>(ts.tv_sec), calendar_);
    const uint64_t base = Key(request);

    // Check every period first, count only a request that is let through (as Kong does).
    uint64_t used[kPeriods] = {0};
    bool counted = true;
    int stop = -1;
    for (int p = 0; p < kPeriods; ++p) {
      if (limits_[p] == 0) continue;
      std::optional<uint32_t> current = counters_->Peek(KeyOf(base, p), windows.index[p]);
      used[p] = current.value_or(0);
      if (used[p] + 1 > limits_[p] && stop < 0) stop = p;
    }
    if (stop < 0) {
      for (int p = 0; p < kPeriods; ++p) {
        if (limits_[p] == 0) continue;
        std::optional<uint32_t> after = counters_->Add(KeyOf(base, p), windows.index[p]);
        if (!after) {
          counted = false;  // no room in the table: let it through, uncounted (fail open)
          continue;
        }
        used[p] = *after;
      }
    }
    if (!hide_client_headers_ && counted) AddHeaders(request, used, windows, stop);
    if (stop < 0) return StepStatus::kContinue;
    LocalResponse response;
    response.status = error_code_;
    response.message = error_message_;
    request.Respond(response);
    return StepStatus::kStop;
  }

  uint64_t limits_[kPeriods] = {0};
  bool calendar_ = false;  // a month or year limit is set
  LimitBy limit_by_ = LimitBy::kConsumer;
  std::string header_name_;
  std::string path_;
  bool hide_client_headers_ = false;
  int error_code_ = 429;
  std::string error_message_;
  WindowCounters* counters_ = nullptr;
  std::string plugin_id_;

 private:
  static uint64_t KeyOf(uint64_t base, int period) { return (base & ~uint64_t{7}) | static_cast<uint64_t>(period); }

  // Kong's counter key without the window: route, service and identifier.
  uint64_t Key(const RequestContext& request) const {
    absl::string_view identifier;
    switch (limit_by_) {
      case LimitBy::kConsumer:
        if (request.consumer != nullptr) identifier = request.consumer->id();
        break;
      case LimitBy::kCredential:
        identifier = request.credential_id;
        break;
      case LimitBy::kIp:
        break;
      case LimitBy::kService:
        if (request.match.has_value() && request.match->service != nullptr) identifier = request.match->service->id();
        break;
      case LimitBy::kHeader:
        if (const std::string* value = request.head->Find(header_name_)) identifier = *value;
        break;
      case LimitBy::kPath:
        if (request.normalized_path == path_) identifier = path_;
        break;
    }
    if (identifier.empty()) identifier = request.client_ip;  // Kong's fallback
    absl::string_view route, service;
    if (request.match.has_value()) {
      if (request.match->route != nullptr) route = request.match->route->id();
      if (request.match->service != nullptr) service = request.match->service->id();
    }
    return absl::HashOf(absl::string_view(plugin_id_), route, service, identifier, static_cast<int>(limit_by_));
  }

  void AddHeaders(RequestContext& request, const uint64_t (&used)[kPeriods], const Windows& windows, int stop) const {
    int tightest = -1;
    uint64_t tightest_remaining = std::numeric_limits<uint64_t>::max();
    for (int p = 0; p < kPeriods; ++p) {
      if (limits_[p] == 0) continue;
      const uint64_t remaining = used[p] >= limits_[p] ? 0 : limits_[p] - used[p];
      request.response_headers.Add(kLimitHeaders[p], absl::AlphaNum(limits_[p]).Piece());
      request.response_headers.Add(kRemainingHeaders[p], absl::AlphaNum(remaining).Piece());
      if (remaining < tightest_remaining) {
        tightest_remaining = remaining;
        tightest = p;
      }
    }
    if (stop >= 0) {
      tightest = stop;
      tightest_remaining = 0;
    }
    if (tightest < 0) return;
    request.response_headers.Add("RateLimit-Limit", absl::AlphaNum(limits_[tightest]).Piece());
    request.response_headers.Add("RateLimit-Remaining", absl::AlphaNum(tightest_remaining).Piece());
    request.response_headers.Add("RateLimit-Reset", absl::AlphaNum(static_cast<uint64_t>(windows.reset_s[tightest])).Piece());
    if (stop >= 0) request.response_headers.Add("Retry-After", absl::AlphaNum(static_cast<uint64_t>(windows.reset_s[stop])).Piece());
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRateLimiting(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  auto handler = std::make_unique<RateLimiting>();
  for (int p = 0; p < kPeriods; ++p) {
    const nlohmann::json& limit = config[kNames[p]];
    if (limit.is_number()) {
      const double value = limit.get<double>();
      handler->limits_[p] = value >= 1 ? static_cast<uint64_t>(value) : 1;
    }
  }
  handler->calendar_ = handler->limits_[kMonth] != 0 || handler->limits_[kYear] != 0;
  const std::string by = config["limit_by"].get<std::string>();
  handler->limit_by_ = by == "credential" ? LimitBy::kCredential
                       : by == "ip"       ? LimitBy::kIp
                       : by == "service"  ? LimitBy::kService
                       : by == "header"   ? LimitBy::kHeader
                       : by == "path"     ? LimitBy::kPath
                                          : LimitBy::kConsumer;
  if (config["header_name"].is_string()) handler->header_name_ = config["header_name"].get<std::string>();
  if (config["path"].is_string()) handler->path_ = config["path"].get<std::string>();
  handler->hide_client_headers_ = config["hide_client_headers"].get<bool>();
  handler->error_code_ = config["error_code"].get<int>();
  handler->error_message_ = config["error_message"].get<std::string>();
  handler->counters_ = &ProcessCounters();
  handler->plugin_id_ = context.plugin.id();
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
