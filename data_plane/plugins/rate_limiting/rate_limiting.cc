#include "data_plane/plugins/rate_limiting/rate_limiting.h"

#include <time.h>

#include <cstdint>
#include <limits>
#include <string>

#include <hiredis/hiredis.h>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/free_list.h"
#include "data_plane/pipeline/loop_state.h"
#include "data_plane/plugins/chain.h"
#include "data_plane/plugins/rate_limiting/counters.h"
#include "data_plane/plugins/rate_limiting/redis_connection.h"
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

// How long a Redis counter lives (Kong's kong/plugins/rate-limiting/expiration.lua).
constexpr const char* kExpirations[kPeriods] = {"1", "60", "3600", "86400", "2592000", "31536000"};
// Kong's stand-in for a plugin without a route or service scope in its counter keys.
constexpr absl::string_view kEmptyUuid = "00000000-0000-0000-0000-000000000000";

enum class LimitBy { kConsumer, kCredential, kIp, kService, kHeader, kPath };

// The current window of each period (its index and start) and the seconds until it ends, from one
// wall-clock reading.
struct Windows {
  uint64_t index[kPeriods];
  int64_t start_s[kPeriods];
  int64_t reset_s[kPeriods];
};

// Month and year windows change rarely: each worker thread keeps the current ones and computes
// them again (gmtime_r, timegm) only when the month has ended.
struct CalendarWindows {
  int64_t valid_until = 0;  // start of the next month
  uint64_t month = 0, year = 0;
  int64_t month_start = 0, year_start = 0;
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
  struct tm start = {};
  start.tm_mday = 1;
  start.tm_year = tm.tm_year;
  start.tm_mon = tm.tm_mon;
  cached.month_start = static_cast<int64_t>(timegm(&start));
  start.tm_mon = 0;
  cached.year_start = static_cast<int64_t>(timegm(&start));
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
    w.start_s[p] = now - now % kLengths[p];
    w.reset_s[p] = kLengths[p] - now % kLengths[p];
  }
  if (calendar) {
    const CalendarWindows& c = CalendarAt(now);
    w.index[kMonth] = c.month;
    w.index[kYear] = c.year;
    w.start_s[kMonth] = c.month_start;
    w.start_s[kYear] = c.year_start;
    w.reset_s[kMonth] = c.month_end - now;
    w.reset_s[kYear] = c.year_end - now;
  }
  return w;
}

class RateLimiting;
class RedisWorker;

// One request waiting for Redis (policy redis): pooled per worker, so a warm worker allocates
// none. `request` is null once the request went away.
struct RedisCheck {
  RequestContext* request = nullptr;
  const RateLimiting* handler = nullptr;
  RedisWorker* worker = nullptr;  // (its pool)
  RedisConnection* connection = nullptr;
  Windows windows;
  int count = 0;            // keys asked for
  int period[kPeriods];     // the period of each key
  std::string keys[kPeriods];
};

// A worker's Redis state (a LoopState): its connections by endpoint, the pooled checks and the
// command being built. Closed, with its connections, when the worker stops.
class RedisWorker final : public LoopState {
 public:
  static RedisWorker& Of(uv_loop_t* loop) {
    static const char kKind = 0;
    if (LoopState* state = FindLoopState(loop, &kKind)) return *static_cast<RedisWorker*>(state);
    return *static_cast<RedisWorker*>(AddLoopState(loop, &kKind, std::make_unique<RedisWorker>(loop)));
  }
  explicit RedisWorker(uv_loop_t* loop) : loop_(loop) {}

  RedisConnection& Connection(const RedisEndpoint& endpoint) {
    auto it = connections_.find(endpoint.key);
    if (it == connections_.end()) it = connections_.emplace(endpoint.key, new RedisConnection(loop_, endpoint)).first;
    return *it->second;
  }
  // A check is owned by its command's callback between the two.
  RedisCheck* NewCheck() { return checks_.Take().release(); }
  void Release(RedisCheck* check) {
    check->request = nullptr;
    checks_.Give(std::unique_ptr<RedisCheck>(check));
  }
  void Close() override {
    for (auto& [key, connection] : connections_) connection->Close();  // fails their checks now
    delete this;
  }

  std::string command;  // scratch for the command being built

