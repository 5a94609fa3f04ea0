#include "data_plane/proxy/upstream_connection.h"

#include <sys/socket.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "data_plane/proxy/worker.h"

namespace portico::proxy {
namespace {

// Owns the bytes of one uv_write until its callback.
struct WriteRequest {
  uv_write_t req;
  std::string data;
};

}  // namespace

// libuv trampolines: recover the connection from handle->data and forward to one member.
struct UpstreamConnection::Uv {
  static UpstreamConnection* Self(uv_handle_t* h) { return static_cast<UpstreamConnection*>(h->data); }
  static void Connected(uv_connect_t* req, int status) {
    static_cast<UpstreamConnection*>(req->data)->OnConnected(status);
  }
  static void Alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    buf->base = Self(h)->worker_.read_buffer();
    buf->len = kReadBufferBytes;
  }
  static void Read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    Self(reinterpret_cast<uv_handle_t*>(s))->OnRead(nread, buf->base);
  }
  static void Written(uv_write_t* req, int status) {
    auto* write = reinterpret_cast<WriteRequest*>(req);
    UpstreamConnection* self = Self(reinterpret_cast<uv_handle_t*>(req->handle));
    const size_t bytes = write->data.size();
    delete write;
    self->OnWriteDone(bytes, status);
  }
  static void Timer(uv_timer_t* t) { Self(reinterpret_cast<uv_handle_t*>(t))->OnTimer(); }
  static void Closed(uv_handle_t* h) { Self(h)->OnHandleClosed(); }
};

UpstreamConnection::UpstreamConnection(Worker& worker, std::string pool_key, size_t max_head_bytes)
    : worker_(worker), pool_key_(std::move(pool_key)), parser_(Http1Parser::Kind::kResponse, this, max_head_bytes) {}

UpstreamConnection::~UpstreamConnection() = default;

absl::Status UpstreamConnection::Connect(const struct sockaddr* address) {
  uv_tcp_init(worker_.loop(), &tcp_);
  tcp_.data = this;
  uv_timer_init(worker_.loop(), &timer_);
  timer_.data = this;
  handles_initialised_ = true;
  connect_req_.data = this;
  state_ = State::kConnecting;
  if (int rc = uv_tcp_connect(&connect_req_, &tcp_, address, Uv::Connected); rc != 0) {
    return absl::UnavailableError(absl::StrCat("connect: ", uv_strerror(rc)));
  }
  return absl::OkStatus();
}

void UpstreamConnection::Attach(UpstreamObserver* observer, const UpstreamTimeouts& timeouts) {
  observer_ = observer;
  timeouts_ = timeouts;
  awaiting_response_ = true;
  response_bytes_seen_ = false;
  interim_ = false;
  interim_done_ = false;
  reading_paused_ = false;
  UpdateReading();
  RearmTimer();
}

void UpstreamConnection::MarkTakenFromPool() {
  state_ = State::kActive;
}

bool UpstreamConnection::PeerSilent() {
  uv_os_fd_t fd = -1;
  if (!handles_initialised_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return false;
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void UpstreamConnection::Write(std::initializer_list<absl::string_view> parts) {
  if (state_ == State::kClosing || has_deferred_error_) return;
  size_t total = 0;
  for (absl::string_view part : parts) total += part.size();
  if (total == 0) return;
  assert(state_ != State::kConnecting && "UpstreamConnection::Write before OnUpstreamConnected");
  StartWrite(parts.begin(), parts.size(), total);
  RearmTimer();
}

void UpstreamConnection::StartWrite(const absl::string_view* parts, size_t count, size_t total) {
  assert(count <= kMaxWriteParts);
  uv_buf_t bufs[kMaxWriteParts];
  size_t buf_count = 0;
  for (size_t i = 0; i < count && i < kMaxWriteParts; ++i) {
    if (parts[i].empty()) continue;
    bufs[buf_count++] = uv_buf_init(const_cast<char*>(parts[i].data()), static_cast<unsigned int>(parts[i].size()));
  }
  // uv_try_write: no request, no drain callback, no epoll_ctl when the kernel takes it all. It
  // refuses (UV_EAGAIN) while earlier uv_writes are queued, which keeps the byte order.
  const int tried = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), bufs, static_cast<unsigned int>(buf_count));
  size_t skip = tried > 0 ? static_cast<size_t>(tried) : 0;  // errors resurface from uv_write
  if (skip >= total) return;
  auto* write = new WriteRequest;
  write->data.reserve(total - skip);
  for (size_t i = 0; i < count; ++i) {
    absl::string_view part = parts[i];
    const size_t dropped = std::min(skip, part.size());
    part.remove_prefix(dropped);
    skip -= dropped;
    write->data.append(part.data(), part.size());
  }
  pending_write_bytes_ += write->data.size();
  uv_buf_t buf = uv_buf_init(write->data.data(), static_cast<unsigned int>(write->data.size()));
  if (uv_write(&write->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, Uv::Written) != 0) {
    pending_write_bytes_ -= write->data.size();
    delete write;
    FailSoon(UpstreamError::kClosed);
  }
}

