#include "data_plane/plugins/rate_limiting/redis_connection.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"

namespace portico::dp::plugins {
namespace {

constexpr uint64_t kFirstBackoffMs = 100;
constexpr uint64_t kMaxBackoffMs = 2000;
constexpr uint64_t kLogIntervalMs = 10000;

// hiredis's event hooks on a uv_poll_t (instead of hiredis 0.14's adapters/libuv.h, which ignores
// a poll error: libuv reports POLLERR, e.g. a refused connect, as an error status and stops the
// handle, so the adapter's connection would hang until our timeout).
struct PollEvents {
  redisAsyncContext* ac;  // null once hiredis has let go (cleanup)
  uv_poll_t handle;
  int events = 0;

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* p = static_cast<PollEvents*>(handle->data);
    if (status < 0) events = p->events != 0 ? p->events : UV_READABLE;  // hiredis reads the socket error
    if (p->ac != nullptr && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
    if (p->ac != nullptr && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
    if (status < 0 && p->ac != nullptr && p->events != 0) uv_poll_start(&p->handle, p->events, &OnPoll);
  }
  static void Update(void* data, int add, int remove) {
    auto* p = static_cast<PollEvents*>(data);
    p->events = (p->events | add) & ~remove;
    if (p->events != 0) {
      uv_poll_start(&p->handle, p->events, &OnPoll);
    } else {
      uv_poll_stop(&p->handle);
    }
  }
  static void AddRead(void* data) { Update(data, UV_READABLE, 0); }
  static void DelRead(void* data) { Update(data, 0, UV_READABLE); }
  static void AddWrite(void* data) { Update(data, UV_WRITABLE, 0); }
  static void DelWrite(void* data) { Update(data, 0, UV_WRITABLE); }
  static void Cleanup(void* data) {
    auto* p = static_cast<PollEvents*>(data);
    p->ac = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), [](uv_handle_t* h) { delete static_cast<PollEvents*>(h->data); });
  }

  // Hooks `ac` to `loop`; false if the socket cannot be polled.
  static bool Attach(redisAsyncContext* ac, uv_loop_t* loop) {
    auto* p = new PollEvents{ac, {}, 0};
    if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
      delete p;
      return false;
    }
    p->handle.data = p;
    ac->ev.data = p;
    ac->ev.addRead = &AddRead;
    ac->ev.delRead = &DelRead;
    ac->ev.addWrite = &AddWrite;
    ac->ev.delWrite = &DelWrite;
    ac->ev.cleanup = &Cleanup;
    return true;
  }
};

}  // namespace

std::string RedisEndpointKey(const RedisEndpoint& e) {
  // Length-prefixed parts: no two endpoints share a key.
  return absl::StrCat(e.host.size(), ":", e.host, "|", e.port, "|", e.database, "|", e.username.size(), ":",
                      e.username, "|", e.password);
}

void AppendRespArray(std::string* out, size_t count) { absl::StrAppend(out, "*", count, "\r\n"); }

void AppendRespBulk(std::string* out, absl::string_view argument) {
  absl::StrAppend(out, "$", argument.size(), "\r\n", argument, "\r\n");
}

struct RedisConnection::Uv {
  static void Timer(uv_timer_t* t) { static_cast<RedisConnection*>(t->data)->OnTimer(); }
  static void TimerClosed(uv_handle_t* h) {
    auto* self = static_cast<RedisConnection*>(h->data);
    self->timer_closed_ = true;
    self->MaybeDelete();
  }
  static void Resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* result) {
    auto* self = static_cast<RedisConnection*>(req->data);
    self->resolving_ = false;
    self->Resolved(status, result);
    uv_freeaddrinfo(result);
  }
};

RedisConnection::RedisConnection(uv_loop_t* loop, RedisEndpoint endpoint)
    : loop_(loop), endpoint_(std::move(endpoint)), backoff_ms_(kFirstBackoffMs) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  resolve_.data = this;
}

RedisConnection::~RedisConnection() = default;

bool RedisConnection::Send(absl::string_view command, RedisCallback callback, void* data) {
  if (closing_) return false;
  if (state_ == State::kDown) {
    if (uv_now(loop_) < retry_at_ms_) return false;
    state_ = State::kIdle;
  }
  if (state_ == State::kIdle) Connect();
  if (state_ == State::kDown) return false;  // failed at once
  return SendInternal(command, callback, data);
}

bool RedisConnection::SendInternal(absl::string_view command, RedisCallback callback, void* data) {
  Pending* p = pending_pool_.Take().release();  // owned by the list until Complete
  p->callback = callback;
  p->data = data;
  p->deadline_ms = uv_now(loop_) + static_cast<uint64_t>(endpoint_.timeout_ms);
  p->prev = last_;
  p->next = nullptr;
  (last_ != nullptr ? last_->next : first_) = p;
  last_ = p;
  if (!Submit(p, command)) {
    Unlink(p);
    pending_pool_.Give(std::unique_ptr<Pending>(p));
    return false;
  }
  ArmTimer();
  return true;
}

