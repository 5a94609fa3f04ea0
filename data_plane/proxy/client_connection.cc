#include "data_plane/proxy/client_connection.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "data_plane/proxy/request_head_check.h"
#include "data_plane/proxy/worker.h"
#include "data_plane/router/router.h"

namespace portico::proxy {
namespace {

// Owns the bytes of one uv_write until its callback (only what uv_try_write left over).
struct WriteRequest {
  uv_write_t req;
  std::string data;
};

// Pipelined or early bytes buffered beyond this stop reading from the client.
constexpr size_t kMaxBufferedInputBytes = kReadBufferBytes;
// An exchange whose buffers grew beyond this is freed instead of pooled.
constexpr size_t kMaxPooledExchangeBytes = 16 * 1024;

std::string PeerIp(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (address->sa_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(address), text, sizeof(text));
  } else if (address->sa_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(address), text, sizeof(text));
  }
  absl::string_view ip(text);
  if (absl::StartsWith(ip, "::ffff:") && ip.find('.') != absl::string_view::npos) ip.remove_prefix(7);
  return std::string(ip);
}

}  // namespace

// libuv trampolines: recover the connection from handle->data and forward to one member.
struct ClientConnection::Uv {
  static ClientConnection* Self(uv_handle_t* h) { return static_cast<ClientConnection*>(h->data); }
  static void Alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    buf->base = Self(h)->worker_.read_buffer();
    buf->len = kReadBufferBytes;
  }
  static void Read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    Self(reinterpret_cast<uv_handle_t*>(s))->OnRead(nread, buf->base);
  }
  static void Written(uv_write_t* req, int status) {
    auto* write = reinterpret_cast<WriteRequest*>(req);
    ClientConnection* self = Self(reinterpret_cast<uv_handle_t*>(req->handle));
    const size_t bytes = write->data.size();
    delete write;
    self->OnWriteDone(bytes, status);
  }
  static void Shutdown(uv_shutdown_t* req, int status) {
    // Also called (UV_ECANCELED) from uv_close, before the close callback frees the connection.
    static_cast<ClientConnection*>(req->data)->OnShutdown(status);
  }
  static void Closed(uv_handle_t* h) { Self(h)->OnHandleClosed(); }
};

ClientConnection::ClientConnection(Worker& worker)
    : worker_(worker),
      parser_(Http1Parser::Kind::kRequest, this, worker.options().max_header_bytes, &worker.head_pool()) {
  deadline_.owner = this;
}

ClientConnection::~ClientConnection() {
  worker_.DisarmDeadline(&deadline_);
  if (holds_request_state_) worker_.CountRequestState(-1);
}

absl::Status ClientConnection::Accept(int fd, const struct sockaddr* peer) {
  uv_tcp_init(worker_.loop(), &tcp_);
  tcp_.data = this;
  handles_initialised_ = true;
  if (int rc = uv_tcp_open(&tcp_, fd); rc != 0) {
    ::close(fd);  // not adopted
    return absl::UnavailableError(absl::StrCat("uv_tcp_open: ", uv_strerror(rc)));
  }
  // TCP_NODELAY is set lazily, before the second write (FlushToClient): a connection that gets
  // one response in one writev (every small Connection: close exchange) never needs it.
  client_ip_ = PeerIp(peer);  // from accept4: no getpeername
  EnterIdle();
  UpdateReading();
  return absl::OkStatus();
}

void ClientExchange::Reset() {
  config.reset();
  target = nullptr;
  upstream_head.clear();
  pending_body.clear();
  debug_headers.clear();
  upstream = nullptr;
  framing = ResponseFraming::kNoBody;
  connect_retries_left = 0;
  client_http11 = true;
  client_keep_alive = true;
  request_is_head = false;
  request_chunked = false;
  request_complete = false;
  body_streamed = false;
  local_response = false;
  response_started = false;
  response_complete = false;
  close_after = false;
  stale_retry_used = false;
}

