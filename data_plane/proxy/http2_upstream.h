#pragma once
// HTTP/2 towards an upstream (services with protocol grpc or grpcs): one nghttp2 client session
// per connection over the usual transports (TcpTransport; TlsTransport in the client role with
// ALPN "h2" for grpcs), carrying many streams at once. Each stream is one exchange's request and
// response, reported to its UpstreamObserver as an HTTP/1 upstream connection would report them
// (head, body pieces, read ends, completion or failure) plus the response's trailers.
//
// Connections are made and handed out by the worker's Http2UpstreamPool (http2_upstream_pool.h).
//
//   Connect() ──▶ kConnecting ──TLS/TCP up, ALPN h2──▶ kActive ──GOAWAY──▶ kDraining
//                     │                                  │   (no new streams; closes when the
//                     │                                  │    last stream ends)
//                     └──error/timeout──▶ kClosing ◀─────┴── error, idle timeout, Close()
//
// Flow control. Request bodies are copied into their stream and framed as the peer's windows
// allow; the exchange sees them as pending_write_bytes(). Response DATA is acknowledged
// (WINDOW_UPDATE) only after the observer's read end, and not at all while the observer paused
// the stream, so a slow client stops its stream at the window (kUpstreamStreamWindowBytes) without
// stopping the others.
//
// The observer hears OnUpstreamConnected once the connection is up (TLS and ALPN included), as
// from an HTTP/1 UpstreamConnection; it may send body bytes before, but then a connect failure
// cannot be retried with them.
//
// Timeouts per stream: read (the service's read_timeout, since the stream's last received
// frame) and an absolute deadline (grpc-timeout): on expiry the stream is reset (RST_STREAM
// CANCEL) and the observer gets kReadTimeout or kDeadlineExceeded. The connect timeout is the
// connection's.
//
// Thread-compatible: the owning worker's loop only. Observer callbacks are never made from inside
// a method the observer called (errors found there are reported from the next loop iteration).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <uv.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/http/http1_codec.h"
#include "common/net/tcp_transport.h"
#include "common/net/tls_transport.h"
#include "data_plane/balancer/upstream_tls.h"
#include "data_plane/proxy/upstream_connection.h"

typedef struct nghttp2_session nghttp2_session;

namespace portico::dp {

class Http2UpstreamConnection;
class Http2UpstreamPool;

// Streams one connection carries at most, whatever the peer's SETTINGS_MAX_CONCURRENT_STREAMS.
inline constexpr uint32_t kMaxStreamsPerUpstreamConnection = 100;
// Receive windows: per stream, and for the connection (enough for every stream's window, so that
// streams whose clients stopped reading cannot starve the others of the connection).
inline constexpr int32_t kUpstreamStreamWindowBytes = 256 * 1024;
inline constexpr int32_t kUpstreamConnectionWindowBytes =
    static_cast<int32_t>(kMaxStreamsPerUpstreamConnection) * kUpstreamStreamWindowBytes + 1024 * 1024;
// A response's header list (head and trailers together, counted as RFC 9113 §6.5.2 does) above
// this fails the stream (502), as an HTTP/1 head above the proxy's header limit does.
inline constexpr size_t kMaxUpstreamHeaderListBytes = 64 * 1024;

// One request/response of one exchange on an upstream HTTP/2 connection. Owned by its
// connection; the observer's pointer is valid until it calls Release() or Abort(), or until
// OnUpstreamFailure.
class Http2UpstreamStream {
 public:
  Http2UpstreamStream() = default;
  Http2UpstreamStream(const Http2UpstreamStream&) = delete;
  Http2UpstreamStream& operator=(const Http2UpstreamStream&) = delete;

