#include "data_plane/proxy/upstream_connection.h"

#include <cassert>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "data_plane/proxy/worker.h"

namespace portico::dp {

// The connection's own timer (the stream callbacks are the transport's).
struct UpstreamConnection::Uv {
  static UpstreamConnection* Self(uv_handle_t* h) { return static_cast<UpstreamConnection*>(h->data); }
  static void Timer(uv_timer_t* t) { Self(reinterpret_cast<uv_handle_t*>(t))->OnTimer(); }
  static void Closed(uv_handle_t* h) { Self(h)->OnHandleClosed(); }
};

UpstreamConnection::UpstreamConnection(Worker& worker, std::string pool_key, size_t max_head_bytes)
    : worker_(worker),
      pool_key_(std::move(pool_key)),
      tcp_(worker.loop(), worker.read_buffer(), kReadBufferBytes, this),
      codec_(Http1Codec::Kind::kResponse, this, max_head_bytes) {
  uv_timer_init(worker.loop(), &timer_);
  timer_.data = this;
}

UpstreamConnection::~UpstreamConnection() = default;

void UpstreamConnection::UseTls(SSL* ssl, char* plain_buffer, size_t plain_buffer_size) {
  tls_ = std::make_unique<TlsTransport>(&tcp_, ssl, TlsTransport::Role::kClient, plain_buffer, plain_buffer_size,
                                        this);
}

void UpstreamConnection::OnUpstreamTlsSession(SSL_SESSION* session) { worker_.KeepUpstreamTlsSession(pool_key_, session); }

void UpstreamConnection::LogTlsFailure(UpstreamError error) {
  if (error != UpstreamError::kConnectFailed && error != UpstreamError::kClosed) return;  // timeouts, bad responses
  // A close, reset or failed write before any response byte on the connection's first exchange,
  // with no TLS reason: what a server that refuses the client certificate after a TLS 1.3
  // handshake does when its reset overtakes its alert.
  const bool closed_after_handshake = tls_->error().empty() && error == UpstreamError::kClosed &&
                                      tls_->handshake_done() && first_exchange_ && !response_bytes_seen_;
  if ((tls_->error().empty() && !closed_after_handshake) || !worker_.AllowUpstreamTlsLog()) return;
  // The pool key is "target|context key|SNI".
  const absl::string_view key = pool_key_;
  const absl::string_view target = key.substr(0, key.find('|')), sni = key.substr(key.rfind('|') + 1);
  if (closed_after_handshake) {
    PORTICO_LOG(kWarn, "proxy", "upstream ", target, " (SNI \"", sni,
                "\"): the connection closed right after the TLS handshake, before any response: the server "
                "may have refused the client certificate");
    return;
  }
  PORTICO_LOG(kWarn, "proxy", "upstream ", target, " (SNI \"", sni, "\"): ", tls_->error());
}

absl::Status UpstreamConnectStatus(int rc) {
  switch (rc) {
    case 0:
      return absl::OkStatus();
    // This host's limits, not the target's fault (no socket, no local port, no memory).
    case UV_EMFILE:
    case UV_ENFILE:
    case UV_ENOBUFS:
    case UV_ENOMEM:
    case UV_EADDRNOTAVAIL:
    case UV_EAGAIN:
      return absl::ResourceExhaustedError(absl::StrCat("connect failed: ", uv_strerror(rc)));
    default:
      return absl::UnavailableError(absl::StrCat("connect failed: ", uv_strerror(rc)));
  }
}

absl::Status UpstreamConnection::Connect(const struct sockaddr* address) {
  state_ = State::kConnecting;
  return UpstreamConnectStatus(WithTransport([&](auto& t) { return t.Connect(address); }));
}

void UpstreamConnection::Attach(UpstreamObserver* observer, const UpstreamTimeouts& timeouts) {
  observer_ = observer;
  timeouts_ = timeouts;
  awaiting_response_ = true;
  response_bytes_seen_ = false;
  interim_ = false;
  reading_paused_ = false;
  UpdateReading();
  RearmTimer();
}

void UpstreamConnection::EnterTunnel(Tunnel* tunnel, int64_t idle_timeout_ms) {
  tunnel_ = tunnel;
  tunnel_idle_ms_ = idle_timeout_ms;
  observer_ = nullptr;
  awaiting_response_ = false;
  reusable_ = false;
  RearmTimer();
}

void UpstreamConnection::OnTransportShutdown(int status) {
  if (tunnel_ != nullptr && state_ != State::kClosing) tunnel_->OnShutdown(Tunnel::kUpstream, status);
}

void UpstreamConnection::MarkTakenFromPool() {
  state_ = State::kActive;
  first_exchange_ = false;
}

void UpstreamConnection::Write(std::initializer_list<absl::string_view> parts) {
  if (state_ == State::kClosing || has_deferred_error_) return;
  assert(parts.size() <= kMaxWriteParts);
  assert(state_ != State::kConnecting && "UpstreamConnection::Write before OnUpstreamConnected");
  if (!WithTransport([&](auto& t) { return t.Write(parts.begin(), parts.size()); })) {
    FailSoon(UpstreamError::kClosed);
  }
  RearmTimer();
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
  if (!reusable || !reusable_ || !codec_.head().keep_alive || codec_.in_message() || !worker_.AddIdle(this)) {
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
  if (tunnel_ != nullptr) {  // the client end closes with it
    Tunnel* tunnel = tunnel_;
    tunnel_ = nullptr;
    tunnel->Close();
  }
  pending_closes_ = 2;
  WithTransport([](auto& t) { t.Close(); });
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), Uv::Closed);
}

void UpstreamConnection::OnTransportClosed() { OnHandleClosed(); }