bool ClientExchange::WorthPooling() const {
  return upstream_head.capacity() + pending_body.capacity() <= kMaxPooledExchangeBytes;
}

void ClientConnection::EndExchange() {
  if (exchange_ == nullptr) return;
  exchange_->Reset();
  spare_exchange_ = std::move(exchange_);
}

void ClientConnection::MarkRequestStateHeld() {
  if (holds_request_state_) return;
  holds_request_state_ = true;
  worker_.CountRequestState(1);
}

void ClientConnection::ReleaseRequestState() {
  if (spare_exchange_ != nullptr) {
    if (spare_exchange_->WorthPooling()) worker_.exchange_pool().Give(std::move(spare_exchange_));
    spare_exchange_.reset();  // Give() leaves it when the pool is full
  }
  parser_.ReleaseStorage();
  if (input_.capacity() > std::string().capacity()) std::string().swap(input_);  // heap-allocated
  if (holds_request_state_ && !parser_.holds_storage()) {
    holds_request_state_ = false;
    worker_.CountRequestState(-1);
  }
}

void ClientConnection::Close() {
  if (state_ == State::kClosing) return;
  state_ = State::kClosing;
  worker_.DisarmDeadline(&deadline_);
  ClientOutput& out = worker_.client_output();
  if (out.owner == this) {
    out.count = 0;
    out.owned.clear();
    out.owner = nullptr;
  }
  if (exchange_ != nullptr && exchange_->upstream != nullptr) exchange_->upstream->Abort();
  // Close() can run inside a write made by code that still holds `*exchange_` (a client write
  // that fails at once): keep the object alive until the connection itself is destroyed.
  retired_exchange_ = std::move(exchange_);
  if (!handles_initialised_) {
    worker_.Destroy(this);
    return;
  }
  pending_closes_ = 1;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), Uv::Closed);
}

void ClientConnection::OnHandleClosed() {
  if (--pending_closes_ == 0) worker_.Destroy(this);  // freed after this loop iteration
}

void ClientConnection::EnterIdle() {
  state_ = State::kIdle;
  worker_.ArmDeadline(&deadline_, kIdleDeadlines);
}

void ClientConnection::OnDeadline() {
  switch (state_) {
    case State::kIdle:       // keep-alive or header timeout, or no write progress (see OnWriteDone)
    case State::kDraining:   // the client stopped reading the last response
    case State::kLingering:  // the client did not close in time
      Close();
      return;
    case State::kExchange:  // armed only while the exchange waits on the client (WaitsOnClient)
      if (WaitsOnClient()) Close();
      return;
    default:
      return;
  }
}

// ---- reading and parsing -------------------------------------------------------------------