  // The connection is up (OnUpstreamConnected was called, or the stream opened on a connection
  // that was): request body bytes given now can no longer be taken back for a retry.
  bool connected() const;
  // Request body bytes (copied), sent as DATA frames as the flow-control windows allow.
  void SendBody(absl::string_view data);
  // The request is complete: END_STREAM after the bytes queued.
  void EndRequest();
  // Request body bytes not yet framed.
  size_t pending_write_bytes() const { return body_.size() - body_offset_; }
  // Stops (and resumes) acknowledging this stream's DATA: the upstream stops at the window.
  void PauseReading();
  void ResumeReading();
  // After OnUpstreamComplete: detaches. A request not sent whole is cancelled (RST_STREAM CANCEL).
  void Release();
  // Detaches and cancels the stream (RST_STREAM CANCEL). No further callbacks.
  void Abort();
  // A gRPC Trailers-Only answer (one HEADERS frame that ends the stream) is reported as a head
  // with only content-type, then its other fields as trailers: for a client that can receive
  // trailers (HTTP/2), whose gRPC library reads the status from the frame ending the stream.
  // Off (the default): all its fields are the head (HTTP/1 clients drop trailers).
  void set_split_trailers_only(bool split) { split_trailers_only_ = split; }

 private:
  friend class Http2UpstreamConnection;
  void Clear();

  Http2UpstreamConnection* connection_ = nullptr;
  int32_t id_ = -1;
  UpstreamObserver* observer_ = nullptr;
  std::string body_;        // request body waiting to be framed, from body_offset_
  size_t body_offset_ = 0;
  bool request_ended_ = false;  // EndRequest() called
  bool request_sent_ = false;   // END_STREAM went out
  bool data_deferred_ = false;  // the body callback returned DEFERRED: resume when bytes come
  bool drain_wanted_ = false;   // pending bytes went over the low-water mark
  bool reading_paused_ = false;
  size_t unconsumed_ = 0;       // DATA bytes received and not yet acknowledged
  bool in_read_list_ = false;   // got DATA in the read being processed
  bool dead_ = false;           // queued for recycling
  MessageHead head_;            // the response head being collected, then the final head
  bool head_delivered_ = false;
  size_t header_list_bytes_ = 0;  // of the head and trailers received so far
  bool skip_body_ = false;
  bool split_trailers_only_ = false;
  std::vector<std::pair<std::string, std::string>> trailers_;
  bool response_bytes_seen_ = false;
  bool response_complete_ = false;  // END_STREAM received and delivered
  bool closed_ = false;             // nghttp2 closed the stream
  int64_t read_ms_ = 0;
  uint64_t read_deadline_ms_ = 0;   // loop time; renewed by each frame received
  uint64_t deadline_ms_ = 0;        // grpc-timeout; 0: none
};

class Http2UpstreamConnection final : public TransportCallbacks, public UpstreamTlsSessionSink {
 public:
  enum class State { kConnecting, kActive, kDraining, kClosing };

  Http2UpstreamConnection(Http2UpstreamPool& pool, uv_loop_t* loop, char* read_buffer, size_t read_buffer_size,
                          std::string pool_key);
  ~Http2UpstreamConnection() override;
  Http2UpstreamConnection(const Http2UpstreamConnection&) = delete;
  Http2UpstreamConnection& operator=(const Http2UpstreamConnection&) = delete;

  // Speak TLS with `ssl` (owned from here on; SNI and verification set): ALPN "h2" is offered
  // and required. REQUIRES: before Connect().
  void UseTls(SSL* ssl, char* plain_buffer, size_t plain_buffer_size);
  // Starts connecting (streams may be opened at once; their frames go out once connected).
  // Errors as UpstreamConnection::Connect; on error the caller must Close().
  absl::Status Connect(const struct sockaddr* address, int64_t connect_timeout_ms);

  // The connection can take one more stream now.
  bool HasCapacity() const;
  // Opens a stream for `observer` with `headers` (pseudo-headers first, lowercase names) and, if
  // `end_stream`, no body. `deadline_ms` is an absolute loop time (0: none). Null when the
  // session refuses the stream (the caller takes another connection).
  Http2UpstreamStream* OpenStream(UpstreamObserver* observer, absl::Span<const std::pair<std::string, std::string>> headers,
                                  const UpstreamTimeouts& timeouts, uint64_t deadline_ms, bool end_stream);

  // Closes now; attached streams are dropped without callbacks (worker shutdown). Idempotent.
  void Close();

  State state() const { return state_; }
  const std::string& pool_key() const { return pool_key_; }
  size_t active_streams() const { return active_streams_; }

