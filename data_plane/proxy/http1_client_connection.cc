#include "data_plane/proxy/http1_client_connection.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "common/http/known_headers.h"
#include "common/base/log.h"
#include "data_plane/pipeline/local_responses.h"
#include "data_plane/proxy/websocket.h"
#include "data_plane/tls/server_context.h"

namespace portico::dp {
namespace {

// Pipelined or early bytes buffered beyond this stop reading from the client.
constexpr size_t kMaxBufferedInputBytes = kReadBufferBytes;

// RFC 9113 §3.4: the client connection preface.
constexpr absl::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// The first bytes of a connection are (the start of) the HTTP/2 preface. "PRI" is enough: no
// request the proxy serves starts with it (llhttp knows PRI only as the HTTP/2 preface), and a
// preface split across reads still switches on its first piece.
bool StartsWithHttp2Preface(absl::string_view data) {
  if (data.size() < 3) return false;
  const size_t n = std::min(data.size(), kHttp2Preface.size());
  return data.substr(0, n) == kHttp2Preface.substr(0, n);
}

}  // namespace

Http1ClientConnection::Http1ClientConnection(Worker& worker)
    : worker_(worker),
      tcp_(worker.loop(), worker.read_buffer(), kReadBufferBytes, this),
      transport_(&tcp_),
      codec_(Http1Codec::Kind::kRequest, this, worker.options().max_header_bytes, &worker.head_pool()) {
  deadline_.owner = this;
}

Http1ClientConnection::~Http1ClientConnection() {
  worker_.DisarmDeadline(&deadline_);
  if (holds_request_state_) worker_.CountRequestState(-1);
}

absl::Status Http1ClientConnection::Accept(int fd, const struct sockaddr* peer, bool tls) {
  if (!tcp_.Open(fd)) return absl::UnavailableError("uv_tcp_open failed");
  if (tls) {
    const ServerTlsContext* context = worker_.tls_context();
    if (context == nullptr) return absl::InternalError("no TLS context");
    // The snapshot current at accept chooses the certificate; the SSL then holds the chosen
    // SSL_CTX itself, so the store is released once the handshake is done.
    const std::shared_ptr<const RuntimeConfig>& config = worker_.CurrentConfig();
    std::shared_ptr<const CertificateStore> certificates =
        config != nullptr ? config->certificates() : nullptr;
    SSL* ssl = context->NewServerSsl(certificates.get());
    if (ssl == nullptr) return absl::ResourceExhaustedError("SSL_new failed");
    tls_ = std::make_unique<TlsSide>(&tcp_, ssl, worker_.plain_buffer(), this);
    tls_->handshake_certificates = std::move(certificates);
    transport_ = &tls_->transport;
    // The handshake writes first (and TLS 1.3 sends its session ticket just before the first
    // response): with Nagle on, that response would wait for the client's (delayed) ACK.
    transport_->SetNoDelay();
  }
  // Cleartext: TCP_NODELAY is set lazily, before the second write (FlushToClient): a connection
  // that gets one response in one writev (every small Connection: close exchange) never needs it.
  client_ip_ = IpOf(peer);  // from accept4: no getpeername
  serial_ = worker_.NextConnectionSerial();
  EnterIdle();
  UpdateReading();
  return absl::OkStatus();
}

void Http1ClientConnection::EndExchange() {
  if (exchange_ == nullptr) return;
  exchange_->Reset();
  spare_exchange_ = std::move(exchange_);
}

void Http1ClientConnection::MarkRequestStateHeld() {
  if (holds_request_state_) return;
  holds_request_state_ = true;
  worker_.CountRequestState(1);
}

void Http1ClientConnection::ReleaseRequestState() {
  if (spare_exchange_ != nullptr) {
    if (spare_exchange_->WorthPooling()) worker_.exchange_pool().Give(std::move(spare_exchange_));
    spare_exchange_.reset();  // Give() leaves it when the pool is full
  }
  codec_.ReleaseStorage();
  if (input_.capacity() > std::string().capacity()) std::string().swap(input_);  // heap-allocated
  if (holds_request_state_ && !codec_.holds_storage()) {
    holds_request_state_ = false;
    worker_.CountRequestState(-1);
  }
}

void Http1ClientConnection::Close() {
  if (state_ == State::kClosing) return;
  state_ = State::kClosing;
  if (h2_ != nullptr) {
    h2_->GoAway();  // best effort (the worker stopping): the client learns which streams ran
    h2_->Abort();
  }
  worker_.DisarmDeadline(&deadline_);
  ClientOutput& out = worker_.client_output();
  if (out.owner == this) {
    out.count = 0;
    out.owned.clear();
    out.owner = nullptr;
  }
  // Close() can run inside a call made by the exchange (a client write that fails at once): keep
  // the object alive until the connection itself is destroyed.
  if (exchange_ != nullptr) exchange_->Cancel();
  if (tunnel_ != nullptr) tunnel_->Close();  // closes the upstream end too
  retired_exchange_ = std::move(exchange_);
  transport_->Close();
}

void Http1ClientConnection::OnTransportClosed() {
  worker_.Destroy(this);  // freed after this loop iteration
}

void Http1ClientConnection::EnterIdle() {
  state_ = State::kIdle;
  worker_.ArmDeadline(&deadline_, kIdleDeadlines);
}

void Http1ClientConnection::OnDeadline() {
  switch (state_) {
    case State::kHttp2:
      h2_->OnIdleDeadline();
      return;
    case State::kIdle:       // keep-alive or header timeout, or no write progress (see OnTransportWritten)
    case State::kDraining:   // the client stopped reading the last response
    case State::kLingering:  // the client did not close in time
      Close();
      return;
    case State::kExchange:  // armed only while the exchange waits on the client (WaitsOnClient)
      if (WaitsOnClient()) Close();
      return;
    case State::kTunnel:  // never armed: the tunnel has its own idle timeout
      return;
    default:
      return;
  }
}

void Http1ClientConnection::OnWorkerDrain() {
  switch (state_) {
    case State::kHttp2:
      h2_->GoAwayNotice();  // the final GOAWAY follows (OnDrainGoAway, from the worker's timer)
      goaway_due_ms_ = uv_now(worker_.loop()) + kDrainGoAwayDelayMs;
      return;
    case State::kIdle:
      // Bytes of a next request already here: it is answered (with Connection: close). A
      // connection that has not served a request yet was accepted for one that is on its way
      // (or in its TLS handshake): it is answered too, the drain timeout bounding the wait.
      if (!input_.empty() || codec_.in_message() || requests_ == 0) return;
      BeginDrain(/*client_done=*/true);
      return;
    default:
      return;  // an exchange ends with a close (worker_.draining()); tunnels wait for the stop
  }
}

uint64_t Http1ClientConnection::OnDrainGoAway(uint64_t now_ms) {
  if (state_ != State::kHttp2 || goaway_due_ms_ == 0) return 0;
  if (now_ms < goaway_due_ms_) return goaway_due_ms_;
  goaway_due_ms_ = 0;
  h2_->GoAway();  // the session closes once its open streams are done
  return 0;
}

void Http1ClientConnection::NoticeDrainAfterSwitch() {
  if (!worker_.draining()) return;
  // A connection accepted before the drain whose HTTP/2 preface came after it: its first
  // streams are served like those of any open connection (the notice, then the final GOAWAY
  // kDrainGoAwayDelayMs later).
  h2_->GoAwayNotice();
  goaway_due_ms_ = uv_now(worker_.loop()) + kDrainGoAwayDelayMs;
  worker_.ScheduleDrainGoAway(goaway_due_ms_);
}

// ---- reading and parsing -------------------------------------------------------------------

void Http1ClientConnection::UpdateReading() {
  if (state_ == State::kClosing || state_ == State::kHttp2) return;
  bool want = false;
  switch (state_) {
    case State::kIdle:
      want = !peer_eof_ && input_.size() < kMaxBufferedInputBytes &&
             transport_->pending_write_bytes() < kHighWaterBytes;
      break;
    case State::kExchange:
      // Keep reading after the request is complete: pipelined bytes queue in input_, and the
      // watcher is not toggled per request. Stop while a streaming body outruns the upstream.
      want = !peer_eof_ && input_.size() < kMaxBufferedInputBytes &&
             (request_complete_ || exchange_ == nullptr || exchange_->UpstreamBacklog() < kHighWaterBytes);
      break;
    case State::kLingering:
      want = true;
      break;
    case State::kDraining:
    case State::kClosing:
    case State::kHttp2:
      want = false;
      break;
    case State::kTunnel:
      return;  // the tunnel decides
  }
  if (want) {
    transport_->StartReading();
  } else {
    transport_->StopReading();
  }
}

void Http1ClientConnection::OnTransportEof() {
  if (state_ == State::kClosing) return;
  if (state_ == State::kTunnel) {
    tunnel_->OnEof(Tunnel::kClient);
    return;
  }
  if (state_ == State::kHttp2) {
    peer_eof_ = true;
    h2_->OnEof();
    return;
  }
  // Between requests, let queued responses (e.g. to a client that half-closed after its last
  // request) flush first; otherwise there is nothing left to answer. After a complete request,
  // the response (and pipelined requests already received) are still answered; ProcessInput()
  // drains once nothing is left.
  peer_eof_ = true;
  if (state_ == State::kLingering) {
    Close();
    return;
  }
  const bool answering = state_ == State::kIdle || (state_ == State::kExchange && request_complete_);
  if (!answering) {
    Close();
    return;
  }
  if (state_ == State::kIdle) ProcessInput();
}

void Http1ClientConnection::OnTransportReadError(int status) {
  peer_eof_ = true;
  if (tls_ != nullptr && status == kTlsError && state_ != State::kClosing) {
    if (!tls_->transport.handshake_done()) {
      // OpenSSL's reason for a plaintext request where a ClientHello must be: "http request".
      const std::string& reason = tls_->transport.error();
      CloseForProtocolMismatch(absl::StrContains(reason, "http request")
                                   ? std::string("plain HTTP request on the TLS port")
                                   : absl::StrCat("TLS handshake failed (", reason, ")"));
      return;
    }
    PORTICO_LOG(kDebug, "proxy", "TLS error from ", client_ip_, ": ", tls_->transport.error());
  }
  Close();
}

void Http1ClientConnection::CloseForProtocolMismatch(absl::string_view what) {
  uint64_t suppressed = 0;
  if (worker_.AllowClientErrorLog(&suppressed)) {
    PORTICO_LOG(kInfo, "proxy", what, " from ", client_ip_, "; closed",
                suppressed > 0 ? absl::StrCat(" (", suppressed, " similar lines left out)") : std::string());
  }
  Close();
}

void Http1ClientConnection::OnHandshakeDone() {
  char buffer[kMaxServerNameBytes];
  SSL* ssl = tls_->transport.ssl();
  const absl::string_view sni = NegotiatedServerName(ssl, buffer);
  tls_->sni.assign(sni.data(), sni.size());
  ServerTlsContext::ForgetStore(ssl);
  tls_->handshake_certificates.reset();
}

void Http1ClientConnection::OnTransportRead(absl::string_view data) {
  if (state_ == State::kClosing || state_ == State::kLingering) return;  // lingering: discard
  if (state_ == State::kHttp2) {
    h2_->OnRead(data);
    return;
  }
  if (state_ == State::kTunnel) {
    tunnel_->OnRead(Tunnel::kClient, data);
    return;
  }
  if (!saw_bytes_ && !data.empty()) {
    saw_bytes_ = true;
    if (tls_ != nullptr) {
      OnHandshakeDone();
      const unsigned char* alpn = nullptr;
      unsigned int alpn_length = 0;
      SSL_get0_alpn_selected(tls_->transport.ssl(), &alpn, &alpn_length);
      if (absl::string_view(reinterpret_cast<const char*>(alpn), alpn_length) == "h2") {
        SwitchToHttp2(data);
        return;
      }
    } else if (data[0] == 0x16) {
      // A TLS record (handshake) where an HTTP method must start: a TLS client on this port.
      CloseForProtocolMismatch("TLS handshake on the cleartext HTTP port");
      return;
    } else if (worker_.options().http2 && StartsWithHttp2Preface(data)) {
      SwitchToHttp2(data);  // h2c with prior knowledge
      return;
    }
  }
  // Parsed straight from the worker's read buffer; only what stays unparsed is copied.
  ProcessInput(data);
}

void Http1ClientConnection::ProcessInput(absl::string_view fresh) {
  if (in_process_input_) {  // the outer loop picks up the new state
    input_.append(fresh.data(), fresh.size());  // (not reached: reads are never nested)
    return;
  }
  if (!input_.empty() && !fresh.empty()) {
    input_.append(fresh.data(), fresh.size());  // keep the byte order
    fresh = absl::string_view();
  }
  in_process_input_ = true;
  fresh_ = fresh;
  while (!parse_failed_) {
    const bool from_input = !input_.empty();
    const absl::string_view pending = from_input ? absl::string_view(input_) : fresh_;
    const bool exchange_wants_body = state_ == State::kExchange && !request_complete_ && exchange_ != nullptr &&
                                     exchange_->WantsRequestBody() && exchange_->UpstreamBacklog() < kHighWaterBytes;
    // A message end may need no bytes (a head without body): parse even when nothing is pending.
    if (pending.empty() && !(exchange_wants_body && codec_.in_message())) break;
    const bool can_parse =
        (state_ == State::kIdle && transport_->pending_write_bytes() < kHighWaterBytes) || exchange_wants_body;
    if (!can_parse) break;
    const Http1Codec::Result result = codec_.Execute(pending.data(), pending.size());
    if (codec_.holds_storage()) MarkRequestStateHeld();
    if (from_input) {
      input_.erase(0, result.consumed);
    } else {
      fresh_.remove_prefix(result.consumed);
    }
    if (state_ == State::kClosing) break;
    switch (result.event) {
      case Http1Codec::Event::kNeedMore:
        break;
      case Http1Codec::Event::kHead:
        OnRequestHead();
        if (state_ == State::kHttp2) {
          // Upgraded to h2c: what follows the head (the client preface) is HTTP/2.
          std::string rest = from_input ? std::move(input_) : std::string(fresh_);
          input_.clear();
          fresh_ = absl::string_view();
          in_process_input_ = false;
          if (!rest.empty()) h2_->OnRead(rest);
          return;
        }
        break;
      case Http1Codec::Event::kMessageDone:
        OnRequestComplete();
        break;
      case Http1Codec::Event::kHeadTooLarge:
      case Http1Codec::Event::kError:
        parse_failed_ = true;
        input_.clear();
        fresh_ = absl::string_view();
        PORTICO_LOG(kDebug, "proxy", "bad request from ", client_ip_, ": ", codec_.error_reason());
        RespondToBadInput(400, result.event == Http1Codec::Event::kHeadTooLarge ? dp::kMsgHeaderTooLarge
                                                                                : dp::kMsgBadRequest);
        break;
    }
    if (result.event == Http1Codec::Event::kNeedMore && result.consumed == pending.size()) {
      // Everything given was consumed: loop again only if more arrived meanwhile.
      if ((from_input ? input_.empty() : fresh_.empty())) break;
    }
  }
  in_process_input_ = false;
  if (state_ != State::kIdle && state_ != State::kExchange) {
    input_.clear();
    fresh_ = absl::string_view();
  }
  if (!fresh_.empty()) input_.append(fresh_.data(), fresh_.size());  // pipelined, or waiting
  fresh_ = absl::string_view();
  if (state_ == State::kIdle && input_.empty() && !codec_.in_message()) ReleaseRequestState();
  if (peer_eof_ && state_ == State::kIdle && input_.empty()) {
    // The client half-closed and everything it sent is answered.
    if (transport_->pending_write_bytes() > 0) {
      BeginDrain(/*client_done=*/true);
    } else {
      Close();
    }
    return;
  }
  UpdateReading();
}

void Http1ClientConnection::RespondToBadInput(int status, absl::string_view message) {
  if (state_ == State::kClosing || state_ == State::kDraining || state_ == State::kLingering) return;
  if (exchange_ != nullptr && exchange_->response_started()) {
    Close();  // cannot answer any more: the client sees a truncated response
    return;
  }
  if (exchange_ != nullptr) {
    exchange_->Cancel(status);  // logged with the answer below
    EndExchange();
  }
  if (state_ == State::kIdle) worker_.CountRequest();
  WriteToClient(BuildKongResponse(status, message, /*close=*/true));
  BeginDrain();
}

// ---- one exchange ----------------------------------------------------------------------------

void Http1ClientConnection::OnRequestHead() {
  if (state_ != State::kIdle) {  // cannot happen: the codec stops after each message
    RespondToBadInput(400, dp::kMsgBadRequest);
    return;
  }
  worker_.CountRequest();
  // Still armed while an earlier response waits for the client (pipelining): that wait stays
  // bounded by the client timeout.
  if (transport_->pending_write_bytes() == 0) worker_.DisarmDeadline(&deadline_);
  const MessageHead& head = codec_.head();
  // Nothing reaches an upstream before the head is known to be well-framed (http1_checks.h).
  const RequestHeadCheck check = CheckRequestHead(head);
  if (check.status != 0) {
    PORTICO_LOG(kDebug, "proxy", "refused request from ", client_ip_, ": ", check.reason);
    parse_failed_ = true;  // the connection closes after the answer; nothing more is parsed
    input_.clear();
    fresh_ = absl::string_view();
    WriteToClient(BuildKongResponse(
        check.status, check.status == 400 ? dp::kMsgBadRequest : HttpReasonPhrase(check.status), true));
    BeginDrain();
    return;
  }
  if (head.upgrade && tls_ == nullptr && worker_.options().http2 && UpgradeToH2c(head)) return;
  state_ = State::kExchange;
  client_http11_ = head.version_major > 1 || (head.version_major == 1 && head.version_minor >= 1);
  client_keep_alive_ = head.keep_alive;
  request_is_head_ = head.method == "HEAD";
  expects_continue_ = check.expects_continue;
  request_complete_ = false;
  close_after_ = false;
  framing_ = ResponseFraming::kNoBody;
  exchange_ = spare_exchange_ != nullptr ? std::move(spare_exchange_) : worker_.exchange_pool().Take();
  exchange_->Begin(worker_, *this, worker_.CurrentConfig(), head, check, client_ip_, serial_, ++requests_,
                   tls_ != nullptr, tls_ != nullptr ? absl::string_view(tls_->sni) : absl::string_view());
}

bool Http1ClientConnection::OnBody(absl::string_view data) {
  if (state_ != State::kExchange || exchange_ == nullptr) return true;
  // The client timeout bounds each wait for body bytes a step is holding for.
  if (exchange_->reading_request_body()) worker_.ArmDeadline(&deadline_, kIdleDeadlines);
  exchange_->OnRequestBody(data);
  return true;
}

void Http1ClientConnection::OnRequestComplete() {
  if (state_ != State::kExchange || exchange_ == nullptr) return;
  request_complete_ = true;
  exchange_->OnRequestComplete();  // may end the exchange (ExchangeDone)
}

void Http1ClientConnection::ContinueRequest() {
  if (!expects_continue_) return;
  expects_continue_ = false;
  WriteToClient("HTTP/1.1 100 Continue\r\n\r\n");
}

void Http1ClientConnection::WaitForRequestBody() {
  ContinueRequest();
  if (state_ == State::kExchange) worker_.ArmDeadline(&deadline_, kIdleDeadlines);
}

void Http1ClientConnection::RequestBodyWanted() {
  if (state_ == State::kExchange && !in_process_input_) ProcessInput();
}

void Http1ClientConnection::SendLocal(const dp::LocalResponse& response,
                                      absl::Span<const std::pair<std::string, std::string>> extra_headers) {
  // The rest of the request body is discarded: keep-alive only if the client allows it.
  const bool close = response.close || !client_keep_alive_ || worker_.draining();
  const std::string serialized = SerializeLocalResponse(response, close, extra_headers);
  if (exchange_ != nullptr) exchange_->response_bytes += serialized.size();
  WriteToClient(serialized);
  if (state_ != State::kExchange) return;  // the write failed and closed the connection
  if (close) {
    close_after_ = true;
    BeginDrain(ClientDone());
    return;
  }
  // The rest of the request body is read and discarded with no upstream (and its timeouts)
  // involved: the client timeout bounds that wait.
  if (!request_complete_) worker_.ArmDeadline(&deadline_, kIdleDeadlines);
}

bool Http1ClientConnection::SendResponseHead(const MessageHead& head,
                                             absl::Span<const std::pair<std::string, std::string>> extra_headers,
                                             absl::Span<const absl::string_view> removed_headers) {
  framing_ = ChooseResponseFraming(head, request_is_head_, client_http11_);
  if (framing_ == ResponseFraming::kUntilClose || !request_complete_ || worker_.draining()) close_after_ = true;
  const bool keep_alive = client_keep_alive_ && !close_after_;
  // Queued, not written: it leaves with the body bytes of the same upstream read (one writev).
  if (ClaimOutput()) {
    ClientOutput& out = worker_.client_output();
    const size_t offset = out.owned.size();
    AppendDownstreamResponseHead(&out.owned, head, framing_, keep_alive, client_http11_, extra_headers,
                                 removed_headers);
    out.pieces[out.count++] = ClientOutput::Piece{nullptr, offset, out.owned.size() - offset};
    if (exchange_ != nullptr) exchange_->response_bytes += out.owned.size() - offset;
  }
  // No body after a 1xx, 204 or 304 head or in a response to HEAD, whatever its Content-Length
  // says (RFC 9112 §6.3).
  return framing_ != ResponseFraming::kNoBody && framing_ != ResponseFraming::kHeadResponse;
}

void Http1ClientConnection::SendResponseBody(absl::string_view data) {
  if (framing_ == ResponseFraming::kChunked) {
    char size_line_buffer[24];
    QueueToClient(ChunkSizeLine(data.size(), size_line_buffer), /*copy=*/true);
    QueueToClient(data, /*copy=*/false);
    QueueToClient("\r\n", /*copy=*/false);
  } else {
    QueueToClient(data, /*copy=*/false);  // borrowed from the read buffer until FlushResponse
  }
}

void Http1ClientConnection::FlushResponse() { FlushToClient(); }

void Http1ClientConnection::EndResponse() {
  if (framing_ == ResponseFraming::kChunked) QueueToClient(kLastChunk, /*copy=*/false);
  FlushToClient();
  if (state_ != State::kExchange) return;  // the flush failed and closed the connection
  if (!request_complete_) {
    // The upstream answered before the request body was complete: close after this response.
    close_after_ = true;
    BeginDrain();
  }
}

void Http1ClientConnection::ExchangeDone() {
  if (state_ == State::kTunnel) {  // the tunnel needs neither the exchange nor the request head
    EndExchange();
    ReleaseRequestState();
    return;
  }
  // A drain that began after the head went out still ends the connection here.
  const bool keep_alive = client_keep_alive_ && !close_after_ && !worker_.draining();
  const bool draining = state_ != State::kExchange;  // a local response or early answer closes
  const bool client_done = !keep_alive && ClientDone();
  EndExchange();  // unpins the config
  if (draining) return;
  if (!keep_alive) {
    BeginDrain(client_done);
    return;
  }
  EnterIdle();
  ProcessInput();  // pipelined requests (no-op when called from inside ProcessInput)
}

bool Http1ClientConnection::StartTunnel(const MessageHead& head,
                                        absl::Span<const std::pair<std::string, std::string>> extra_headers,
                                        absl::Span<const absl::string_view> removed_headers,
                                        UpstreamConnection& upstream, int64_t idle_timeout_ms) {
  // The handshake request was read whole; nothing of the response went out yet.
  if (state_ != State::kExchange || !request_complete_) return false;
  std::string switching;
  AppendSwitchingProtocolsHead(&switching, head, extra_headers, removed_headers);
  WriteToClient(switching);  // what the kernel does not take is copied
  if (state_ != State::kExchange) return false;  // the write failed and closed the connection
  state_ = State::kTunnel;
  worker_.DisarmDeadline(&deadline_);
  transport_->SetNoDelay();  // small frames both ways: no Nagle delay (the upstream side has it already)
  tunnel_ = std::make_unique<Tunnel>(worker_, *this, upstream);
  upstream.EnterTunnel(tunnel_.get(), idle_timeout_ms);
  // Bytes the client sent after its handshake, before the 101 (queued unparsed), go first.
  if (!input_.empty()) {
    std::string early;
    early.swap(input_);
    tunnel_->OnRead(Tunnel::kClient, early);
  }
  if (peer_eof_) tunnel_->OnEof(Tunnel::kClient);
  tunnel_->Start();  // no-op once closed
  return true;
}

// ---- writing and closing ---------------------------------------------------------------------

void Http1ClientConnection::QueueToClient(absl::string_view data, bool copy) {
  if (data.empty()) return;
  if (!ClaimOutput()) return;
  ClientOutput& out = worker_.client_output();
  ClientOutput::Piece piece;
  piece.size = data.size();
  if (copy) {
    piece.offset = out.owned.size();
    out.owned.append(data.data(), data.size());
  } else {
    piece.borrowed = data.data();
  }
  out.pieces[out.count++] = piece;
}

bool Http1ClientConnection::WaitsOnClient() const {
  if (state_ != State::kExchange) return false;
  return transport_->pending_write_bytes() > 0 ||
         (exchange_ != nullptr && (exchange_->local_response() || exchange_->reading_request_body()));
}

bool Http1ClientConnection::ClaimOutput() {
  ClientOutput& out = worker_.client_output();
  if (out.count > 0 && (out.owner != this || out.count == ClientOutput::kMaxPieces)) out.owner->FlushToClient();
  if (state_ == State::kClosing) return false;  // our own flush failed and closed us
  out.owner = this;
  return true;
}

void Http1ClientConnection::FlushToClient() {
  ClientOutput& out = worker_.client_output();
  if (out.owner != this || out.count == 0) return;
  const size_t count = out.count;
  out.count = 0;
  if (state_ == State::kClosing || state_ == State::kLingering) {
    out.owned.clear();
    return;
  }
  absl::string_view parts[ClientOutput::kMaxPieces];
  for (size_t i = 0; i < count; ++i) {
    const ClientOutput::Piece& piece = out.pieces[i];
    parts[i] = absl::string_view(piece.borrowed != nullptr ? piece.borrowed : out.owned.data() + piece.offset,
                                 piece.size);
  }
  // Nagle can only hold back a write while earlier bytes are unacknowledged: the first write of
  // a connection goes out at once without TCP_NODELAY (one setsockopt saved per short-lived
  // connection); from the second write on it is set, once (as nginx does for keep-alive).
  if (wrote_) transport_->SetNoDelay();
  wrote_ = true;
  const size_t queued_before = transport_->pending_write_bytes();
  const bool ok = transport_->Write(parts, count);
  out.owned.clear();  // keeps its capacity
  if (!ok) {
    Close();
    return;
  }
  // Bytes now wait for the client: during an exchange, start counting the client timeout
  // (restarted by each completed write, see OnTransportWritten).
  if (state_ == State::kExchange && queued_before == 0 && transport_->pending_write_bytes() > 0) {
    worker_.ArmDeadline(&deadline_, kIdleDeadlines);
  }
}

void Http1ClientConnection::WriteToClient(absl::string_view data) {
  QueueToClient(data, /*copy=*/false);
  FlushToClient();
}

void Http1ClientConnection::OnTransportWritten(size_t, int status) {
  if (state_ == State::kClosing) return;
  if (status < 0) {
    Close();
    return;
  }
  if (state_ == State::kTunnel) {
    tunnel_->OnWritten(Tunnel::kClient);
    return;
  }
  if (state_ == State::kHttp2) {
    h2_->OnWritten();
    return;
  }
  // A response still draining to a slow reader counts from its last write progress, as nginx's
  // send_timeout: the client timeout is not a limit on how long a large response may take, but a
  // client that stops reading is dropped (which also frees the upstream connection).
  if (state_ == State::kIdle || state_ == State::kDraining || WaitsOnClient()) {
    worker_.ArmDeadline(&deadline_, kIdleDeadlines);
  } else if (state_ == State::kExchange) {
    worker_.DisarmDeadline(&deadline_);
  }
  if (transport_->pending_write_bytes() >= kLowWaterBytes) return;
  if (exchange_ != nullptr) exchange_->OnDownstreamDrained();
  if (state_ == State::kIdle) {
    ProcessInput();
  } else {
    UpdateReading();
  }
}

bool Http1ClientConnection::ClientDone() const {
  if (peer_eof_) return true;  // everything the client sent has been read
  // A client that asked to close sends nothing after its request (RFC 9112 §9.6): with the
  // request read completely and nothing unparsed buffered, no unread byte can turn our close
  // into a RST (nginx's lingering_close heuristic).
  return exchange_ != nullptr && request_complete_ && !client_keep_alive_ && !parse_failed_ && input_.empty() &&
         fresh_.empty();
}

void Http1ClientConnection::BeginDrain(bool client_done) {
  if (state_ == State::kClosing || state_ == State::kDraining || state_ == State::kLingering) return;
  worker_.DisarmDeadline(&deadline_);
  if (client_done && transport_->pending_write_bytes() == 0 && tls_ == nullptr) {
    // The kernel holds every response byte: close() sends them, then the FIN. No shutdown and
    // no lingering read (2 system calls and 2 epoll_ctl fewer per connection). Not for TLS: a
    // close without close_notify is a truncation to the client, whose session is then not
    // resumable.
    Close();
    return;
  }
  state_ = State::kDraining;
  worker_.ArmDeadline(&deadline_, kIdleDeadlines);  // a client that stops reading is dropped
  // Even a client that asked to close may send bytes (a pipelined request, a stray CRLF) while
  // the queued response drains; reading is stopped here, so OnTransportShutdown lingers (unless
  // the client already sent EOF) to keep such bytes from turning the close into a RST.
  if (!in_process_input_) input_.clear();  // else ProcessInput() drops it after the codec returns
  UpdateReading();
  // The shutdown completes after every queued write has been flushed.
  if (!transport_->Shutdown()) Close();
}

void Http1ClientConnection::OnTransportShutdown(int status) {
  if (state_ == State::kClosing || state_ == State::kHttp2) return;
  if (state_ == State::kTunnel) {
    tunnel_->OnShutdown(Tunnel::kClient, status);
    return;
  }
  if (status < 0 || peer_eof_) {
    Close();
    return;
  }
  // Lingering close: read and discard until the client closes, so that unread request bytes do
  // not turn our FIN into a RST that could destroy the response in flight.
  state_ = State::kLingering;
  worker_.ArmDeadline(&deadline_, kLingerDeadlines);
  UpdateReading();
}

// ---- HTTP/2 ------------------------------------------------------------------------------------

void Http1ClientConnection::SwitchToHttp2(absl::string_view initial) {
  state_ = State::kHttp2;
  worker_.DisarmDeadline(&deadline_);
  h2_ = std::make_unique<Http2ClientSession>(worker_, *transport_, *this, client_ip_, serial_, tls_ != nullptr,
                                             tls_ != nullptr ? absl::string_view(tls_->sni) : absl::string_view());
  if (!h2_->Start(initial)) {
    if (state_ != State::kClosing) Close();
    return;
  }
  NoticeDrainAfterSwitch();
}

bool Http1ClientConnection::UpgradeToH2c(const MessageHead& head) {
  const std::string* upgrade = head.Find("upgrade");
  if (upgrade == nullptr || !ListHasToken(*upgrade, "h2c")) return false;
  if (head.chunked || head.content_length > 0) return false;  // served as HTTP/1.1 (RFC 9113 §3.1 allows it)
  const std::string* settings = nullptr;
  for (const auto& [name, value] : head.headers) {
    if (!absl::EqualsIgnoreCase(name, "http2-settings")) continue;
    if (settings != nullptr) return false;
    settings = &value;
  }
  if (settings == nullptr) return false;
  WriteToClient("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
  if (state_ == State::kClosing) return true;
  state_ = State::kHttp2;
  worker_.DisarmDeadline(&deadline_);
  h2_ = std::make_unique<Http2ClientSession>(worker_, *transport_, *this, client_ip_, serial_, false,
                                             absl::string_view());
  if (!h2_->StartUpgraded(*settings, head)) {
    if (state_ != State::kClosing) Close();
    return true;
  }
  NoticeDrainAfterSwitch();
  return true;
}

void Http1ClientConnection::Http2Finished() {
  if (state_ != State::kHttp2) return;
  // The session is over (GOAWAY sent, or the client went away): its exchanges are cancelled,
  // then the queued frames (the GOAWAY) drain and the socket lingers like an HTTP/1.1 close, so
  // that bytes the client is still sending do not turn the close into a RST that drops them.
  h2_->Abort();
  state_ = State::kIdle;  // BeginDrain starts from a live HTTP/1 state
  BeginDrain(/*client_done=*/peer_eof_);
}

void Http1ClientConnection::Http2Deadline(Deadline deadline) {
  if (state_ != State::kHttp2) return;
  switch (deadline) {
    case Deadline::kOff:
      worker_.DisarmDeadline(&deadline_);
      return;
    case Deadline::kRestart:
      worker_.ArmDeadline(&deadline_, kIdleDeadlines);
      return;
    case Deadline::kKeep:
      if (deadline_.list != kIdleDeadlines) worker_.ArmDeadline(&deadline_, kIdleDeadlines);
      return;
  }
}

}  // namespace portico::dp