bool RedisConnection::Submit(Pending* p, absl::string_view command) {
  if (ac_ == nullptr) {  // resolving: sent once connected
    p->in_hiredis = false;
    p->queued_offset = queued_.size();
    p->queued_size = command.size();
    queued_.append(command.data(), command.size());
    return true;
  }
  p->in_hiredis = true;
  return redisAsyncFormattedCommand(ac_, &RedisConnection::OnReply, p, command.data(), command.size()) == REDIS_OK;
}

void RedisConnection::Connect() {
  state_ = State::kResolving;
  unsigned char buf[sizeof(struct in6_addr)];
  const char* host = endpoint_.host.c_str();
  if (uv_inet_pton(AF_INET, host, buf) == 0 || uv_inet_pton(AF_INET6, host, buf) == 0) {
    ConnectTo(host);
    return;
  }
  if (resolving_) return;  // an earlier lookup is still running: its answer is used
  // A name: resolved on libuv's thread pool (hiredis would call getaddrinfo on the loop).
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (int rc = uv_getaddrinfo(loop_, &resolve_, &Uv::Resolved, host, nullptr, &hints); rc != 0) {
    Fail(absl::StrCat("cannot resolve ", endpoint_.host, ": ", uv_strerror(rc)));
    return;
  }
  resolving_ = true;
}

void RedisConnection::Resolved(int status, struct addrinfo* result) {
  if (closing_) {
    MaybeDelete();
    return;
  }
  if (state_ != State::kResolving) return;  // given up meanwhile (timeout)
  if (status != 0 || result == nullptr) {
    Fail(absl::StrCat("cannot resolve ", endpoint_.host, ": ", uv_strerror(status)));
    return;
  }
  char ip[INET6_ADDRSTRLEN] = {0};
  if (result->ai_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(result->ai_addr), ip, sizeof(ip));
  } else {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(result->ai_addr), ip, sizeof(ip));
  }
  ConnectTo(ip);
}

void RedisConnection::ConnectTo(const char* ip) {
  redisAsyncContext* ac = redisAsyncConnect(ip, endpoint_.port);
  if (ac == nullptr || ac->err != 0) {
    std::string what = absl::StrCat("cannot connect: ", ac != nullptr ? ac->errstr : "out of memory");
    if (ac != nullptr) redisAsyncFree(ac);
    Fail(what);
    return;
  }
  if (!PollEvents::Attach(ac, loop_)) {
    redisAsyncFree(ac);
    Fail("cannot attach the connection to the loop");
    return;
  }
  ac->data = this;
  redisAsyncSetConnectCallback(ac, &RedisConnection::OnConnect);
  redisAsyncSetDisconnectCallback(ac, &RedisConnection::OnDisconnect);
  ac_ = ac;
  state_ = State::kConnecting;

  // AUTH and SELECT go first (replies come in order); then what waited for the name.
  Pending* waiting = nullptr;
  Pending** tail = &waiting;
  for (Pending* p = first_; p != nullptr;) {
    Pending* next = p->next;
    if (!p->in_hiredis) {
      Unlink(p);
      *tail = p;
      tail = &p->next;
    }
    p = next;
  }
  if (!endpoint_.password.empty()) {
    setup_.clear();
    AppendRespArray(&setup_, endpoint_.username.empty() ? 2 : 3);
    AppendRespBulk(&setup_, "AUTH");
    if (!endpoint_.username.empty()) AppendRespBulk(&setup_, endpoint_.username);
    AppendRespBulk(&setup_, endpoint_.password);
    SendInternal(setup_, &RedisConnection::OnSetupReply, this);
  }
  if (endpoint_.database != 0) {
    setup_.clear();
    AppendRespArray(&setup_, 2);
    AppendRespBulk(&setup_, "SELECT");
    AppendRespBulk(&setup_, absl::StrCat(endpoint_.database));
    SendInternal(setup_, &RedisConnection::OnSetupReply, this);
  }
  while (waiting != nullptr) {
    Pending* p = waiting;
    waiting = p->next;
    p->prev = last_;
    p->next = nullptr;
    (last_ != nullptr ? last_->next : first_) = p;
    last_ = p;
    if (!Submit(p, absl::string_view(queued_).substr(p->queued_offset, p->queued_size))) {
      Unlink(p);
      Complete(p, nullptr);
    }
  }
  queued_.clear();
  ArmTimer();
}