void ClientConnection::UpdateReading() {
  if (state_ == State::kClosing || !handles_initialised_) return;
  bool want = false;
  switch (state_) {
    case State::kIdle:
      want = !peer_eof_ && input_.size() < kMaxBufferedInputBytes && pending_write_bytes_ < kHighWaterBytes;
      break;
    case State::kExchange:
      // Keep reading after the request is complete: pipelined bytes queue in input_, and the
      // watcher is not toggled per request. Stop while a streaming body outruns the upstream.
      want = !peer_eof_ && input_.size() < kMaxBufferedInputBytes &&
             (exchange_->request_complete || UpstreamBacklog() < kHighWaterBytes);
      break;
    case State::kLingering:
      want = true;
      break;
    case State::kDraining:
    case State::kClosing:
      want = false;
      break;
  }
  if (want == reading_) return;
  if (want) {
    reading_ = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), Uv::Alloc, Uv::Read) == 0;
  } else {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void ClientConnection::OnRead(ssize_t nread, const char* data) {
  if (state_ == State::kClosing || nread == 0) return;
  if (nread < 0) {
    // EOF or error. Between requests, let queued responses (e.g. to a client that half-closed
    // after its last request) flush first; otherwise there is nothing left to answer.
    // After a complete request, the response (and pipelined requests already received) are
    // still answered; ProcessInput() drains once nothing is left.
    peer_eof_ = true;
    reading_ = false;  // libuv stops reading at EOF
    const bool answering = state_ == State::kIdle || (state_ == State::kExchange && exchange_->request_complete);
    if (nread != UV_EOF || !answering) {
      Close();
      return;
    }
    if (state_ == State::kIdle) ProcessInput();
    return;
  }
  if (state_ == State::kLingering) return;  // discard
  // Parsed straight from the worker's read buffer; only what stays unparsed is copied.
  ProcessInput(absl::string_view(data, static_cast<size_t>(nread)));
}

void ClientConnection::ProcessInput(absl::string_view fresh) {
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
    if (pending.empty()) break;
    const bool can_parse =
        (state_ == State::kIdle && pending_write_bytes_ < kHighWaterBytes) ||
        (state_ == State::kExchange && !exchange_->request_complete && UpstreamBacklog() < kHighWaterBytes);
    if (!can_parse) break;
    const Http1Parser::Result result = parser_.Execute(pending.data(), pending.size());
    if (parser_.holds_storage()) MarkRequestStateHeld();
    if (from_input) {
      input_.erase(0, result.consumed);
    } else {
      fresh_.remove_prefix(result.consumed);
    }
    if (state_ == State::kClosing) break;
    if (result.outcome == Http1Parser::Outcome::kMessageDone) {
      OnRequestComplete();
    } else if (result.outcome == Http1Parser::Outcome::kHeadTooLarge ||
               result.outcome == Http1Parser::Outcome::kError) {
      parse_failed_ = true;
      input_.clear();
      fresh_ = absl::string_view();
      RespondToBadInput(result.outcome == Http1Parser::Outcome::kHeadTooLarge);
    }
  }
  in_process_input_ = false;
  if (state_ != State::kIdle && state_ != State::kExchange) {
    input_.clear();
    fresh_ = absl::string_view();
  }
  if (!fresh_.empty()) input_.append(fresh_.data(), fresh_.size());  // pipelined, or waiting
  fresh_ = absl::string_view();
  if (state_ == State::kIdle && input_.empty() && !parser_.in_message()) ReleaseRequestState();
  if (peer_eof_ && state_ == State::kIdle && input_.empty()) {
    // The client half-closed and everything it sent is answered.
    if (pending_write_bytes_ > 0) {
      BeginDrain(/*client_done=*/true);
    } else {
      Close();
    }
    return;
  }
  UpdateReading();
}

void ClientConnection::RespondToBadInput(bool head_too_large) {
  if (state_ == State::kClosing || state_ == State::kDraining || state_ == State::kLingering) return;
  if (exchange_ != nullptr && exchange_->response_started) {
    Close();  // cannot answer any more: the client sees a truncated response
    return;
  }
  if (exchange_ != nullptr && exchange_->upstream != nullptr) {
    exchange_->upstream->Abort();
    exchange_->upstream = nullptr;
  }
  EndExchange();
  if (state_ == State::kIdle) worker_.CountRequest();
  WriteToClient(BuildKongResponse(400, head_too_large ? kMsgHeaderTooLarge : kMsgBadRequest, /*close=*/true));
  BeginDrain();
}

// ---- one exchange ----------------------------------------------------------------------------

