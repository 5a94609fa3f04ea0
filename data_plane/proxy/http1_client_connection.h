#pragma once
// One downstream (client) HTTP/1.1 connection, owned by its Worker: a transport (common/net: TCP,
// or TLS over TCP for a connection accepted on the TLS listener), the
// request codec (common/http/http1_codec.h) and at most one Exchange at a time (exchange.h), for
// which it is the Downstream. Pipelined bytes wait in input_ until the current exchange ends. The
// client is read continuously (no read stop/start per request) as long as input_ stays below
// kMaxBufferedInputBytes and, while a request body streams, the upstream keeps up.
//
//            head parsed                 request and response complete, keep-alive
//   kIdle ───────────────▶ kExchange ───────────────────────────────────────────▶ kIdle
//     │                       │  response complete and must close / local error with close
//     │ idle timeout,         ▼
//     │ EOF, error       kDraining ──(shutdown: queued writes flushed)──▶ kLingering
//     │                       │ client done and nothing queued: close at once  │ EOF / 2 s
//     └───────────────────────┴──────────── any failure ─────────────────────▶ kClosing
//   kExchange ──upstream 101 to a WebSocket handshake──▶ kTunnel ──tunnel closes──▶ kClosing
//                                                                  (transport closing; freed
//                                                                   after its close callback)
// HTTP/2: after the connection preface (h2c prior knowledge), a 101 to `Upgrade: h2c`, or ALPN
// "h2" on the TLS listener, the connection is kHttp2 for good: its transport events go to its
// Http2ClientSession (http2_client_connection.h), which runs one exchange per stream.
// Thread-compatible: only touched on the owning worker's loop.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/http/http1_checks.h"
#include "common/http/http1_codec.h"
#include "common/net/tcp_transport.h"
#include "common/net/tls_transport.h"
#include "data_plane/proxy/exchange.h"
#include "data_plane/proxy/http1_messages.h"
#include "data_plane/proxy/http2_client_connection.h"
#include "data_plane/proxy/tunnel.h"
#include "data_plane/proxy/worker.h"