void UpstreamConnection::PauseReading() {
  reading_paused_ = true;
  UpdateReading();
  RearmTimer();
}

void UpstreamConnection::ResumeReading() {
  if (!reading_paused_) return;
  reading_paused_ = false;
  UpdateReading();
  RearmTimer();
}

void UpstreamConnection::Release(bool reusable) {
  observer_ = nullptr;
  awaiting_response_ = false;
  if (state_ != State::kActive) return;  // already closing
  if (!reusable || !reusable_ || !parser_.head().keep_alive || parser_.in_message() || !worker_.AddIdle(this)) {
    Close();
    return;
  }
  state_ = State::kIdle;
  reading_paused_ = false;
  UpdateReading();  // keep reading while idle to notice the peer closing
  RearmTimer();
}

void UpstreamConnection::Abort() {
  observer_ = nullptr;
  Close();
}

void UpstreamConnection::Close() {
  if (state_ == State::kClosing) return;
  if (state_ == State::kIdle) worker_.RemoveIdle(this);
  state_ = State::kClosing;
  observer_ = nullptr;
  if (!handles_initialised_) {
    worker_.Destroy(this);
    return;
  }
  pending_closes_ = 2;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), Uv::Closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), Uv::Closed);
}

void UpstreamConnection::OnHandleClosed() {
  if (--pending_closes_ == 0) worker_.Destroy(this);  // freed after this loop iteration
}

void UpstreamConnection::OnConnected(int status) {
  if (state_ == State::kClosing) return;  // cancelled by uv_close
  if (status < 0) {
    Fail(UpstreamError::kConnectFailed);
    return;
  }
  state_ = State::kActive;
  uv_tcp_nodelay(&tcp_, 1);
  UpdateReading();
  RearmTimer();
  if (observer_ != nullptr) observer_->OnUpstreamConnected();
}