Http1ParserDelegate::HeadAction ClientConnection::OnHead(const Http1Head& head) {
  if (state_ != State::kIdle) return HeadAction::kError;
  worker_.CountRequest();
  // Still armed while an earlier response waits for the client (pipelining): that wait stays
  // bounded by the client timeout.
  if (pending_write_bytes_ == 0) worker_.DisarmDeadline(&deadline_);
  state_ = State::kExchange;
  exchange_ = spare_exchange_ != nullptr ? std::move(spare_exchange_) : worker_.exchange_pool().Take();
  Exchange& ex = *exchange_;
  ex.config = worker_.CurrentConfig();  // pinned until the exchange ends
  ex.client_http11 = head.version_major > 1 || (head.version_major == 1 && head.version_minor >= 1);
  ex.client_keep_alive = head.keep_alive;
  ex.request_is_head = head.method == "HEAD";
  ex.request_chunked = head.chunked;

  // Nothing reaches an upstream before the head is known to be well-framed (request_head_check.h).
  const RequestHeadCheck check = CheckRequestHead(head);
  if (check.status != 0) {
    PORTICO_LOG(kDebug, "proxy", "refused request from ", client_ip_, ": ", check.reason);
    RespondLocally(check.status, check.status == 400 ? kMsgBadRequest : HttpReasonPhrase(check.status),
                   /*force_close=*/true);
    return HeadAction::kError;  // stop parsing: the connection closes after the response
  }
  const absl::string_view path = check.target.path;
  const absl::string_view query = check.target.query;
  const bool has_query = check.target.has_query;
  if (ex.config == nullptr) {
    RespondLocally(404, kMsgNoRoute, false);
    return HeadAction::kContinue;
  }
  // Kong normalises the path before matching; the normalised path is what goes upstream.
  const std::string normalized_path = router::NormalizeRequestPath(path);
  const absl::string_view host = check.host;  // the absolute-form authority, else Host
  std::vector<std::pair<absl::string_view, absl::string_view>>& headers = worker_.router_headers();
  headers.clear();  // keeps its capacity across requests
  for (const auto& [name, value] : head.headers) headers.emplace_back(name, value);
  router::RequestView view;
  view.method = head.method;
  view.host = host;
  view.port = worker_.port();
  view.path = normalized_path;
  view.headers = &headers;
  const std::optional<router::Match> match = ex.config->router().Find(view);
  if (!match.has_value() || match->route == nullptr) {
    RespondLocally(404, kMsgNoRoute, false);
    return HeadAction::kContinue;
  }
  if (worker_.options().allow_debug_header) {
    // Kong adds the debug headers whenever the request carries Kong-Debug (any value).
    if (head.Find("kong-debug") != nullptr) {
      ex.debug_headers.emplace_back("Kong-Route-Id", match->route->id());
      if (match->route->has_name()) ex.debug_headers.emplace_back("Kong-Route-Name", match->route->name());
      if (match->service != nullptr) {
        ex.debug_headers.emplace_back("Kong-Service-Id", match->service->id());
        if (match->service->has_name()) {
          ex.debug_headers.emplace_back("Kong-Service-Name", match->service->name());
        }
      }
    }
  }
  if (match->https_only) {
    // This listener is plain HTTP: Kong answers with the route's https_redirect_status_code.
    const std::string path_and_query = has_query ? absl::StrCat(path, "?", query) : std::string(path);
    const bool close = !ex.client_keep_alive;
    SendLocalResponse(BuildHttpsRequiredResponse(match->route->https_redirect_status_code(), host,
                                                 path_and_query, close, ex.debug_headers),
                      close);
    return HeadAction::kContinue;
  }
  ex.target = ex.config->FindService(match->service);
  if (match->service == nullptr || ex.target == nullptr) {
    RespondLocally(503, kMsgNoService, false);
    return HeadAction::kContinue;
  }
  if (ex.target->ip.empty()) {
    RespondLocally(503, kMsgNameResolution, false);
    return HeadAction::kContinue;
  }

  const std::string upstream_path = router::EscapeUpstreamPath(router::BuildUpstreamPath(
      ex.target->has_path ? absl::string_view(ex.target->path) : absl::string_view(), normalized_path,
      match->matched_path, match->route->strip_path()));
  UpstreamRequestParams params;
  params.upstream_path = upstream_path;
  params.query = query;
  params.has_query = has_query;
  params.host_header = (match->route->preserve_host() && check.has_host) ? host
                                                                         : absl::string_view(ex.target->host_header);
  params.client_ip = client_ip_;
  params.client_host = check.has_host ? StripPort(host) : absl::string_view();
  params.local_port = worker_.port();
  params.chunked_body = head.chunked;
  params.has_content_length = head.has_content_length;
  params.content_length = head.content_length;
  AppendUpstreamRequestHead(&ex.upstream_head, head, params);  // empty here; keeps its capacity
  ex.connect_retries_left = ex.target->retries;

  const std::string* expect = head.Find("expect");
  if (expect != nullptr && ex.client_http11 && absl::EqualsIgnoreCase(*expect, "100-continue")) {
    WriteToClient("HTTP/1.1 100 Continue\r\n\r\n");
    if (state_ == State::kClosing) return HeadAction::kError;
  }
  StartUpstream(/*allow_pooled=*/true);
  return HeadAction::kContinue;
}