void UpstreamConnection::OnHandleClosed() {
  if (--pending_closes_ == 0) worker_.Destroy(this);  // freed after this loop iteration
}

void UpstreamConnection::OnTransportConnected(int status) {
  if (state_ == State::kClosing) return;
  if (status < 0) {
    Fail(UpstreamError::kConnectFailed);
    return;
  }
  state_ = State::kActive;
  WithTransport([](auto& t) { t.SetNoDelay(); });
  UpdateReading();
  RearmTimer();
  if (observer_ != nullptr) observer_->OnUpstreamConnected();
}

void UpstreamConnection::UpdateReading() {
  if (state_ == State::kClosing || state_ == State::kConnecting) return;
  if (state_ == State::kIdle || !reading_paused_) {
    WithTransport([](auto& t) { t.StartReading(); });
  } else {
    WithTransport([](auto& t) { t.StopReading(); });
  }
}

void UpstreamConnection::RearmTimer() {
  if (state_ == State::kClosing) return;
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
      if (tunnel_ != nullptr) {
        ms = tunnel_idle_ms_;  // silence in both directions
      } else if (pending_write_bytes() > 0) {
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
      if (tunnel_ != nullptr) {
        PORTICO_LOG(kDebug, "proxy", "WebSocket tunnel to ", pool_key_, " idle for ", tunnel_idle_ms_, " ms: closed");
        Close();
        return;
      }
      Fail(pending_write_bytes() > 0 ? UpstreamError::kWriteTimeout : UpstreamError::kReadTimeout);
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
  if (tls_ != nullptr) LogTlsFailure(error);
  UpstreamObserver* observer = observer_;
  const bool seen = response_bytes_seen_;
  Close();
  if (observer != nullptr) observer->OnUpstreamFailure(error, seen);
}

void UpstreamConnection::OnTransportWritten(size_t, int status) {
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
  if (tunnel_ != nullptr) {
    tunnel_->OnWritten(Tunnel::kUpstream);
    return;
  }
  if (observer_ != nullptr && pending_write_bytes() < kLowWaterBytes) observer_->OnUpstreamWriteDrained();
}

void UpstreamConnection::OnTransportEof() {
  if (state_ == State::kClosing) return;
  if (tunnel_ != nullptr) {
    tunnel_->OnEof(Tunnel::kUpstream);
    return;
  }
  if (state_ == State::kIdle) {
    Close();  // the peer closed while pooled
    return;
  }
  if (awaiting_response_ && codec_.in_message() && codec_.NeedsEof() &&
      codec_.Finish() == Http1Codec::Event::kMessageDone) {
    reusable_ = false;
    CompleteResponse();
    return;
  }
  Fail(UpstreamError::kClosed);
}

void UpstreamConnection::OnTransportReadError(int) {
  if (state_ == State::kClosing) return;
  if (state_ == State::kIdle) {
    Close();
    return;
  }
  Fail(UpstreamError::kClosed);
}

void UpstreamConnection::OnTransportRead(absl::string_view data) {
  if (state_ == State::kClosing) return;
  if (tunnel_ != nullptr) {
    tunnel_->OnRead(Tunnel::kUpstream, data);
    return;
  }
  if (state_ == State::kIdle || !awaiting_response_) {
    Close();  // bytes nobody asked for: never hand them to the next exchange
    return;
  }
  response_bytes_seen_ = true;
  while (true) {
    const Http1Codec::Result result = codec_.Execute(data.data(), data.size());
    if (state_ == State::kClosing) return;  // the observer aborted from a body callback
    data.remove_prefix(result.consumed);
    switch (result.event) {
      case Http1Codec::Event::kNeedMore:
        NotifyReadEnd();
        RearmTimer();
        return;
      case Http1Codec::Event::kHead: {
        const MessageHead& head = codec_.head();
        if (head.status == 101) {  // only a WebSocket upgrade the observer asked for becomes a tunnel
          if (observer_ == nullptr || !observer_->OnUpstreamSwitchingProtocols(head)) {
            Fail(UpstreamError::kInvalidResponse);
            return;
          }
          if (state_ == State::kClosing || tunnel_ == nullptr) return;
          if (!data.empty()) tunnel_->OnRead(Tunnel::kUpstream, data);  // frames right behind the head
          return;
        }
        if (head.status >= 100 && head.status < 200) {  // interim: dropped; the final one follows
          interim_ = true;
          codec_.SkipBody();
          continue;
        }
        interim_ = false;
        const UpstreamHeadAction action =
            observer_ != nullptr ? observer_->OnUpstreamHead(head) : UpstreamHeadAction::kError;
        if (state_ == State::kClosing) return;
        if (action == UpstreamHeadAction::kError) {
          Fail(UpstreamError::kInvalidResponse);
          return;
        }
        if (action == UpstreamHeadAction::kSkipBody) codec_.SkipBody();
        continue;
      }
      case Http1Codec::Event::kMessageDone:
        if (interim_) {
          interim_ = false;
          if (data.empty()) {
            NotifyReadEnd();
            RearmTimer();
            return;
          }
          continue;
        }
        // Bytes after the response (in this view, or still undecrypted in the TLS transport):
        // do not trust this connection.
        if (!data.empty() || (tls_ != nullptr && tls_->has_buffered_input())) reusable_ = false;
        CompleteResponse();
        return;
      case Http1Codec::Event::kHeadTooLarge:
      case Http1Codec::Event::kError:
        Fail(UpstreamError::kInvalidResponse);
        return;
    }
  }
}

bool UpstreamConnection::OnBody(absl::string_view data) {
  if (observer_ != nullptr) observer_->OnUpstreamBody(data);
  return true;
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

}  // namespace portico::dp