void UpstreamConnection::UpdateReading() {
  if (state_ == State::kClosing || state_ == State::kConnecting) return;
  const bool want = state_ == State::kIdle || !reading_paused_;
  if (want == reading_) return;
  if (want) {
    reading_ = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), Uv::Alloc, Uv::Read) == 0;
  } else {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void UpstreamConnection::RearmTimer() {
  if (state_ == State::kClosing || !handles_initialised_) return;
  if (has_deferred_error_) {
    SetDeadline(0);
    return;
  }
  int64_t ms = -1;
  switch (state_) {
    case State::kConnecting:
      ms = timeouts_.connect_ms;
      break;
    case State::kActive:
      if (pending_write_bytes_ > 0) {
        ms = timeouts_.write_ms;
      } else if (awaiting_response_ && !reading_paused_) {
        ms = timeouts_.read_ms;
      }
      break;
    case State::kIdle:
      ms = kUpstreamIdleTimeoutMs;
      break;
    case State::kClosing:
      break;
  }
  SetDeadline(ms);
}

void UpstreamConnection::SetDeadline(int64_t ms) {
  // Lazy timer: the deadline is a field; the libuv timer is (re)started only when it is not
  // armed or armed too late. One that fires early re-arms for the rest (OnTimer), and one that
  // fires with no deadline set just stops. Moving the deadline later, which is what every read,
  // write and state change of a keep-alive exchange does, costs no timer-heap operation.
  if (ms < 0) {
    deadline_ms_ = kNoDeadline;
    return;
  }
  deadline_ms_ = uv_now(worker_.loop()) + static_cast<uint64_t>(ms);
  if (!timer_armed_ || armed_deadline_ms_ > deadline_ms_) {
    uv_timer_start(&timer_, Uv::Timer, static_cast<uint64_t>(ms), 0);
    timer_armed_ = true;
    armed_deadline_ms_ = deadline_ms_;
  }
}

void UpstreamConnection::OnTimer() {
  timer_armed_ = false;
  if (state_ == State::kClosing) return;
  if (!has_deferred_error_) {
    if (deadline_ms_ == kNoDeadline) return;
    const uint64_t now = uv_now(worker_.loop());
    if (now < deadline_ms_) {  // fired for an earlier deadline that has moved since
      uv_timer_start(&timer_, Uv::Timer, deadline_ms_ - now, 0);
      timer_armed_ = true;
      armed_deadline_ms_ = deadline_ms_;
      return;
    }
  }
  if (has_deferred_error_) {
    Fail(deferred_error_);
    return;
  }
  switch (state_) {
    case State::kConnecting:
      Fail(UpstreamError::kConnectTimeout);
      return;
    case State::kActive:
      Fail(pending_write_bytes_ > 0 ? UpstreamError::kWriteTimeout : UpstreamError::kReadTimeout);
      return;
    case State::kIdle:
      Close();
      return;
    case State::kClosing:
      return;
  }
}

void UpstreamConnection::FailSoon(UpstreamError error) {
  if (has_deferred_error_) return;
  has_deferred_error_ = true;
  deferred_error_ = error;
  RearmTimer();
}

void UpstreamConnection::Fail(UpstreamError error) {
  UpstreamObserver* observer = observer_;
  const bool seen = response_bytes_seen_;
  Close();
  if (observer != nullptr) observer->OnUpstreamFailure(error, seen);
}

void UpstreamConnection::OnWriteDone(size_t bytes, int status) {
  pending_write_bytes_ -= bytes;
  if (state_ == State::kClosing) return;
  if (status < 0) {
    if (state_ == State::kIdle) {
      Close();
    } else {
      Fail(UpstreamError::kClosed);
    }
    return;
  }
  RearmTimer();
  if (observer_ != nullptr && pending_write_bytes_ < kLowWaterBytes) observer_->OnUpstreamWriteDrained();
}

void UpstreamConnection::OnRead(ssize_t nread, const char* data) {
  if (state_ == State::kClosing || nread == 0) return;
  if (state_ == State::kIdle) {
    Close();  // the peer closed (or sent junk) while pooled
    return;
  }
  if (nread < 0) {
    if (nread == UV_EOF && awaiting_response_ && parser_.in_message() && parser_.NeedsEof()) {
      if (parser_.Finish() == Http1Parser::Outcome::kMessageDone) {
        reusable_ = false;
        CompleteResponse();
        return;
      }
    }
    Fail(UpstreamError::kClosed);
    return;
  }
  if (!awaiting_response_) {
    Close();  // bytes nobody asked for
    return;
  }
  response_bytes_seen_ = true;
  const char* p = data;
  size_t n = static_cast<size_t>(nread);
  while (true) {
    const Http1Parser::Result result = parser_.Execute(p, n);
    if (state_ == State::kClosing) return;  // the observer aborted from a callback
    switch (result.outcome) {
      case Http1Parser::Outcome::kNeedMore:
        NotifyReadEnd();
        RearmTimer();
        return;
      case Http1Parser::Outcome::kMessageDone:
        p += result.consumed;
        n -= result.consumed;
        if (interim_done_) {  // a 1xx response: keep parsing for the final one
          interim_done_ = false;
          if (n == 0) {
            NotifyReadEnd();
            RearmTimer();
            return;
          }
          continue;
        }
        if (n > 0) reusable_ = false;  // bytes after the response: do not trust this connection
        CompleteResponse();
        return;
      case Http1Parser::Outcome::kHeadTooLarge:
      case Http1Parser::Outcome::kError:
        Fail(UpstreamError::kInvalidResponse);
        return;
    }
  }
}

void UpstreamConnection::NotifyReadEnd() {
  if (observer_ != nullptr && state_ == State::kActive) observer_->OnUpstreamReadEnd();
}

void UpstreamConnection::CompleteResponse() {
  awaiting_response_ = false;
  deadline_ms_ = kNoDeadline;
  if (observer_ != nullptr) {
    observer_->OnUpstreamComplete();  // calls Release() or Abort()
  } else {
    Close();
  }
}

Http1ParserDelegate::HeadAction UpstreamConnection::OnHead(const Http1Head& head) {
  if (head.status == 101) return HeadAction::kError;  // upgrades are not proxied
  if (head.status >= 100 && head.status < 200) {
    interim_ = true;
    return HeadAction::kSkipBody;
  }
  interim_ = false;
  if (observer_ == nullptr) return HeadAction::kError;
  return observer_->OnUpstreamHead(head);
}

void UpstreamConnection::OnBody(absl::string_view data) {
  if (observer_ != nullptr) observer_->OnUpstreamBody(data);
}

void UpstreamConnection::OnMessageComplete() {
  if (interim_) {
    interim_ = false;
    interim_done_ = true;
  }
}

}  // namespace portico::proxy