void ClientConnection::OnBody(absl::string_view data) {
  if (state_ != State::kExchange || exchange_ == nullptr || exchange_->local_response) return;
  SendToUpstream(data, exchange_->request_chunked);
}

void ClientConnection::OnRequestComplete() {
  if (state_ != State::kExchange || exchange_ == nullptr) return;
  Exchange& ex = *exchange_;
  ex.request_complete = true;
  if (!ex.local_response && ex.request_chunked) SendToUpstream(kLastChunk, /*as_chunk=*/false);
  MaybeFinishExchange();
}

void ClientConnection::StartUpstream(bool allow_pooled) {
  Exchange& ex = *exchange_;
  UpstreamConnection* connection = allow_pooled ? worker_.AcquireIdle(ex.target->pool_key) : nullptr;
  if (connection == nullptr) {
    absl::StatusOr<UpstreamConnection*> fresh = worker_.ConnectUpstream(*ex.target);
    if (!fresh.ok()) {
      PORTICO_LOG(kWarn, "proxy", "upstream ", ex.target->pool_key, ": ", fresh.status().message());
      RespondLocally(502, kMsgBadGateway, !ex.request_complete);
      return;
    }
    connection = *fresh;
  }
  ex.upstream = connection;
  UpstreamTimeouts timeouts;
  timeouts.connect_ms = ex.target->connect_timeout_ms;
  timeouts.write_ms = ex.target->write_timeout_ms;
  timeouts.read_ms = ex.target->read_timeout_ms;
  connection->Attach(this, timeouts);
  if (connection->connected()) OnUpstreamConnected();
}

void ClientConnection::OnUpstreamConnected() {
  if (exchange_ == nullptr || exchange_->upstream == nullptr) return;
  Exchange& ex = *exchange_;
  UpstreamConnection* connection = ex.upstream;
  // upstream_head stays for the stale-connection retry.
  if (!ex.pending_body.empty()) ex.body_streamed = true;
  connection->Write({ex.upstream_head, ex.pending_body});
  ex.pending_body.clear();
}

void ClientConnection::SendToUpstream(absl::string_view data, bool as_chunk) {
  if (data.empty()) return;
  Exchange& ex = *exchange_;
  char size_line_buffer[24];
  const absl::string_view size_line = as_chunk ? ChunkSizeLine(data.size(), size_line_buffer) : absl::string_view();
  const absl::string_view trailer = as_chunk ? absl::string_view("\r\n") : absl::string_view();
  if (ex.upstream != nullptr && ex.upstream->connected()) {
    ex.body_streamed = true;
    ex.upstream->Write({size_line, data, trailer});  // straight from the read buffer
  } else {
    ex.pending_body.append(size_line.data(), size_line.size())
        .append(data.data(), data.size())
        .append(trailer.data(), trailer.size());
  }
}

size_t ClientConnection::UpstreamBacklog() const {
  if (exchange_ == nullptr) return 0;
  size_t backlog = exchange_->pending_body.size();
  if (exchange_->upstream != nullptr) backlog += exchange_->upstream->pending_write_bytes();
  return backlog;
}

void ClientConnection::OnUpstreamWriteDrained() {
  if (state_ == State::kExchange && !in_process_input_) ProcessInput();
}