namespace portico::dp {

class Http1ClientConnection final : public TransportCallbacks,
                                    public Http1Codec::BodySink,
                                    public Downstream,
                                    public Http2ClientSession::Host,
                                    public TunnelEnd {
 public:
  // kTunnel: after a WebSocket upgrade, every byte goes through tunnel_ (tunnel.h).
  enum class State { kIdle, kExchange, kDraining, kLingering, kClosing, kHttp2, kTunnel };

  explicit Http1ClientConnection(Worker& worker);
  ~Http1ClientConnection() override;
  Http1ClientConnection(const Http1ClientConnection&) = delete;
  Http1ClientConnection& operator=(const Http1ClientConnection&) = delete;

  // Adopts the accepted socket `fd` (from `peer`) and starts reading (for `tls`: the handshake,
  // with the certificates of the worker's current config). Takes ownership of `fd` even on
  // error; on error the caller must Close().
  absl::Status Accept(int fd, const struct sockaddr* peer, bool tls = false);
  // Aborts the connection (and its exchange, if any). Idempotent.
  void Close();
  State state() const { return state_; }
  // The worker's deadline sweep: the idle/header or linger timeout expired.
  void OnDeadline();
  // The worker began draining: an idle keep-alive connection closes now, an HTTP/2 one gets
  // GOAWAY; a request in progress finishes and its response is the connection's last. Tunnels
  // are left to the stop.
  void OnWorkerDrain();
  // The worker's drain GOAWAY timer fired at loop time `now_ms`: an HTTP/2 connection whose GOAWAY
  // notice went out kDrainGoAwayDelayMs ago (at the drain, or at its switch to HTTP/2 during the
  // drain) gets its final GOAWAY. Returns when its final GOAWAY is due if that is still to come,
  // else 0.
  uint64_t OnDrainGoAway(uint64_t now_ms);

  // Transport events.
  void OnTransportConnected(int) override {}
  void OnTransportRead(absl::string_view data) override;
  void OnTransportEof() override;
  void OnTransportReadError(int status) override;
  void OnTransportWritten(size_t bytes, int status) override;
  void OnTransportShutdown(int status) override;
  void OnTransportClosed() override;
  // Request body pieces from the codec.
  bool OnBody(absl::string_view data) override;

  // Downstream (the current exchange).
  void SendLocal(const dp::LocalResponse& response,
                 absl::Span<const std::pair<std::string, std::string>> extra_headers) override;
  bool SendResponseHead(const MessageHead& head, absl::Span<const std::pair<std::string, std::string>> extra_headers,
                        absl::Span<const absl::string_view> removed_headers) override;
  void SendResponseBody(absl::string_view data) override;
  void FlushResponse() override;
  void EndResponse() override;
  size_t ResponseBacklog() const override { return transport_->pending_write_bytes(); }
  void ContinueRequest() override;
  void WaitForRequestBody() override;
  void RequestBodyWanted() override;
  void Abort() override { Close(); }
  void ExchangeDone() override;
  bool StartTunnel(const MessageHead& head, absl::Span<const std::pair<std::string, std::string>> extra_headers,
                   absl::Span<const absl::string_view> removed_headers, UpstreamConnection& upstream,
                   int64_t idle_timeout_ms) override;

  // TunnelEnd.
  Transport& tunnel_transport() override { return *transport_; }
  void CloseFromTunnel() override { Close(); }

  // Http2ClientSession::Host.
  void Http2Finished() override;
  void Http2Deadline(Deadline deadline) override;

 private:
  // Parses input_, or `fresh` (bytes just read, still in the worker's read buffer) when input_ is
  // empty; only bytes left unparsed are copied into input_.
  void ProcessInput(absl::string_view fresh = {});
  // A head is complete: the framing rules, then an exchange for it.
  void OnRequestHead();
  void OnRequestComplete();
  void UpdateReading();
  void EnterIdle();
  // The exchange is over: give it back (as the spare for the next request).
  void EndExchange();
  // Idle with nothing buffered: gives the exchange and the head storage back to the worker.
  void ReleaseRequestState();
  void MarkRequestStateHeld();
  // The final response is queued: close. `client_done`: the client has nothing more to send
  // (request fully read, it asked for close or half-closed, no unparsed bytes); then, when the
  // kernel already holds every response byte, the socket is closed at once (no shutdown, no
  // lingering read). Otherwise: shutdown after the queued writes, then lingering read.
  void BeginDrain(bool client_done = false);
  bool ClientDone() const;
  // Response bytes are gathered (QueueToClient) and handed to the kernel in one vectored write
  // (FlushToClient). Borrowed bytes must stay valid until the next FlushToClient.
  void QueueToClient(absl::string_view data, bool copy);
  void FlushToClient();
  // Makes the worker's output gather list this connection's, flushing what another connection
  // (or this one, when full) queued. False when that flush closed this connection.
  bool ClaimOutput();
  // During an exchange: response bytes wait for the client, or a local response was sent and the
  // rest of the request body is being discarded. The client timeout applies then.
  bool WaitsOnClient() const;
  void WriteToClient(absl::string_view data);  // queue (borrowed) + flush
  // A malformed or refused request head: the answer, then close.
  void RespondToBadInput(int status, absl::string_view message);
  // The TLS handshake is done (first decrypted bytes): record the SNI, unpin the certificates.
  void OnHandshakeDone();
  // A client that speaks the other protocol (TLS on the cleartext port, or a failed handshake on
  // the TLS port): one rate-limited log line, then close without an answer.
  void CloseForProtocolMismatch(absl::string_view what);
  // Hands the connection to an HTTP/2 session, which gets `initial` (the first bytes, starting
  // with the client preface). Closes on failure.
  void SwitchToHttp2(absl::string_view initial);
  // After a switch to HTTP/2 while the worker drains: the GOAWAY notice now, the final GOAWAY later.
  void NoticeDrainAfterSwitch();
  // The request head asks `Upgrade: h2c` in a form the proxy serves (no body, one
  // HTTP2-Settings): answer 101 and serve it as stream 1. False: serve it as HTTP/1.1.
  bool UpgradeToH2c(const MessageHead& head);

  // Kept small: an idle keep-alive connection is this object, its llhttp state and its transport;
  // everything request-scoped lives in pooled objects (docs/proxy.md, "Memory").
  Worker& worker_;
  State state_ = State::kIdle;
  bool in_process_input_ = false;
  bool parse_failed_ = false;
  bool peer_eof_ = false;          // the client shut its write side
  bool wrote_ = false;             // a response byte was written (TCP_NODELAY set from the 2nd write)
  bool holds_request_state_ = false;
  // Of the current exchange (HTTP/1 framing decisions).
  bool client_http11_ = true;
  bool client_keep_alive_ = true;
  bool request_is_head_ = false;
  bool expects_continue_ = false;
  uint64_t serial_ = 0;         // this connection's number on its worker
  uint32_t requests_ = 0;       // requests begun on it
  uint64_t goaway_due_ms_ = 0;  // draining HTTP/2: loop time of the final GOAWAY (0: none pending)
  bool request_complete_ = false;
  bool close_after_ = false;       // the response forces a close (until-close framing, early answer)
  ResponseFraming framing_ = ResponseFraming::kNoBody;
  bool saw_bytes_ = false;         // a byte (or, for TLS, a decrypted byte) arrived
  DeadlineNode deadline_;
  // What only a connection of the TLS listener has (one allocation per such connection).
  struct TlsSide {
    TlsSide(TcpTransport* tcp, SSL* ssl, char* plain_buffer, TransportCallbacks* callbacks)
        : transport(tcp, ssl, TlsTransport::Role::kServer, plain_buffer, kReadBufferBytes, callbacks) {}
    TlsTransport transport;
    // The certificates the handshake chooses from (pinned until it is done).
    std::shared_ptr<const CertificateStore> handshake_certificates;
    std::string sni;  // the server name the client sent (normalised; empty when none)
  };
  TcpTransport tcp_;
  std::unique_ptr<TlsSide> tls_;  // null for a cleartext connection
  Transport* transport_;          // &tcp_, or &tls_->transport
  std::string client_ip_;
  Http1Codec codec_;
  std::string input_;              // received, not yet parsed (pipelined or while busy)
  absl::string_view fresh_;        // during ProcessInput: unparsed part of the bytes just read
  std::unique_ptr<Exchange> exchange_;
  std::unique_ptr<Exchange> spare_exchange_;    // the last exchange, until the connection is idle
  std::unique_ptr<Exchange> retired_exchange_;  // the exchange of a closed connection (see Close)
  std::unique_ptr<Http2ClientSession> h2_;      // kHttp2 only (destroyed before the transports)
  std::unique_ptr<Tunnel> tunnel_;              // kTunnel (and after, until destroyed)
};

}  // namespace portico::dp