void RedisConnection::OnSetupReply(void* data, redisReply* reply) {
  auto* self = static_cast<RedisConnection*>(data);
  if (reply == nullptr || self->closing_) return;  // the connection failed: already reported
  if (reply->type == REDIS_REPLY_ERROR) {
    // Redis's text names the problem (WRONGPASS, ERR DB index...), never the password.
    self->Fail(absl::StrCat("AUTH/SELECT refused: ", absl::string_view(reply->str, reply->len)));
  }
}

void RedisConnection::OnConnect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisConnection*>(ac->data);
  if (self == nullptr || self->ac_ != ac) return;
  if (status != REDIS_OK) {
    // hiredis frees the context after this callback and fails its commands.
    std::string what = absl::StrCat("cannot connect: ", ac->errstr);
    self->ac_ = nullptr;
    self->Fail(what);
    return;
  }
  self->state_ = State::kReady;
  self->backoff_ms_ = kFirstBackoffMs;
  if (self->failed_since_ready_) {
    self->failed_since_ready_ = false;
    PORTICO_LOG(kInfo, "rate-limiting", "Redis ", self->endpoint_.host, ":", self->endpoint_.port, ": connected");
  }
}

void RedisConnection::OnDisconnect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisConnection*>(ac->data);
  if (self == nullptr || self->ac_ != ac) return;  // we freed it (Fail, Close)
  self->ac_ = nullptr;
  self->Fail(status == REDIS_OK ? std::string("connection closed") : absl::StrCat("connection lost: ", ac->errstr));
}

void RedisConnection::OnReply(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* self = static_cast<RedisConnection*>(ac->data);
  auto* p = static_cast<Pending*>(privdata);
  self->Unlink(p);
  self->Complete(p, static_cast<redisReply*>(reply));
  if (!self->closing_) self->ArmTimer();
}

void RedisConnection::Complete(Pending* p, redisReply* reply) {
  RedisCallback callback = p->callback;
  void* data = p->data;
  pending_pool_.Give(std::unique_ptr<Pending>(p));
  callback(data, reply);
}

void RedisConnection::Fail(absl::string_view what) {
  LogError(what);
  failed_since_ready_ = true;
  state_ = State::kDown;
  retry_at_ms_ = uv_now(loop_) + backoff_ms_;
  backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
  // Commands hiredis holds fail when it frees the context (at once, or after the callback it is
  // in); those still waiting for the name fail here.
  if (ac_ != nullptr) {
    redisAsyncContext* ac = ac_;
    ac_ = nullptr;
    redisAsyncFree(ac);
  }
  Pending* p = first_;
  while (p != nullptr) {
    Pending* next = p->next;
    if (!p->in_hiredis) {
      Unlink(p);
      Complete(p, nullptr);
    }
    p = next;
  }
  queued_.clear();
  if (first_ == nullptr && !closing_) uv_timer_stop(&timer_);
}

void RedisConnection::LogError(absl::string_view what) {
  const uint64_t now = uv_now(loop_);
  if (logged_once_ && now - last_log_ms_ < kLogIntervalMs) {
    ++not_logged_;
    return;
  }
  PORTICO_LOG(kError, "rate-limiting", "Redis ", endpoint_.host, ":", endpoint_.port, ": ", what,
              not_logged_ > 0 ? absl::StrCat(" (", not_logged_, " more errors since the last report)") : "");
  logged_once_ = true;
  last_log_ms_ = now;
  not_logged_ = 0;
}

void RedisConnection::ArmTimer() {
  if (first_ == nullptr) {
    uv_timer_stop(&timer_);
    return;
  }
  const uint64_t now = uv_now(loop_);
  uv_timer_start(&timer_, &Uv::Timer, first_->deadline_ms > now ? first_->deadline_ms - now : 0, 0);
}

void RedisConnection::OnTimer() {
  if (first_ == nullptr) return;
  if (first_->deadline_ms > uv_now(loop_)) {
    ArmTimer();
    return;
  }
  Fail(absl::StrCat("no reply within ", endpoint_.timeout_ms, " ms"));
}

void RedisConnection::Close() {
  closing_ = true;
  if (ac_ != nullptr) {
    redisAsyncContext* ac = ac_;
    ac_ = nullptr;
    redisAsyncFree(ac);  // fails what it holds
  }
  while (first_ != nullptr) {
    Pending* p = first_;
    Unlink(p);
    Complete(p, nullptr);
  }
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &Uv::TimerClosed);
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_));  // its callback still runs
}

void RedisConnection::MaybeDelete() {
  if (closing_ && timer_closed_ && !resolving_) delete this;
}


void RedisConnection::Unlink(Pending* p) {
  (p->prev != nullptr ? p->prev->next : first_) = p->next;
  (p->next != nullptr ? p->next->prev : last_) = p->prev;
  p->prev = p->next = nullptr;
}

}  // namespace portico::dp::plugins