  // Transport events.
  void OnTransportConnected(int status) override;
  void OnTransportRead(absl::string_view data) override;
  void OnTransportEof() override;
  void OnTransportReadError(int status) override;
  void OnTransportWritten(size_t bytes, int status) override;
  void OnTransportShutdown(int status) override {}
  void OnTransportClosed() override;

 private:
  friend class Http2UpstreamStream;
  struct Uv;
  struct Nghttp2;  // the nghttp2 callback trampolines
  // nghttp2 events (inside nghttp2_session_mem_recv / mem_send).
  int OnHeader(int32_t stream_id, absl::string_view name, absl::string_view value);
  int OnFrameReceived(int type, uint8_t flags, int32_t stream_id);
  int OnDataChunk(int32_t stream_id, absl::string_view data);
  int OnStreamClosed(int32_t stream_id, uint32_t error_code);
  // Frames the next piece of `stream`'s body into `buffer`; the nghttp2 DEFERRED code when it
  // has none yet.
  ptrdiff_t ReadBody(Http2UpstreamStream* stream, uint8_t* buffer, size_t length, uint32_t* data_flags);
  // From the stream's own methods.
  void ResumeBody(Http2UpstreamStream* stream);
  void CancelStream(Http2UpstreamStream* stream);
  void Consume(Http2UpstreamStream* stream);
  // A stream with no observer that nghttp2 closed goes back to the spares (now, or after the
  // event being processed).
  void MaybeDead(Http2UpstreamStream* stream);
  void OnUpstreamTlsSession(SSL_SESSION* session) override;
  template <typename F>
  decltype(auto) WithTransport(F&& f) {
    return tls_ != nullptr ? f(*tls_) : f(tcp_);
  }
  size_t transport_pending_bytes() const {
    return tls_ != nullptr ? tls_->pending_write_bytes() : tcp_.pending_write_bytes();
  }
  bool InitSession();
  // Hands nghttp2's pending frames to the transport (up to the high-water mark). False when the
  // transport failed (the connection fails from the timer).
  bool Flush();
  // Streams whose request bytes fell below the low-water mark hear about it; dead streams are
  // recycled. Only from loop events (never inside a method an observer called).
  void AfterEvent();
  // Fails every attached stream with `error` and closes.
  void Fail(UpstreamError error);
  void FailSoon(UpstreamError error);
  void FailStream(Http2UpstreamStream* stream, UpstreamError error);
  void CompleteStream(Http2UpstreamStream* stream);
  // A gRPC Trailers-Only response: its fields but content-type become trailers
  // (Http2UpstreamStream::set_split_trailers_only).
  void SplitTrailersOnly(Http2UpstreamStream* stream);
  void OnTimer();
  void RearmTimer();
  void OnHandleClosed();
  void Recycle(Http2UpstreamStream* stream);
  void RecycleDead();
  void MaybeCloseDraining();

  Http2UpstreamPool& pool_;
  uv_loop_t* loop_;
  const std::string pool_key_;
  State state_ = State::kConnecting;
  TcpTransport tcp_;
  std::unique_ptr<TlsTransport> tls_;
  uv_timer_t timer_;
  int pending_closes_ = 0;
  nghttp2_session* session_ = nullptr;
  int64_t connect_timeout_ms_ = 60000;
  uint64_t connect_deadline_ms_ = 0;
  uint64_t idle_since_ms_ = 0;
  bool in_read_ = false;
  bool in_flush_ = false;
  bool has_deferred_error_ = false;
  UpstreamError deferred_error_ = UpstreamError::kClosed;
  size_t active_streams_ = 0;     // streams with an observer or not yet closed by nghttp2
  std::string out_;               // frames gathered for one transport write
  std::vector<std::unique_ptr<Http2UpstreamStream>> streams_;  // every stream object (live or spare)
  std::vector<Http2UpstreamStream*> spare_;                    // free for reuse
  std::vector<Http2UpstreamStream*> read_list_;                // got DATA in this read
  std::vector<Http2UpstreamStream*> dead_;                     // to recycle after this event
};

}  // namespace portico::dp