 private:
  uv_loop_t* const loop_;
  absl::flat_hash_map<std::string, RedisConnection*> connections_;  // they delete themselves
  FreeList<RedisCheck> checks_{256};
};

class RateLimiting final : public PluginHandler {
 public:
  StepStatus Access(RequestContext& request) const override {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    const Windows windows = WindowsAt(static_cast<int64_t>(ts.tv_sec), calendar_);
    if (redis_) return AccessRedis(request, windows);
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
    return Decide(request, stop);
  }

  void OnCancel(RequestContext& request) const override {
    if (auto* check = static_cast<RedisCheck*>(request.suspended_data)) check->request = nullptr;
  }

  uint64_t limits_[kPeriods] = {0};
  bool calendar_ = false;  // a month or year limit is set
  LimitBy limit_by_ = LimitBy::kConsumer;
  std::string header_name_;
  std::string path_;
  bool hide_client_headers_ = false;
  bool fault_tolerant_ = true;
  int error_code_ = 429;
  std::string error_message_;
  WindowCounters* counters_ = nullptr;
  std::string plugin_id_;
  // Policy redis: where, and the route and service parts of Kong's keys (the plugin's scope).
  std::optional<RedisEndpoint> redis_;
  std::string key_scope_;  // "<route id>:<service id>:"

 private:
  static uint64_t KeyOf(uint64_t base, int period) { return (base & ~uint64_t{7}) | static_cast<uint64_t>(period); }

  // Who is counted: limit_by, with Kong's fallback to the client address.
  absl::string_view Identifier(const RequestContext& request) const {
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
    return identifier.empty() ? request.client_ip : identifier;
  }

  // Kong's counter key without the window: route, service and identifier.
  // Kong's keys carry the plugin's scope (its route and service, or none), not the request's: a
  // global or service instance counts an identifier across the routes it covers. The plugin id
  // stands for that scope (one instance per name and scope).
  uint64_t Key(const RequestContext& request) const {
    return absl::HashOf(absl::string_view(plugin_id_), Identifier(request), static_cast<int>(limit_by_));
  }

  // The request over a limit (`stop` >= 0) gets error_code; the others go on.
  StepStatus Decide(RequestContext& request, int stop) const {
    if (stop < 0) return StepStatus::kContinue;
    LocalResponse response;
    response.status = error_code_;
    response.message = error_message_;
    request.Respond(response);
    return StepStatus::kStop;
  }

  // Redis unreachable, slow or in error: Kong's fault_tolerant outcome (no rate-limit headers).
  StepStatus Unavailable(RequestContext& request) const {
    if (fault_tolerant_) return StepStatus::kContinue;
    LocalResponse response;
    response.status = 500;
    response.message = "An unexpected error occurred";
    request.Respond(response);
    return StepStatus::kStop;
  }

  // Kong's redis policy: the usage of every period (one MGET of Kong's keys
  // ratelimit:<route>:<service>:<identifier>:<window start, ms>:<period>), the decision, then
  // INCRBY + EXPIRE per period for an allowed request (pipelined, not waited for). The request
  // suspends until the usage arrives. hiredis allocates per command (its callback entry, output
  // buffer and reply objects); nothing else is allocated once the worker is warm.
  StepStatus AccessRedis(RequestContext& request, const Windows& windows) const {
    RedisWorker& worker = RedisWorker::Of(request.loop);
    RedisCheck* check = worker.NewCheck();
    check->request = &request;
    check->handler = this;
    check->worker = &worker;
    check->connection = &worker.Connection(*redis_);
    check->windows = windows;
    check->count = 0;
    const absl::string_view identifier = Identifier(request);
    for (int p = 0; p < kPeriods; ++p) {
      if (limits_[p] == 0) continue;
      std::string& key = check->keys[check->count];
      key.clear();
      absl::StrAppend(&key, "ratelimit:", key_scope_, identifier, ":", windows.start_s[p] * 1000, ":", kNames[p]);
      check->period[check->count++] = p;
    }
    std::string& command = worker.command;
    command.clear();
    AppendRespArray(&command, 1 + static_cast<size_t>(check->count));
    AppendRespBulk(&command, "MGET");
    for (int i = 0; i < check->count; ++i) AppendRespBulk(&command, check->keys[i]);
    if (!check->connection->Send(command, &OnUsage, check)) {
      worker.Release(check);
      return Unavailable(request);
    }
    request.suspended_data = check;
    return StepStatus::kSuspend;
  }

