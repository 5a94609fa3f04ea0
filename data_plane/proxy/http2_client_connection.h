#pragma once
// The HTTP/2 side of a client connection (RFC 9113), over the connection's transport: one
// nghttp2 server session, and one Http2Stream per request stream, each the Downstream of an
// ordinary Exchange (exchange.h), so every request runs the same router and pipeline whatever its
// HTTP version. The owning Http1ClientConnection switches to it after the connection preface
// (h2c prior knowledge), after answering `Upgrade: h2c` with 101, or when ALPN chose "h2"; from
// then on it forwards its transport events here.
//
// Limits (docs/protocols.md "HTTP/2"): SETTINGS_MAX_CONCURRENT_STREAMS (extra streams are
// refused with RST_STREAM), the header list (the proxy's max header bytes; above it the stream is
// answered 431), HPACK tables of 4 KiB, flow-control windows that bound what the proxy buffers
// (kStreamWindowBytes per stream, kConnectionWindowBytes per connection: request bytes are
// acknowledged only once the upstream took them), and a rapid-reset budget (CVE-2023-44487:
// nghttp2's token bucket on the client's RST_STREAM frames; a client that spends it gets GOAWAY.
// Until then each stream starts its exchange, so a flood costs some upstream requests, each
// aborted as soon as its reset is read). nghttp2 enforces RFC 9113's message rules (pseudo-headers,
// connection-specific headers, uppercase names, content-length against DATA): a violation is a
// stream error (RST_STREAM PROTOCOL_ERROR) before anything reaches an upstream, and malformed
// frames or HPACK are connection errors (GOAWAY).
//
// Thread-compatible: the worker's loop only.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/http/http1_checks.h"
#include "common/http/http1_codec.h"
#include "common/net/transport.h"
#include "data_plane/proxy/exchange.h"

struct nghttp2_session;

namespace portico::dp {

class Worker;
class Http2ClientSession;

inline constexpr uint32_t kHttp2MaxConcurrentStreams = 128;
inline constexpr int32_t kStreamWindowBytes = 256 * 1024;
inline constexpr int32_t kConnectionWindowBytes = 1024 * 1024;
// Rapid reset: nghttp2's RST_STREAM rate limit counts the client's resets (a burst of kResetBurst,
// refilled at kResetRefillPerSecond); the session's own bucket, of the same size, counts streams
// the proxy had to reset because the client's stream was malformed ("MadeYouReset",
// CVE-2025-8671). Past either: GOAWAY.
inline constexpr int kResetBurst = 200;
inline constexpr int kResetRefillPerSecond = 100;

// One request stream: the Downstream of its exchange.
class Http2Stream final : public Downstream {
 public:
  Http2Stream(Http2ClientSession& session, int32_t id) : session_(&session), id_(id) {}

  // Downstream.
  void SendLocal(const dp::LocalResponse& response,
                 absl::Span<const std::pair<std::string, std::string>> extra_headers) override;
  bool SendResponseHead(const MessageHead& head, absl::Span<const std::pair<std::string, std::string>> extra_headers,
                        absl::Span<const absl::string_view> removed_headers) override;
  void SendResponseBody(absl::string_view data) override;
  void SendResponseTrailers(absl::Span<const std::pair<std::string, std::string>> trailers) override;
  void FlushResponse() override;
  void EndResponse() override;
  size_t ResponseBacklog() const override;
  void ContinueRequest() override {}
  // A step waits for the whole body: the client timeout bounds the wait (UpdateIdle).
  void WaitForRequestBody() override;
  void RequestBodyWanted() override;
  void Abort() override;
  void ExchangeDone() override;

 private:
  friend class Http2ClientSession;
  // Hands buffered request body bytes (and the end of the request) to the exchange while it
  // takes them; acknowledges what it took (WINDOW_UPDATE).
  void DeliverRequestBody();
  // Resets the stream for reuse by another id.
  void Reuse(int32_t id);
  // The response is complete but the request is not: RST_STREAM NO_ERROR (not for gRPC).
  void StopUnfinishedRequest();

  Http2ClientSession* session_;
  int32_t id_;
  MessageHead head_;               // the request head given to the exchange
  std::string authority_;
  std::string scheme_;
  bool saw_host_ = false;
  bool grpc_ = false;              // content-type application/grpc*
  bool head_too_large_ = false;
  size_t head_bytes_ = 0;
  bool head_bad_ = false;          // a pseudo-header the proxy cannot serve (CONNECT, no :path)
  std::unique_ptr<Exchange> exchange_;
  bool exchange_running_ = false;  // Begin ran, ExchangeDone not yet
  bool exchange_finished_ = false; // ExchangeDone ran (the exchange may be pooled again)
  bool request_ended_ = false;     // END_STREAM received
  bool request_end_delivered_ = false;
  bool waits_for_body_ = false;    // a step holds the request until its body is in
  bool reset_by_us_ = false;       // Abort(): the upstream failed, not the client
  std::string request_body_;       // received, not yet taken by the exchange
  size_t unacked_request_bytes_ = 0;
  bool response_submitted_ = false;
  bool response_has_body_ = false;
  bool response_ended_ = false;    // EndResponse: the data source ends after response_body_
  bool response_deferred_ = false; // nghttp2 waits for more body (NGHTTP2_ERR_DEFERRED)
  std::string response_body_;      // copied body bytes, sent from response_sent_
  size_t response_sent_ = 0;
  std::vector<std::pair<std::string, std::string>> trailers_;
  bool closed_ = false;            // nghttp2 closed the stream (no more frames for it)
  bool reaped_ = false;            // on the session's reap list
  bool notify_drained_ = false;    // tell the exchange the response backlog fell below low water
  size_t live_index_ = 0;          // in the session's live_
  uint64_t blocked_since_ms_ = 0;  // loop time since which it waits on the client (0: it does not)
};

class Http2ClientSession {
 public:
  // `host`: the client connection's callbacks for closing (Close) and its deadline.
  class Host {
   public:
    virtual ~Host() = default;
    // The session is over (GOAWAY sent and flushed, a fatal error, or the peer is done): close
    // the connection.
    virtual void Http2Finished() = 0;
    // The connection's client deadline: off, (re)started now, or started now unless it runs.
    enum class Deadline { kOff, kRestart, kKeep };
    virtual void Http2Deadline(Deadline deadline) = 0;
  };