Http1ParserDelegate::HeadAction ClientConnection::OnUpstreamHead(const Http1Head& head) {
  if (exchange_ == nullptr) return HeadAction::kError;
  Exchange& ex = *exchange_;
  if (!IsForwardableResponseHead(head)) return HeadAction::kError;  // 502, connection not reused
  ex.framing = ChooseResponseFraming(head, ex.request_is_head, ex.client_http11);
  if (ex.framing == ResponseFraming::kUntilClose || !ex.request_complete) ex.close_after = true;
  const bool keep_alive = ex.client_keep_alive && !ex.close_after;
  // Queued, not written: it leaves with the body bytes of the same upstream read (one writev).
  if (!ClaimOutput()) return HeadAction::kError;
  ClientOutput& out = worker_.client_output();
  const size_t offset = out.owned.size();
  AppendDownstreamResponseHead(&out.owned, head, ex.framing, keep_alive, ex.client_http11, ex.debug_headers);
  out.pieces[out.count++] = ClientOutput::Piece{nullptr, offset, out.owned.size() - offset};
  ex.response_started = true;
  // No body after a 1xx, 204 or 304 head or in a response to HEAD, whatever its Content-Length
  // says (RFC 9112 §6.3; llhttp itself knows this only for 1xx and 204).
  const bool bodiless = ex.framing == ResponseFraming::kNoBody || ex.framing == ResponseFraming::kHeadResponse;
  return bodiless ? HeadAction::kSkipBody : HeadAction::kContinue;
}

void ClientConnection::OnUpstreamBody(absl::string_view data) {
  if (exchange_ == nullptr) return;
  Exchange& ex = *exchange_;
  if (ex.framing == ResponseFraming::kNoBody || ex.framing == ResponseFraming::kHeadResponse || data.empty()) {
    return;
  }
  if (ex.framing == ResponseFraming::kChunked) {
    char size_line_buffer[24];
    QueueToClient(ChunkSizeLine(data.size(), size_line_buffer), /*copy=*/true);
    QueueToClient(data, /*copy=*/false);
    QueueToClient("\r\n", /*copy=*/false);
  } else {
    QueueToClient(data, /*copy=*/false);  // borrowed from the read buffer until OnUpstreamReadEnd
  }
}

void ClientConnection::OnUpstreamReadEnd() {
  FlushToClient();
  if (state_ == State::kClosing || exchange_ == nullptr) return;
  if (pending_write_bytes_ >= kHighWaterBytes && exchange_->upstream != nullptr) exchange_->upstream->PauseReading();
}

void ClientConnection::OnUpstreamComplete() {
  Exchange& ex = *exchange_;
  if (ex.framing == ResponseFraming::kChunked) QueueToClient(kLastChunk, /*copy=*/false);
  FlushToClient();
  if (state_ == State::kClosing) return;  // Close() aborted the upstream
  ex.response_complete = true;
  UpstreamConnection* connection = ex.upstream;
  ex.upstream = nullptr;
  // Reusable only if the whole request went out: otherwise the upstream may still expect body.
  connection->Release(/*reusable=*/ex.request_complete && ex.pending_body.empty());
  if (!ex.request_complete) {
    ex.close_after = true;
    EndExchange();
    BeginDrain();
    return;
  }
  MaybeFinishExchange();
}

void ClientConnection::OnUpstreamFailure(UpstreamError error, bool response_bytes_received) {
  if (exchange_ == nullptr) return;
  Exchange& ex = *exchange_;
  ex.upstream = nullptr;
  if (ex.response_started) {
    Close();  // the response is truncated; closing is the only signal left
    return;
  }
  const bool connect_error = error == UpstreamError::kConnectFailed || error == UpstreamError::kConnectTimeout;
  if (connect_error && ex.connect_retries_left > 0) {
    --ex.connect_retries_left;
    StartUpstream(/*allow_pooled=*/false);
    return;
  }
  // A pooled connection the upstream had already closed: retry once on a fresh one.
  if (error == UpstreamError::kClosed && !response_bytes_received && !ex.body_streamed && !ex.stale_retry_used) {
    ex.stale_retry_used = true;
    StartUpstream(/*allow_pooled=*/false);
    return;
  }
  const bool timeout = error == UpstreamError::kConnectTimeout || error == UpstreamError::kWriteTimeout ||
                       error == UpstreamError::kReadTimeout;
  PORTICO_LOG(kDebug, "proxy", "upstream failure ", static_cast<int>(error));
  RespondLocally(timeout ? 504 : 502, timeout ? kMsgTimeout : kMsgBadGateway, !ex.request_complete);
}

