#pragma once
// One HTTP/1 connection to an upstream, owned by its Worker: a transport (common/net), the
// response codec (common/http/http1_codec.h) and the connection's timeouts. Either attached to
// exactly one exchange (an UpstreamObserver) or idle in the worker's pool.
//
//   Connect()            Attach()             response done: Release(reusable)
//   ─────────▶ kConnecting ──connected──▶ kActive ───────────────────────────▶ kIdle (pooled)
//                  │                      ▲   │                                  │
//                  │                      └───┼──────── AcquireIdle() ◀──────────┘
//                  └──error/timeout──┐        │error/timeout/Abort()/not reusable│ peer close,
//                                    ▼        ▼                                  ▼ idle timeout
//                                  kClosing (transport and timer closed; freed by the worker)
//
// Thread-compatible: only ever touched on the owning worker's loop. Observer callbacks are never
// made synchronously from a method the observer called (errors found inside Write() are reported
// from the next loop iteration).
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>

#include <uv.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/http/http1_codec.h"
#include "common/net/tcp_transport.h"
#include "common/net/tls_transport.h"
#include "data_plane/balancer/upstream_tls.h"
#include "data_plane/proxy/tunnel.h"

namespace portico::dp {

class Worker;

enum class UpstreamError {
  kConnectFailed,         // refused / unreachable
  kConnectTimeout,
  kWriteTimeout,
  kReadTimeout,
  kClosed,                // EOF or reset before the response was complete
  kInvalidResponse,       // unparsable response head or body, or one the observer refused
  kDeadlineExceeded,      // HTTP/2 upstream: the request's grpc-timeout passed (stream cancelled)
};

struct UpstreamTimeouts {
  int64_t connect_ms = 60000;
  int64_t write_ms = 60000;
  int64_t read_ms = 60000;
};

// What the observer wants done with a final response head.
enum class UpstreamHeadAction {
  kContinue,  // relay the body
  kSkipBody,  // the response has no body (HEAD request, 204, 304), whatever its head says
  kError,     // refuse the response: the connection fails with kInvalidResponse
};

// What a transport's Connect() result means for an upstream connection: OK, ResourceExhausted
// for this host's limits (no socket, no local port, no memory: not the target's fault), else
// Unavailable.
absl::Status UpstreamConnectStatus(int uv_status);

class UpstreamObserver {
 public:
  virtual ~UpstreamObserver() = default;
  // The connection is ready for Write() (also called right away for a pooled connection, but
  // never from inside Attach()).
  virtual void OnUpstreamConnected() = 0;
  // The final (non-1xx) response head (1xx interim responses are dropped).
  virtual UpstreamHeadAction OnUpstreamHead(const MessageHead& head) = 0;
  virtual void OnUpstreamBody(absl::string_view data) = 0;
  // The response's trailer fields (HTTP/2 upstreams; lowercase names), right before
  // OnUpstreamComplete. Borrowed for the call.
  virtual void OnUpstreamTrailers(absl::Span<const std::pair<std::string, std::string>> trailers) {}
  // The response ended. The observer must call Release() or Abort() before returning.
  virtual void OnUpstreamComplete() = 0;
  // The connection failed and is already closing and detached; `response_bytes_received` tells
  // whether any byte of the response arrived.
  virtual void OnUpstreamFailure(UpstreamError error, bool response_bytes_received) = 0;
  // Pending writes fell below the low-water mark.
  virtual void OnUpstreamWriteDrained() = 0;
  // A 101 response head. To accept it, the observer hands the connection to a tunnel
  // (EnterTunnel) before returning true; the bytes after the head go to the tunnel. False: the
  // connection fails with kInvalidResponse (a 101 nobody asked for).
  virtual bool OnUpstreamSwitchingProtocols(const MessageHead& head) { return false; }
  // One read ended without completing the response. The views passed to OnUpstreamBody point
  // into the read buffer and are valid only until this returns: the observer writes or copies
  // what it kept (and may Abort() the connection).
  virtual void OnUpstreamReadEnd() = 0;
};

class UpstreamConnection final : public TransportCallbacks,
                                 public Http1Codec::BodySink,
                                 public UpstreamTlsSessionSink,
                                 public TunnelEnd {
 public:
  enum class State { kConnecting, kActive, kIdle, kClosing };

  // `pool_key` names the target (the worker's pool for it; for TLS, the target and the TLS
  // identity: context key and SNI).
  UpstreamConnection(Worker& worker, std::string pool_key, size_t max_head_bytes);
  ~UpstreamConnection() override;
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // Makes this connection speak TLS (client role) over its TCP transport, with `ssl` (owned from
  // here on; SNI, verification and any session to resume already set) and the worker's plaintext
  // buffer. REQUIRES: before Connect(). A failed handshake is a connect failure
  // (kConnectFailed), logged with the reason.
  void UseTls(SSL* ssl, char* plain_buffer, size_t plain_buffer_size);
  // The TLS transport, or null for cleartext.
  const TlsTransport* tls() const { return tls_.get(); }
  // Starts connecting. On error the caller must Close().
  // ResourceExhausted when this host's limits refuse a socket or a local port (not the target's
  // fault), Unavailable for another error starting the connect.
  absl::Status Connect(const struct sockaddr* address);
  // Binds the connection to one exchange. REQUIRES: state kConnecting (fresh) or kActive (just
  // taken from the pool).
  void Attach(UpstreamObserver* observer, const UpstreamTimeouts& timeouts);
  bool connected() const { return state_ == State::kActive; }
  State state() const { return state_; }
  const std::string& pool_key() const { return pool_key_; }

  // Sends the concatenation of `parts` (at most kMaxWriteParts). REQUIRES: connected() (callers
  // keep earlier bytes until OnUpstreamConnected). The kernel gets them right away with one
  // vectored write when it can; only what it does not take is copied. Errors are reported
  // asynchronously (OnUpstreamFailure), never from inside Write().
  static constexpr size_t kMaxWriteParts = 4;
  void Write(std::initializer_list<absl::string_view> parts);
  void Write(absl::string_view data) { Write(std::initializer_list<absl::string_view>{data}); }
  size_t pending_write_bytes() const {
    return tls_ != nullptr ? tls_->pending_write_bytes() : tcp_.pending_write_bytes();
  }
  void PauseReading();
  void ResumeReading();

  // Detaches the observer after OnUpstreamComplete: back to the pool when `reusable` and the
  // response allowed keep-alive, else closed.
  void Release(bool reusable);
  // Detaches the observer and closes. No further callbacks.
  void Abort();
  // Closes without notifying anyone (worker shutdown, pool eviction). Idempotent.
  void Close();

  // Tunnel mode (after a 101, from OnUpstreamSwitchingProtocols): the observer is detached, reads
  // go to `tunnel`, and `idle_timeout_ms` without traffic closes the tunnel. The connection is
  // never pooled again. REQUIRES: attached, inside OnUpstreamSwitchingProtocols.
  void EnterTunnel(Tunnel* tunnel, int64_t idle_timeout_ms);
  // TunnelEnd.
  Transport& tunnel_transport() override {
    return tls_ != nullptr ? static_cast<Transport&>(*tls_) : static_cast<Transport&>(tcp_);
  }
  void CloseFromTunnel() override { Close(); }
  void OnTunnelActivity() override { RearmTimer(); }

  // Called by the pool when it hands this idle connection to a new exchange.
  void MarkTakenFromPool();
  // True when nothing (no byte, no EOF) is waiting to be read: one non-blocking MSG_PEEK (TLS:
  // also consumes session tickets). The pool calls it before handing out an idle connection,
  // whose read callback may not have run yet.
  bool PeerSilent() { return tls_ != nullptr ? tls_->PeerSilent() : tcp_.PeerSilent(); }

  // Transport events.
  void OnTransportConnected(int status) override;
  void OnTransportRead(absl::string_view data) override;
  void OnTransportEof() override;
  void OnTransportReadError(int status) override;
  void OnTransportWritten(size_t bytes, int status) override;
  void OnTransportShutdown(int status) override;
  void OnTransportClosed() override;
  // Codec body pieces.
  bool OnBody(absl::string_view data) override;

 private:
  struct Uv;
  void OnUpstreamTlsSession(SSL_SESSION* session) override;
  // Logs (rate-limited) why this TLS connection failed with `error`, naming the target, SNI and
  // reason. REQUIRES: tls_.
  void LogTlsFailure(UpstreamError error);
  // The transport in use, called directly (no virtual call on the cleartext path).
  template <typename F>
  decltype(auto) WithTransport(F&& f) {
    return tls_ != nullptr ? f(*tls_) : f(tcp_);
  }
  void OnTimer();
  void OnHandleClosed();
  void Fail(UpstreamError error);
  void FailSoon(UpstreamError error);
  void CompleteResponse();
  void RearmTimer();
  void SetDeadline(int64_t ms);  // ms < 0: none
  void UpdateReading();
  void NotifyReadEnd();

  Worker& worker_;
  const std::string pool_key_;
  State state_ = State::kConnecting;
  TcpTransport tcp_;
  std::unique_ptr<TlsTransport> tls_;  // only for TLS connections; runs over tcp_
  uv_timer_t timer_;
  int pending_closes_ = 0;
  Http1Codec codec_;
  UpstreamObserver* observer_ = nullptr;
  UpstreamTimeouts timeouts_;
  bool reading_paused_ = false;      // by the observer (downstream backpressure)
  bool awaiting_response_ = false;   // attached and the final response not complete yet
  bool response_bytes_seen_ = false;
  bool first_exchange_ = true;       // not taken from the pool yet
  bool reusable_ = true;
  bool interim_ = false;             // parsing a 1xx response
  static constexpr uint64_t kNoDeadline = ~uint64_t{0};
  uint64_t deadline_ms_ = kNoDeadline;  // loop time at which the current timeout expires
  uint64_t armed_deadline_ms_ = 0;      // when the libuv timer fires (if timer_armed_)
  bool timer_armed_ = false;
  bool has_deferred_error_ = false;
  UpstreamError deferred_error_ = UpstreamError::kClosed;
  Tunnel* tunnel_ = nullptr;        // tunnel mode: owned by the client connection
  int64_t tunnel_idle_ms_ = 0;
};

}  // namespace portico::dp
