#include "data_plane/proxy/exchange.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "common/base/host_port.h"
#include "common/base/log.h"
#include "data_plane/balancer/balancer.h"
#include "data_plane/pipeline/local_responses.h"
#include "data_plane/proxy/grpc_timeout.h"
#include "data_plane/proxy/http2_upstream_pool.h"
#include "data_plane/proxy/websocket.h"
#include "data_plane/proxy/worker.h"

namespace portico::dp {
namespace {

// An exchange whose buffers grew beyond this is freed instead of pooled.
constexpr size_t kMaxPooledExchangeBytes = 16 * 1024;

// RFC 9110 §9.2.2: a request with one of these methods may be sent again.
bool IdempotentMethod(absl::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" || method == "OPTIONS" ||
         method == "TRACE";
}

// Records the start of an upstream attempt to `target` (the first kMaxRecordedTries).
void BeginTry(dp::RequestContext& request, const dp::Target& target) {
  const uint32_t index = request.upstream_try_count++;
  if (index >= dp::RequestContext::kMaxRecordedTries) return;
  dp::RequestContext::UpstreamTry& attempt = request.upstream_tries[index];
  attempt = dp::RequestContext::UpstreamTry();
  attempt.started_ns = uv_hrtime();
  attempt.port = target.port;
  const size_t n = std::min(target.ip.size(), sizeof(attempt.ip) - 1);
  std::copy_n(target.ip.data(), n, attempt.ip);
  attempt.ip[n] = '\0';
}

// Records the end of the current attempt: its response status, or 0 when it failed.
void EndTry(dp::RequestContext& request, int status) {
  if (request.upstream_try_count == 0 || request.upstream_try_count > dp::RequestContext::kMaxRecordedTries) return;
  dp::RequestContext::UpstreamTry& attempt = request.upstream_tries[request.upstream_try_count - 1];
  if (attempt.ended_ns != 0) return;
  attempt.ended_ns = uv_hrtime();
  attempt.status = status;
}

}  // namespace

void Exchange::Begin(Worker& worker, Downstream& downstream, std::shared_ptr<const RuntimeConfig> config,
                     const MessageHead& head, const RequestHeadCheck& check, absl::string_view client_ip,
                     uint64_t connection_serial, uint32_t connection_requests, bool over_tls,
                     absl::string_view sni) {
  worker_ = &worker;
  downstream_ = &downstream;
  config_ = std::move(config);
  measured_ = config_ != nullptr && !config_->pipeline().log_steps().empty();
  if (measured_) received_ns = uv_hrtime();
  this->head = &head;
  target = check.target;
  host = check.host;
  has_host = check.has_host;
  local_port = over_tls ? worker.tls_port() : worker.port();
  tls = over_tls;
  this->sni = sni;
  this->client_ip = client_ip;
  local_ip = over_tls ? absl::string_view(worker.options().tls.host) : absl::string_view(worker.options().host);
  this->connection_serial = connection_serial;
  this->connection_requests = connection_requests;
  client_http11 = head.version_major > 1 || (head.version_major == 1 && head.version_minor >= 1);
  loop = worker.loop();
  worker_cursor = worker.NextCursor();
  worker_index = worker.index();
  resolver = worker.resolver();
  debug_headers_allowed = worker.options().allow_debug_header;
  request_is_head_ = head.method == "HEAD";
  request_chunked_ = head.chunked;
  websocket_upgrade = IsWebSocketUpgradeRequest(head);
  if (config_ == nullptr) {  // nothing published yet
    dp::LocalResponse response;
    response.status = 404;
    response.message = dp::kMsgNoRoute;
    Respond(response);
    steps_done_ = true;
    MaybeFinish();
    return;
  }
  RunSteps();
}

void Exchange::RunSteps() {
  const std::vector<const dp::RequestStep*>& steps = config_->pipeline().request_steps();
  while (next_step_ < steps.size()) {
    const dp::RequestStep* step = steps[next_step_];
    in_step_ = true;
    dp::StepStatus status = step->OnRequest(*this);
    in_step_ = false;
    if (cancelled_) return;
    if (status == dp::StepStatus::kSuspend && resumed_in_step_) {
      resumed_in_step_ = false;  // the step resumed before it returned: take its result now
      status = resumed_status_;
    }
    if (status == dp::StepStatus::kSuspend) {
      suspended_ = true;
      return;  // Resume() (or the request body, RunStepsAfterBody) goes on from here
    }
    ++next_step_;
    if (status == dp::StepStatus::kStop) {
      steps_done_ = true;
      MaybeFinish();
      return;
    }
  }
  steps_done_ = true;
  if (!request_body.empty()) {  // part or all of the body was read for a step
    if (request_body_limit != kNoBodyLimit) {
      request_body_bytes_ = request_body.size();
      if (request_body_bytes_ > request_body_limit) {
        RefuseOversizedBody();
        return;
      }
    }
    if (request_body_too_large) SendToUpstream(request_body, request_chunked_);  // the rest follows
  }
  connect_retries_left_ = service != nullptr ? service->retries : 0;
  downstream_->ContinueRequest();  // e.g. 100 Continue
  if (cancelled_) return;
  StartUpstream(/*allow_pooled=*/true);
}

void Exchange::Resume(dp::StepStatus status) {
  if (in_step_) {
    resumed_in_step_ = true;
    resumed_status_ = status;
    return;
  }
  if (!suspended_ || cancelled_) return;
  if (status == dp::StepStatus::kSuspend) {  // the step now waits for the request body
    downstream_->RequestBodyWanted();
    return;
  }
  suspended_ = false;
  suspended_data = nullptr;
  ++next_step_;
  if (request_complete_) {
    // The body was read for an earlier step: the exchange may end in here; nothing may follow.
    if (status == dp::StepStatus::kStop) {
      steps_done_ = true;
      MaybeFinish();
    } else {
      RunSteps();
    }
    return;
  }
  if (status == dp::StepStatus::kStop) {
    steps_done_ = true;
  } else {
    RunSteps();
  }
  // The request is not complete, so the exchange cannot have ended above: parse what the client
  // sent meanwhile (body, or the rest to discard after a local response).
  if (!cancelled_) downstream_->RequestBodyWanted();
}

bool Exchange::ReadRequestBody() {
  if (request_body_read || request_body_too_large) return true;
  if (reading_request_body_) return false;
  if (!request_chunked_ && head->content_length == 0) {  // no body
    request_body_read = true;
    return true;
  }
  if (request_complete_ || (!request_chunked_ && head->content_length > kMaxBufferedRequestBody)) {
    request_body_too_large = true;  // it streams to the upstream unread
    return true;
  }
  reading_request_body_ = true;
  if (!request_chunked_) request_body.reserve(head->content_length);
  downstream_->WaitForRequestBody();  // may cancel the exchange (a failed write closes)
  return false;
}

void Exchange::RunStepsAfterBody() {
  if (!suspended_ || cancelled_) return;
  suspended_ = false;
  suspended_data = nullptr;
  RunSteps();  // the waiting step runs again, from its start
}

absl::string_view Exchange::WholeBodyForUpstream() const {
  if (!request_body_read) return {};
  return upstream_body_set ? absl::string_view(upstream_body) : absl::string_view(request_body);
}

void Exchange::Respond(const dp::LocalResponse& response) {
  if (upstream_ != nullptr) {
    upstream_->Abort();
    upstream_ = nullptr;
  }
  if (upstream_stream_ != nullptr) {
    upstream_stream_->Abort();
    upstream_stream_ = nullptr;
  }
  EndAttempt();
  local_response_ = true;
  response_is_local = true;
  pending_body_.clear();
  holding_response_ = false;
  buffer_response_body = false;
  response_status_ = response.status;
  RunResponseHeadSteps(response.status);
  downstream_->SendLocal(response, response_headers.items());
  response_started_ = true;
  response_complete_ = true;
  if (measured_) finished_ns = uv_hrtime();  // handed over whole (logged now or when the connection closes)
}

void Exchange::AcceptUpstreamHead(const MessageHead& response) {
  response_status_ = response.status;
  upstream_status = response.status;
  if (measured_) {
    upstream_head_ns = uv_hrtime();
    EndTry(*this, response.status);
  }
  // Later failures of the body are not counted against the attempt.
  if (balancer != nullptr && !head_reported_) {
    balancer->AttemptAnswered(worker_index, health_target_, response.status, attempt_started_ns);
  }
  head_reported_ = true;
  response_head = &response;
  RunResponseHeadSteps(response.status);
  response_head = nullptr;
}

void Exchange::RunResponseHeadSteps(int status) {
  if (config_ == nullptr) return;
  for (const dp::ResponseHeadStep* step : config_->pipeline().response_head_steps()) {
    step->OnResponseHead(*this, status);
  }
}

void Exchange::Cancel(int local_status) {
  if (cancelled_) return;
  cancelled_ = true;
  // The exchange ends here (the client went away, the connection failed or was cut, or the
  // connection answers for it): logged once, with the status the client got, or 499 (nginx's
  // "client closed request") when it got none.
  if (local_status != 0 && !response_started_) {
    response_is_local = true;
    response_status_ = local_status;
    RunLogSteps(local_status);
  } else {
    RunLogSteps(response_started_ ? response_status_ : kClientClosedRequest);
  }
  if (suspended_ && config_ != nullptr) {
    suspended_ = false;
    config_->pipeline().request_steps()[next_step_]->OnCancel(*this);
  }
  if (upstream_ != nullptr) {
    upstream_->Abort();
    upstream_ = nullptr;
  }
  if (upstream_stream_ != nullptr) {
    upstream_stream_->Abort();  // RST_STREAM CANCEL: the upstream sees the client go
    upstream_stream_ = nullptr;
  }
  EndAttempt();
}

bool Exchange::RerunDestinationSteps() {
  ++attempt;
  for (const dp::RequestStep* step : config_->pipeline().request_steps()) {
    if (!step->rerun_on_retry()) continue;
    in_step_ = true;
    const dp::StepStatus status = step->OnRequest(*this);
    in_step_ = false;
    // A step that suspends or answers on a retry ends the retries (it has answered if it stopped).
    if (cancelled_ || status != dp::StepStatus::kContinue) return false;
  }
  return true;
}

void Exchange::FailToConnect(const absl::Status& status) {
  // A request the connection cannot be made for (InvalidArgument: a client-chosen SNI that is
  // too long) is logged at the TLS log rate, and neither it nor a local limit (out of
  // descriptors or ports) is the target's failure: no passive report.
  if (measured_) EndTry(*this, 0);
  const bool request_fault = absl::IsInvalidArgument(status);
  if (!request_fault || worker_->AllowUpstreamTlsLog()) {
    PORTICO_LOG(kWarn, "proxy", "upstream ", upstream_target->pool_key, ": ", status.message());
  }
  if (balancer != nullptr && !absl::IsResourceExhausted(status) && !request_fault) {
    balancer->AttemptFailed(worker_index, balancer_target >= 0 ? balancer_target : health_target_,
                            dp::HealthEvent::kTcpFailure, attempt_started_ns);
  }
  FailUpstream(502, dp::kMsgBadGateway);
}

void Exchange::StartHttp2Upstream() {
  const dp::Target& target_address = *upstream_target;
  const dp::UpstreamTlsContext* tls = service->tls;
  const absl::string_view server_name = tls != nullptr ? SplitHostHeader(upstream_host_header).name : absl::string_view();
  const std::string& pool_key = worker_->UpstreamPoolKey(target_address, tls, server_name);
  UpstreamTimeouts timeouts;
  timeouts.connect_ms = service->connect_timeout_ms;
  timeouts.write_ms = service->write_timeout_ms;
  timeouts.read_ms = service->read_timeout_ms;
  // gRPC: the call's deadline (grpc-timeout, from the first attempt) bounds the stream; the read
  // timeout still applies.
  if (grpc_deadline_ms_ == 0) {
    if (const std::string* grpc_timeout = head->Find("grpc-timeout"); grpc_timeout != nullptr) {
      if (std::optional<int64_t> ms = ParseGrpcTimeoutMs(*grpc_timeout); ms.has_value()) {
        grpc_deadline_ms_ = uv_now(worker_->loop()) + static_cast<uint64_t>(std::max<int64_t>(*ms, 1));
      }
    }
  }
  const uint64_t deadline_ms = grpc_deadline_ms_;
  const absl::string_view whole_body = WholeBodyForUpstream();
  const bool end_stream = request_complete_ && whole_body.empty() && pending_body_.empty();
  absl::StatusOr<Http2UpstreamStream*> stream = worker_->http2_upstreams().OpenStream(
      target_address, pool_key, tls, server_name, this, upstream_http2_headers.items(), timeouts, deadline_ms,
      end_stream);
  if (!stream.ok()) {
    FailToConnect(stream.status());
    return;
  }
  upstream_stream_ = *stream;
  upstream_stream_->set_split_trailers_only(head->version_major >= 2);
  head_reported_ = false;
  if (balancer_target >= 0) health_target_ = balancer_target;
  if (!end_stream && upstream_stream_->connected()) WriteHttp2RequestStart();
}

void Exchange::WriteHttp2RequestStart() {
  // A body read whole stays for a retry; body bytes held meanwhile go now (they cannot be resent).
  upstream_stream_->SendBody(WholeBodyForUpstream());
  if (!pending_body_.empty()) {
    body_streamed_ = true;
    upstream_stream_->SendBody(pending_body_);
    pending_body_.clear();
  }
  if (request_complete_ && !local_response_ && !cancelled_) upstream_stream_->EndRequest();
}

void Exchange::StartUpstream(bool allow_pooled) {
  if (measured_) {
    if (upstream_started_ns == 0) upstream_started_ns = uv_hrtime();
    BeginTry(*this, *upstream_target);
  }
  if (UpstreamIsHttp2()) {
    StartHttp2Upstream();
    return;
  }
  const dp::Target& target_address = *upstream_target;
  // https: Kong's upstream SNI is the Host sent upstream, without its port (none for an IP).
  const dp::UpstreamTlsContext* tls = service->tls;
  const absl::string_view server_name = tls != nullptr ? SplitHostHeader(upstream_host_header).name : absl::string_view();
  const std::string& pool_key = worker_->UpstreamPoolKey(target_address, tls, server_name);
  UpstreamConnection* connection = allow_pooled ? worker_->AcquireIdle(pool_key) : nullptr;
  if (connection == nullptr) {
    absl::StatusOr<UpstreamConnection*> fresh = worker_->ConnectUpstream(target_address, pool_key, tls, server_name);
    if (!fresh.ok()) {
      FailToConnect(fresh.status());
      return;
    }
    connection = *fresh;
  }
  upstream_ = connection;
  head_reported_ = false;
  // The stale-connection retry runs after EndAttempt (balancer_target reset): same target.
  if (balancer_target >= 0) health_target_ = balancer_target;
  UpstreamTimeouts timeouts;
  timeouts.connect_ms = service->connect_timeout_ms;
  timeouts.write_ms = service->write_timeout_ms;
  timeouts.read_ms = service->read_timeout_ms;
  connection->Attach(this, timeouts);
  if (connection->connected()) WriteRequestStart();  // (inside a step run: no RequestBodyWanted)
}

void Exchange::WriteRequestStart() {
  // upstream_head stays for the stale-connection retry, and so does a body read whole.
  if (!pending_body_.empty()) body_streamed_ = true;
  upstream_->Write({upstream_head, WholeBodyForUpstream(), pending_body_});
  pending_body_.clear();
}

void Exchange::OnUpstreamConnected() {
  if (upstream_stream_ != nullptr) {
    WriteHttp2RequestStart();
    if (!request_complete_ && !cancelled_ && upstream_stream_ != nullptr &&
        upstream_stream_->pending_write_bytes() < kHighWaterBytes) {
      downstream_->RequestBodyWanted();
    }
    return;
  }
  if (upstream_ == nullptr) return;
  WriteRequestStart();
  // A write the kernel takes at once reports no drain: if the client side stopped for the body
  // held meanwhile (UpstreamBacklog), let it go on.
  if (!request_complete_ && !cancelled_ && upstream_ != nullptr && upstream_->pending_write_bytes() < kHighWaterBytes) {
    downstream_->RequestBodyWanted();
  }
}

void Exchange::OnRequestBody(absl::string_view data) {
  request_body_received += data.size();
  if (local_response_ || cancelled_) return;
  // The upstream answered completely before the request ended: the rest is discarded, not held.
  if (response_complete_ && upstream_ == nullptr && upstream_stream_ == nullptr) return;
  if (reading_request_body_) {
    request_body.append(data.data(), data.size());
    const uint64_t most = std::min<uint64_t>(kMaxBufferedRequestBody, request_body_limit);
    if (request_body.size() > most) {  // more than a step may hold: it streams from here
      reading_request_body_ = false;
      request_body_too_large = true;
      RunStepsAfterBody();
    }
    return;
  }
  if (request_body_limit != kNoBodyLimit) {
    request_body_bytes_ += data.size();
    if (request_body_bytes_ > request_body_limit) {
      RefuseOversizedBody();
      return;
    }
  }
  SendToUpstream(data, request_chunked_);
}

void Exchange::RefuseOversizedBody() {
  if (response_started_) {  // the upstream answered already: closing is the only way to stop
    if (upstream_ != nullptr) {
      upstream_->Abort();
      upstream_ = nullptr;
    }
    if (upstream_stream_ != nullptr) {
      upstream_stream_->Abort();
      upstream_stream_ = nullptr;
    }
    downstream_->Abort();
    return;
  }
  FailUpstream(413, dp::kMsgRequestTooLarge);
}

void Exchange::OnRequestComplete() {
  request_complete_ = true;
  if (reading_request_body_) {
    reading_request_body_ = false;
    request_body_read = true;
    RunStepsAfterBody();  // may end the exchange: nothing may follow
    return;
  }
  if (upstream_stream_ != nullptr) {
    // (Before the connection is up, WriteHttp2RequestStart ends the request.)
    if (!local_response_ && !cancelled_ && upstream_stream_->connected()) upstream_stream_->EndRequest();
  } else if (!local_response_ && !cancelled_ && request_chunked_ && !request_body_read && !UpstreamIsHttp2()) {
    SendToUpstream(kLastChunk, /*as_chunk=*/false);
  }
  MaybeFinish();
}

void Exchange::SendToUpstream(absl::string_view data, bool as_chunk) {
  if (data.empty()) return;
  if (upstream_stream_ != nullptr && upstream_stream_->connected()) {  // HTTP/2: DATA frames, no chunks
    body_streamed_ = true;
    upstream_stream_->SendBody(data);
    return;
  }
  if (as_chunk && UpstreamIsHttp2()) as_chunk = false;  // held until the stream's connection is up
  char size_line_buffer[24];
  const absl::string_view size_line = as_chunk ? ChunkSizeLine(data.size(), size_line_buffer) : absl::string_view();
  const absl::string_view trailer = as_chunk ? absl::string_view("\r\n") : absl::string_view();
  if (upstream_ != nullptr && upstream_->connected()) {
    body_streamed_ = true;
    upstream_->Write({size_line, data, trailer});  // straight from the read buffer
  } else {
    pending_body_.append(size_line.data(), size_line.size())
        .append(data.data(), data.size())
        .append(trailer.data(), trailer.size());
  }
}

size_t Exchange::UpstreamBacklog() const {
  size_t backlog = pending_body_.size();
  if (upstream_ != nullptr) backlog += upstream_->pending_write_bytes();
  if (upstream_stream_ != nullptr) backlog += upstream_stream_->pending_write_bytes();
  return backlog;
}

void Exchange::OnUpstreamWriteDrained() {
  if (!cancelled_) downstream_->RequestBodyWanted();
}

UpstreamHeadAction Exchange::OnUpstreamHead(const MessageHead& response) {
  if (cancelled_) return UpstreamHeadAction::kError;
  if (!IsForwardableResponseHead(response)) return UpstreamHeadAction::kError;  // 502, connection not reused
  AcceptUpstreamHead(response);
  const bool has_body = !request_is_head_ && response.status >= 200 && response.status != 204 && response.status != 304;
  if (buffer_response_body && has_body && !config_->pipeline().buffered_body_steps().empty()) {
    held_head_ = response;  // the codec reuses its head storage; the head goes out at the end
    holding_response_ = true;
    response_body.clear();
    return UpstreamHeadAction::kContinue;
  }
  buffer_response_body = false;
  body_to_client_ = downstream_->SendResponseHead(response, response_headers.items(), response_headers_removed);
  if (cancelled_) return UpstreamHeadAction::kError;
  response_started_ = true;
  return body_to_client_ ? UpstreamHeadAction::kContinue : UpstreamHeadAction::kSkipBody;
}

bool Exchange::OnUpstreamSwitchingProtocols(const MessageHead& response) {
  // A 101 the request did not ask for, or not for WebSocket: refused (502).
  if (cancelled_ || !websocket_upgrade || !request_complete_ || !IsWebSocketAcceptResponse(response)) return false;
  AcceptUpstreamHead(response);
  UpstreamConnection* connection = upstream_;
  upstream_ = nullptr;  // the tunnel's from here on
  if (!downstream_->StartTunnel(response, response_headers.items(), response_headers_removed, *connection,
                                service->read_timeout_ms)) {
    if (!cancelled_) upstream_ = connection;  // it fails now (OnUpstreamFailure: 502)
    return false;
  }
  EndAttempt();
  response_started_ = true;
  response_complete_ = true;
  if (!cancelled_) MaybeFinish();  // the log steps; the exchange ends (Downstream::ExchangeDone)
  return true;
}

void Exchange::OnUpstreamBody(absl::string_view data) {
  if (holding_response_ && !cancelled_) {
    if (response_body.size() + data.size() <= kMaxBufferedResponseBody) {
      response_body.append(data.data(), data.size());
      return;
    }
    ReleaseHeldResponse();  // too long to hold: it goes out unchanged
  }
  if (!body_to_client_ || data.empty() || cancelled_) return;
  for (const dp::ResponseBodyStep* step : config_->pipeline().response_body_steps()) {
    step->OnResponseBody(*this, data);
  }
  response_bytes += data.size();
  downstream_->SendResponseBody(data);  // borrowed from the read buffer until FlushResponse
}

void Exchange::OnUpstreamReadEnd() {
  if (cancelled_) return;
  downstream_->FlushResponse();
  if (cancelled_) return;
  if (downstream_->ResponseBacklog() < kHighWaterBytes) return;
  if (upstream_ != nullptr) upstream_->PauseReading();
  if (upstream_stream_ != nullptr) upstream_stream_->PauseReading();
}

void Exchange::OnDownstreamDrained() {
  if (upstream_ != nullptr) upstream_->ResumeReading();
  if (upstream_stream_ != nullptr) upstream_stream_->ResumeReading();
}

void Exchange::OnUpstreamTrailers(absl::Span<const std::pair<std::string, std::string>> trailers) {
  // A held response (buffer_response_body) is sent with a length and no trailers.
  if (cancelled_ || !response_started_) return;
  downstream_->SendResponseTrailers(trailers);
}

void Exchange::ReleaseHeldResponse() {
  holding_response_ = false;
  body_to_client_ = downstream_->SendResponseHead(held_head_, response_headers.items(), response_headers_removed);
  if (cancelled_) return;
  response_started_ = true;
  if (body_to_client_ && !response_body.empty()) {
    response_bytes += response_body.size();
    downstream_->SendResponseBody(response_body);  // until flushed
  }
}

void Exchange::SendHeldResponse() {
  holding_response_ = false;
  response_head = &held_head_;
  for (const dp::BufferedResponseBodyStep* step : config_->pipeline().buffered_body_steps()) {
    step->OnBufferedResponseBody(*this, response_status_);
  }
  response_head = nullptr;
  held_head_.chunked = false;  // Transfer-Encoding is hop-by-hop: the framing below replaces it
  held_head_.has_content_length = true;
  held_head_.content_length = response_body.size();
  ReleaseHeldResponse();
}

void Exchange::OnUpstreamComplete() {
  if (upstream_stream_ != nullptr) {
    Http2UpstreamStream* stream = upstream_stream_;
    upstream_stream_ = nullptr;
    EndAttempt();
    stream->Release();  // a request the upstream did not wait for is cancelled
    if (holding_response_ && !cancelled_) SendHeldResponse();
    if (cancelled_) return;
    downstream_->EndResponse();
    if (cancelled_) return;
    response_complete_ = true;
    MaybeFinish();
    return;
  }
  UpstreamConnection* connection = upstream_;
  upstream_ = nullptr;
  EndAttempt();
  if (holding_response_ && !cancelled_) SendHeldResponse();  // a failed write cancels the exchange
  if (cancelled_) {
    connection->Release(/*reusable=*/false);
    return;
  }
  downstream_->EndResponse();
  // Reusable only if the whole request went out: otherwise the upstream may still expect body.
  // (After a cancel the connection was aborted: Release() of a closing connection does nothing.)
  connection->Release(/*reusable=*/request_complete_ && pending_body_.empty() && !cancelled_);
  if (cancelled_) return;
  response_complete_ = true;
  MaybeFinish();
}

void Exchange::OnUpstreamFailure(UpstreamError error, bool response_bytes_received) {
  if (measured_) EndTry(*this, 0);
  upstream_ = nullptr;
  upstream_stream_ = nullptr;
  if (!cancelled_) ReportFailedAttempt(error, response_bytes_received);
  EndAttempt();
  if (cancelled_) return;
  if (error == UpstreamError::kDeadlineExceeded && response_started_ && body_to_client_ && head != nullptr &&
      head->version_major == 2) {
    // gRPC: the call's deadline passed mid-response: it ends with DEADLINE_EXCEEDED (4). (HTTP/1
    // cannot carry the trailers: below, the response is cut off instead.)
    static const std::pair<std::string, std::string> kDeadlineTrailers[] = {
        {"grpc-status", "4"}, {"grpc-message", "Deadline Exceeded"}};
    downstream_->SendResponseTrailers(kDeadlineTrailers);
    if (cancelled_) return;
    downstream_->EndResponse();
    if (cancelled_) return;
    response_complete_ = true;
    MaybeFinish();
    return;
  }
  if (response_started_) {
    downstream_->Abort();  // the response is truncated; closing is the only signal left
    return;
  }
  const bool connect_error = error == UpstreamError::kConnectFailed || error == UpstreamError::kConnectTimeout;
  if (connect_error && connect_retries_left_ > 0) {
    --connect_retries_left_;
    if (!RerunDestinationSteps()) {
      MaybeFinish();  // a destination step answered (or the exchange was cancelled)
      return;
    }
    StartUpstream(/*allow_pooled=*/false);
    return;
  }
  // A pooled connection the upstream had already closed: retry once on a fresh one.
  if (error == UpstreamError::kClosed && !response_bytes_received && !body_streamed_ && !stale_retry_used_) {
    stale_retry_used_ = true;
    StartUpstream(/*allow_pooled=*/false);
    return;
  }
  // A timeout or a reset once the request was sent, before any response byte: another target
  // (Kong: nginx's proxy_next_upstream error timeout), but only for a method that may be repeated
  // (the target may have acted on it) and a body that was not streamed (it can be sent again).
  const bool after_sending = error == UpstreamError::kWriteTimeout || error == UpstreamError::kReadTimeout ||
                             error == UpstreamError::kClosed;
  if (after_sending && !response_bytes_received && !body_streamed_ && connect_retries_left_ > 0 &&
      UntriedTargetExists() && IdempotentMethod(upstream_method.empty() ? absl::string_view(head->method) : upstream_method)) {
    --connect_retries_left_;
    if (!RerunDestinationSteps()) {
      MaybeFinish();
      return;
    }
    StartUpstream(/*allow_pooled=*/false);
    return;
  }
  const bool timeout = error == UpstreamError::kConnectTimeout || error == UpstreamError::kWriteTimeout ||
                       error == UpstreamError::kReadTimeout || error == UpstreamError::kDeadlineExceeded;
  PORTICO_LOG(kDebug, "proxy", "upstream failure ", static_cast<int>(error));
  FailUpstream(timeout ? 504 : 502, timeout ? dp::kMsgTimeout : dp::kMsgBadGateway);
}

void Exchange::ReportFailedAttempt(UpstreamError error, bool response_bytes_received) {
  if (balancer == nullptr || health_target_ < 0 || head_reported_) return;
  if (error == UpstreamError::kDeadlineExceeded) return;  // the client's deadline, not the target's failure
  // A connection closed before any byte while nothing of the body went out is retried once on a
  // fresh connection (a pooled connection the upstream had closed): not the target's failure.
  if (error == UpstreamError::kClosed && !response_bytes_received && !body_streamed_ && !stale_retry_used_) return;
  // Kong: a try that timed out (504) is a timeout, any other failed try a tcp failure.
  const bool timeout = error == UpstreamError::kConnectTimeout || error == UpstreamError::kWriteTimeout ||
                       error == UpstreamError::kReadTimeout;
  balancer->AttemptFailed(worker_index, health_target_,
                          timeout ? dp::HealthEvent::kTimeout : dp::HealthEvent::kTcpFailure, attempt_started_ns);
}

bool Exchange::UntriedTargetExists() const {
  if (service == nullptr) return false;
  if (service->balancer != nullptr) {
    return service->balancer->HasUntriedTarget(
        {tried_targets, std::min<size_t>(tried_count, RequestContext::kMaxTriedTargets)});
  }
  if (!service->dns_name.empty()) {  // a DNS name: the next attempt takes the answer's next address
    return dns_answer != nullptr && dns_answer->records().size() > static_cast<size_t>(attempt) + 1;
  }
  return service->destinations.size() > static_cast<size_t>(attempt) + 1;
}

void Exchange::FailUpstream(int status, absl::string_view message) {
  dp::LocalResponse response;
  response.status = status;
  response.message = message;
  // The upstream may have had part of the body: keep-alive only if the request was read whole.
  response.close = !request_complete_;
  Respond(response);
  MaybeFinish();
}

void Exchange::MaybeFinish() {
  if (cancelled_ || !request_complete_ || !response_complete_) return;
  RunLogSteps(response_status_);
  downstream_->ExchangeDone();  // may Reset() this exchange: nothing may follow
}

void Exchange::RunLogSteps(int status) {
  if (!measured_ || logged_) return;
  logged_ = true;
  if (finished_ns == 0) finished_ns = uv_hrtime();  // a local answer set it when it went out
  for (const dp::LogStep* step : config_->pipeline().log_steps()) step->OnLog(*this, status);
}

void Exchange::Reset() {
  ResetContext();
  worker_ = nullptr;
  downstream_ = nullptr;
  config_.reset();
  next_step_ = 0;
  suspended_ = false;
  steps_done_ = false;
  upstream_ = nullptr;
  upstream_stream_ = nullptr;
  grpc_deadline_ms_ = 0;
  pending_body_.clear();
  connect_retries_left_ = 0;
  request_is_head_ = false;
  request_chunked_ = false;
  request_complete_ = false;
  body_streamed_ = false;
  request_body_bytes_ = 0;
  measured_ = false;
  logged_ = false;
  local_response_ = false;
  response_started_ = false;
  response_complete_ = false;
  stale_retry_used_ = false;
  head_reported_ = false;
  health_target_ = -1;
  body_to_client_ = false;
  cancelled_ = false;
  response_status_ = 0;
  holding_response_ = false;
  held_head_.Clear();
  in_step_ = false;
  resumed_in_step_ = false;
  resumed_status_ = dp::StepStatus::kContinue;
}

bool Exchange::WorthPooling() const {
  return upstream_head.capacity() + pending_body_.capacity() + request_body.capacity() + upstream_body.capacity() +
             response_body.capacity() <=
         kMaxPooledExchangeBytes;
}

}  // namespace portico::dp