void ClientConnection::RespondLocally(int status, absl::string_view message, bool force_close) {
  const bool close = force_close || !exchange_->client_keep_alive;
  SendLocalResponse(BuildKongResponse(status, message, close, exchange_->debug_headers), close);
}

void ClientConnection::SendLocalResponse(std::string response, bool close) {
  Exchange& ex = *exchange_;
  if (ex.upstream != nullptr) {
    ex.upstream->Abort();
    ex.upstream = nullptr;
  }
  ex.local_response = true;
  ex.pending_body.clear();
  WriteToClient(response);
  ex.response_started = true;
  ex.response_complete = true;
  // The rest of the request body is read and discarded with no upstream (and its timeouts)
  // involved: the client timeout bounds that wait.
  if (!close && !ex.request_complete && state_ == State::kExchange) worker_.ArmDeadline(&deadline_, kIdleDeadlines);
  if (close) {
    const bool client_done = ClientDone();
    EndExchange();
    BeginDrain(client_done);
    return;
  }
  MaybeFinishExchange();
}

void ClientConnection::MaybeFinishExchange() {
  if (exchange_ == nullptr || !exchange_->request_complete || !exchange_->response_complete) return;
  const bool keep_alive = exchange_->client_keep_alive && !exchange_->close_after;
  const bool client_done = !keep_alive && ClientDone();
  EndExchange();  // unpins the config
  if (!keep_alive) {
    BeginDrain(client_done);
    return;
  }
  EnterIdle();
  ProcessInput();  // pipelined requests (no-op when called from inside ProcessInput)
}

// ---- writing and closing ---------------------------------------------------------------------

void ClientConnection::QueueToClient(absl::string_view data, bool copy) {
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

bool ClientConnection::WaitsOnClient() const {
  if (state_ != State::kExchange) return false;
  return pending_write_bytes_ > 0 || (exchange_ != nullptr && exchange_->local_response);
}

bool ClientConnection::ClaimOutput() {
  ClientOutput& out = worker_.client_output();
  if (out.count > 0 && (out.owner != this || out.count == ClientOutput::kMaxPieces)) out.owner->FlushToClient();
  if (state_ == State::kClosing) return false;  // our own flush failed and closed us
  out.owner = this;
  return true;
}

void ClientConnection::FlushToClient() {
  ClientOutput& out = worker_.client_output();
  if (out.owner != this || out.count == 0) return;
  const size_t count = out.count;
  out.count = 0;
  if (state_ == State::kClosing || state_ == State::kLingering) {
    out.owned.clear();
    return;
  }
  uv_buf_t bufs[ClientOutput::kMaxPieces];
  size_t total = 0;
  for (size_t i = 0; i < count; ++i) {
    const ClientOutput::Piece& piece = out.pieces[i];
    const char* base = piece.borrowed != nullptr ? piece.borrowed : out.owned.data() + piece.offset;
    bufs[i] = uv_buf_init(const_cast<char*>(base), static_cast<unsigned int>(piece.size));
    total += piece.size;
  }
  // Nagle can only hold back a write while earlier bytes are unacknowledged: the first write of
  // a connection goes out at once without TCP_NODELAY (one setsockopt saved per short-lived
  // connection); from the second write on it is set, once (as nginx does for keep-alive).
  if (wrote_ && !nodelay_) {
    uv_tcp_nodelay(&tcp_, 1);
    nodelay_ = true;
  }
  wrote_ = true;
  // uv_try_write refuses (UV_EAGAIN) while earlier uv_writes are queued, which keeps the order;
  // its errors resurface asynchronously from uv_write below.
  const int tried = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), bufs, static_cast<unsigned int>(count));
  size_t skip = tried > 0 ? static_cast<size_t>(tried) : 0;
  if (skip < total) {
    auto* write = new WriteRequest;
    write->data.reserve(total - skip);
    for (size_t i = 0; i < count; ++i) {
      const size_t dropped = std::min(skip, bufs[i].len);
      skip -= dropped;
      write->data.append(bufs[i].base + dropped, bufs[i].len - dropped);
    }
    uv_buf_t buf = uv_buf_init(write->data.data(), static_cast<unsigned int>(write->data.size()));
    // Bytes now wait for the client: during an exchange, start counting the client timeout
    // (restarted by each completed write, see OnWriteDone).
    if (state_ == State::kExchange && pending_write_bytes_ == 0) worker_.ArmDeadline(&deadline_, kIdleDeadlines);
    pending_write_bytes_ += write->data.size();
    if (uv_write(&write->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, Uv::Written) != 0) {
      pending_write_bytes_ -= write->data.size();
      delete write;
      out.owned.clear();
      Close();
      return;
    }
  }
  out.owned.clear();  // keeps its capacity
}