  Http2ClientSession(Worker& worker, Transport& transport, Host& host, absl::string_view client_ip,
                     uint64_t connection_serial, bool over_tls, absl::string_view sni);
  ~Http2ClientSession();
  Http2ClientSession(const Http2ClientSession&) = delete;
  Http2ClientSession& operator=(const Http2ClientSession&) = delete;

  // Starts the session: our SETTINGS, then `initial` (bytes already read, starting with the
  // client preface). False: a fatal error (the connection closes).
  bool Start(absl::string_view initial);
  // Starts the session for an `Upgrade: h2c` request whose 101 was just queued: `settings` is the
  // HTTP2-Settings header value (base64url), `head` the request (no body), served as stream 1.
  bool StartUpgraded(absl::string_view settings, const MessageHead& head);

  // From the connection's transport.
  void OnRead(absl::string_view data);
  void OnWritten();
  void OnEof();
  // The client deadline expired: an idle connection gets GOAWAY and closes, one whose client does
  // not read closes, and streams the client held for a whole client timeout (a closed window, a
  // body it does not send) are reset.
  void OnIdleDeadline();
  // Graceful shutdown: GOAWAY(NO_ERROR) with the last stream id, then close once the streams in
  // flight are done (the worker stopping closes it anyway).
  void GoAway();
  // The first step of a graceful shutdown (RFC 9113 §6.8): GOAWAY(NO_ERROR) with the largest
  // stream id, so that streams the client opens before it reads it are still served; GoAway()
  // then sends the final one (kDrainGoAwayDelayMs later, from the worker's drain).
  void GoAwayNotice();
  // The connection is closing: cancel every exchange.
  void Abort();

  int open_streams() const { return open_streams_; }

 private:
  friend class Http2Stream;
  struct Callbacks;

  // Sends what nghttp2 has queued; false when the connection failed (closing).
  bool Flush();
  // Frees streams whose exchange and nghttp2 stream are both done.
  void Reap();
  void MaybeReap(Http2Stream* stream);
  Http2Stream* NewStream(int32_t id);
  // `counted`: the worker's request count already has it (an upgraded HTTP/1.1 request).
  void BeginRequest(Http2Stream* stream, bool counted = false);
  // Sets the connection's deadline from what it waits for (see the .cc).
  void UpdateIdle();
  void SubmitLocal(Http2Stream* stream, const dp::LocalResponse& response,
                   absl::Span<const std::pair<std::string, std::string>> extra_headers);
  void Fail();
  void UpdateReading();
  void NotifyDrained();
  // An exchange has sent its whole response and is about to end (ExchangeDone).
  bool ExchangeFinishing() const;
  // A stream was reset because of the client's error: false once the budget is spent.
  bool SpendResetToken();

  Worker& worker_;
  Transport& transport_;
  Host& host_;
  std::string client_ip_;
  uint64_t serial_;
  bool over_tls_;
  std::string sni_;
  nghttp2_session* session_ = nullptr;
  std::string out_;          // frames to write
  std::string scratch_;      // lowercased header names for a response
  bool failed_ = false;
  bool going_away_ = false;
  bool in_flush_ = false;
  int open_streams_ = 0;     // streams with a running exchange or still open in nghttp2
  uint32_t requests_ = 0;
  // Streams reset for the client's errors (see kResetBurst).
  double reset_tokens_ = kResetBurst;
  uint64_t reset_tokens_at_ms_ = 0;
  std::vector<Http2Stream*> live_;   // streams not reaped yet (owned)
  std::vector<Http2Stream*> reap_;   // streams done, freed at the next safe point (owned)
  std::vector<std::unique_ptr<Http2Stream>> retired_;  // of an aborted session
  std::vector<std::unique_ptr<Http2Stream>> spare_streams_;
  std::vector<Http2Stream*> drained_;
};

// HTTP status → gRPC status code for a response the proxy makes to a gRPC request (gRPC's
// http-grpc-status-mapping, with 408/504 as DEADLINE_EXCEEDED: the proxy knows it timed out).
int GrpcStatusForHttpStatus(int status);
// grpc-message's encoding: percent-encodes bytes outside 0x20..0x7E and '%'.
std::string PercentEncodeGrpcMessage(absl::string_view message);

}  // namespace portico::dp