  static void OnUsage(void* data, redisReply* reply) {
    auto* check = static_cast<RedisCheck*>(data);
    RequestContext* request = check->request;
    RedisWorker& worker = *check->worker;  // (not Of(): it may be closing)
    if (request == nullptr) {  // cancelled
      worker.Release(check);
      return;
    }
    const RateLimiting& self = *check->handler;
    uint64_t before[kPeriods] = {0};
    bool ok = reply != nullptr && reply->type == REDIS_REPLY_ARRAY && reply->elements == static_cast<size_t>(check->count);
    for (int i = 0; ok && i < check->count; ++i) {
      const redisReply* item = reply->element[i];
      uint64_t n = 0;
      if (item->type == REDIS_REPLY_STRING) {
        ok = absl::SimpleAtoi(absl::string_view(item->str, item->len), &n);
      } else {
        ok = item->type == REDIS_REPLY_NIL;
      }
      before[check->period[i]] = n;
    }
    if (!ok) {
      if (reply != nullptr) {  // (a failed connection has logged already)
        check->connection->LogError(reply->type == REDIS_REPLY_ERROR
                                        ? absl::string_view(reply->str, reply->len)
                                        : absl::string_view("unexpected reply to MGET"));
      }
      worker.Release(check);
      ResumePluginChain(*request, self.Unavailable(*request));
      return;
    }
    int stop = -1;
    for (int p = 0; p < kPeriods; ++p) {
      if (self.limits_[p] != 0 && before[p] + 1 > self.limits_[p] && stop < 0) stop = p;
    }
    uint64_t used[kPeriods];
    for (int p = 0; p < kPeriods; ++p) used[p] = before[p] + (stop < 0 ? 1 : 0);
    if (stop < 0) {
      for (int i = 0; i < check->count; ++i) {
        std::string& command = worker.command;
        command.clear();
        AppendRespArray(&command, 3);
        AppendRespBulk(&command, "INCRBY");
        AppendRespBulk(&command, check->keys[i]);
        AppendRespBulk(&command, "1");
        check->connection->Send(command, &OnIncrement, check->connection);
        command.clear();
        AppendRespArray(&command, 3);
        AppendRespBulk(&command, "EXPIRE");
        AppendRespBulk(&command, check->keys[i]);
        AppendRespBulk(&command, kExpirations[check->period[i]]);
        check->connection->Send(command, &OnIncrement, check->connection);
      }
    }
    const Windows windows = check->windows;
    worker.Release(check);
    if (!self.hide_client_headers_) self.AddHeaders(*request, used, windows, stop);
    ResumePluginChain(*request, self.Decide(*request, stop));
  }

  static void OnIncrement(void* data, redisReply* reply) {
    if (reply != nullptr && reply->type == REDIS_REPLY_ERROR) {
      static_cast<RedisConnection*>(data)->LogError(absl::string_view(reply->str, reply->len));
    }
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
  handler->fault_tolerant_ = config["fault_tolerant"].get<bool>();
  handler->error_code_ = config["error_code"].get<int>();
  handler->error_message_ = config["error_message"].get<std::string>();
  handler->counters_ = &ProcessCounters();
  handler->plugin_id_ = context.plugin.id();
  if (config["policy"] == "redis") {
    const nlohmann::json& redis = config["redis"];
    RedisEndpoint endpoint;
    endpoint.host = redis["host"].get<std::string>();
    endpoint.port = static_cast<uint16_t>(redis["port"].get<int>());
    endpoint.timeout_ms = redis["timeout"].get<int64_t>();
    if (redis["username"].is_string()) endpoint.username = redis["username"].get<std::string>();
    if (redis["password"].is_string()) endpoint.password = redis["password"].get<std::string>();
    endpoint.database = redis["database"].get<int64_t>();
    endpoint.key = RedisEndpointKey(endpoint);
    handler->redis_ = std::move(endpoint);
    const config::v1::Plugin& plugin = context.plugin;
    handler->key_scope_ = absl::StrCat(plugin.has_route_id() ? absl::string_view(plugin.route_id()) : kEmptyUuid, ":",
                                       plugin.has_service_id() ? absl::string_view(plugin.service_id()) : kEmptyUuid, ":");
  }
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