void ClientConnection::WriteToClient(absl::string_view data) {
  QueueToClient(data, /*copy=*/false);
  FlushToClient();
}

void ClientConnection::OnWriteDone(size_t bytes, int status) {
  pending_write_bytes_ -= bytes;
  if (state_ == State::kClosing) return;
  if (status < 0) {
    Close();
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
  if (pending_write_bytes_ >= kLowWaterBytes) return;
  if (exchange_ != nullptr && exchange_->upstream != nullptr) exchange_->upstream->ResumeReading();
  if (state_ == State::kIdle) {
    ProcessInput();
  } else {
    UpdateReading();
  }
}

bool ClientConnection::ClientDone() const {
  if (peer_eof_) return true;  // everything the client sent has been read
  // A client that asked to close sends nothing after its request (RFC 9112 §9.6): with the
  // request read completely and nothing unparsed buffered, no unread byte can turn our close
  // into a RST (nginx's lingering_close heuristic).
  return exchange_ != nullptr && exchange_->request_complete && !exchange_->client_keep_alive &&
         !parse_failed_ && input_.empty() && fresh_.empty();
}

void ClientConnection::BeginDrain(bool client_done) {
  if (state_ == State::kClosing || state_ == State::kDraining || state_ == State::kLingering) return;
  worker_.DisarmDeadline(&deadline_);
  if (client_done && pending_write_bytes_ == 0) {
    // The kernel holds every response byte: close() sends them, then the FIN. No shutdown and
    // no lingering read (2 system calls and 2 epoll_ctl fewer per connection).
    Close();
    return;
  }
  state_ = State::kDraining;
  worker_.ArmDeadline(&deadline_, kIdleDeadlines);  // a client that stops reading is dropped
  // Even a client that asked to close may send bytes (a pipelined request, a stray CRLF) while
  // the queued response drains; reading is stopped here, so OnShutdown lingers (unless the
  // client already sent EOF) to keep such bytes from turning the close into a RST.
  if (!in_process_input_) input_.clear();  // else ProcessInput() drops it after the parser returns
  UpdateReading();
  // uv_shutdown completes after every queued write has been flushed.
  shutdown_req_ = std::make_unique<uv_shutdown_t>();
  shutdown_req_->data = this;
  if (uv_shutdown(shutdown_req_.get(), reinterpret_cast<uv_stream_t*>(&tcp_), Uv::Shutdown) != 0) Close();
}

void ClientConnection::OnShutdown(int status) {
  if (state_ == State::kClosing) return;
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

}  // namespace portico::proxy
