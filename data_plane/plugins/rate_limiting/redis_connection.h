#pragma once
// One asynchronous connection to a Redis from one worker loop (hiredis with its libuv adapter):
// opened on first use, AUTH and SELECT sent first, commands pipelined in order. Bounded outcome:
// every command gets its callback exactly once, on the loop, with the reply or with null (Redis
// unreachable, an error on the connection, no reply within the command's timeout, the worker
// stopping). After a failure the connection is down for a backoff (100 ms doubling to 2 s, reset
// on a successful connect): Send refuses at once meanwhile, so a down Redis costs requests no
// wait. Errors are logged at most once per 10 s per connection, with the count of those not
// logged; the password is never logged. Not thread-safe: the loop's thread only.
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/free_list.h"

struct redisAsyncContext;
struct redisReply;

namespace portico::dp::plugins {

// Where and how to connect (the plugin's `redis` record, compiled once per snapshot).
struct RedisEndpoint {
  std::string host;
  uint16_t port = 6379;
  std::string username;  // empty: AUTH with the password only
  std::string password;  // empty: no AUTH
  int64_t database = 0;
  int64_t timeout_ms = 2000;  // connect, and each command's reply
  // host, port, database and credentials: connections are shared by endpoints with equal keys.
  std::string key;
};
std::string RedisEndpointKey(const RedisEndpoint& endpoint);

// RESP encoding of one command: the number of arguments, then each argument. Appends to `out`
// (nothing allocated once its capacity suffices).
void AppendRespArray(std::string* out, size_t count);
void AppendRespBulk(std::string* out, absl::string_view argument);

// Receives a command's reply (owned by hiredis, valid during the call), or null on failure.
using RedisCallback = void (*)(void* data, redisReply* reply);

class RedisConnection {
 public:
  RedisConnection(uv_loop_t* loop, RedisEndpoint endpoint);
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Queues `command` (RESP, one command). False when Redis is down (in backoff) or the
  // connection cannot take it: `callback` will not be called. True: it will be, exactly once.
  bool Send(absl::string_view command, RedisCallback callback, void* data);
  // Logs `what` about this Redis, at most once per interval.
  void LogError(absl::string_view what);
  const RedisEndpoint& endpoint() const { return endpoint_; }

  // Fails what is pending and closes; deletes itself once its handles are closed.
  void Close();

 private:
  ~RedisConnection();
  enum class State { kIdle, kResolving, kConnecting, kReady, kDown };
  struct Pending {
    Pending* next = nullptr;
    Pending* prev = nullptr;
    RedisCallback callback = nullptr;
    void* data = nullptr;
    uint64_t deadline_ms = 0;
    bool in_hiredis = false;  // given to hiredis (else its bytes wait in queued_)
    size_t queued_offset = 0, queued_size = 0;
  };
  struct Uv;

  void Connect();
  void Resolved(int status, struct addrinfo* result);
  void ConnectTo(const char* ip);
  bool Submit(Pending* pending, absl::string_view command);
  bool SendInternal(absl::string_view command, RedisCallback callback, void* data);
  void Fail(absl::string_view what);
  void Complete(Pending* pending, redisReply* reply);
  void ArmTimer();
  void OnTimer();
  void MaybeDelete();
  void Unlink(Pending* pending);
  static void OnSetupReply(void* data, redisReply* reply);
  // hiredis callbacks
  static void OnReply(redisAsyncContext* ac, void* reply, void* privdata);
  static void OnConnect(const redisAsyncContext* ac, int status);
  static void OnDisconnect(const redisAsyncContext* ac, int status);

  uv_loop_t* const loop_;
  const RedisEndpoint endpoint_;
  State state_ = State::kIdle;
  redisAsyncContext* ac_ = nullptr;
  uv_timer_t timer_;
  uv_getaddrinfo_t resolve_;
  bool resolving_ = false;
  bool closing_ = false;
  bool timer_closed_ = false;
  uint64_t retry_at_ms_ = 0;
  uint64_t backoff_ms_;
  bool failed_since_ready_ = false;  // a failure was logged: say so when connected again
  uint64_t last_log_ms_ = 0;
  bool logged_once_ = false;
  uint64_t not_logged_ = 0;
  Pending* first_ = nullptr;  // in send order (the order of the replies)
  Pending* last_ = nullptr;
  FreeList<Pending> pending_pool_{256};
  std::string queued_;  // commands sent while the host is being resolved
  std::string setup_;   // AUTH / SELECT
};

}  // namespace portico::dp::plugins
