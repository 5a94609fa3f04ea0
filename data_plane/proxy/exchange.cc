#include "data_plane/proxy/exchange.h"

#include <utility>

#include "common/base/log.h"
#include "data_plane/pipeline/local_responses.h"
#include "data_plane/proxy/worker.h"

namespace portico::dp {
namespace {

// An exchange whose buffers grew beyond this is freed instead of pooled.
constexpr size_t kMaxPooledExchangeBytes = 16 * 1024;

}  // namespace

void Exchange::Begin(Worker& worker, Downstream& downstream, std::shared_ptr<const RuntimeConfig> config,
                     const MessageHead& head, const RequestHeadCheck& check, absl::string_view client_ip) {
  worker_ = &worker;
  downstream_ = &downstream;
  config_ = std::move(config);
  this->head = &head;
  target = check.target;
  host = check.host;
  has_host = check.has_host;
  local_port = worker.port();
  this->client_ip = client_ip;
  client_http11 = head.version_major > 1 || (head.version_major == 1 && head.version_minor >= 1);
  loop = worker.loop();
  worker_cursor = worker.NextCursor();
  debug_headers_allowed = worker.options().allow_debug_header;
  request_is_head_ = head.method == "HEAD";
  request_chunked_ = head.chunked;
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
    if (status == dp::StepStatus::kSuspend) {
      if (!resumed_in_step_) {
        suspended_ = true;
        return;  // Resume() goes on from here
      }
      resumed_in_step_ = false;  // the step resumed before it returned: take its result now
      status = resumed_status_;
    }
    ++next_step_;
    if (status == dp::StepStatus::kStop) {
      steps_done_ = true;
      MaybeFinish();
      return;
    }
  }
  steps_done_ = true;
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
  suspended_ = false;
  suspended_data = nullptr;
  ++next_step_;
  if (status == dp::StepStatus::kStop) {
    steps_done_ = true;
  } else {
    RunSteps();
  }
  // The request was not complete while suspended (its head was all that was parsed), so the
  // exchange cannot have ended above: parse what the client sent meanwhile (body, or the rest to
  // discard after a local response).
  if (!cancelled_) downstream_->RequestBodyWanted();
}

bool Exchange::ReadRequestBody() {
  request_body_too_large = true;  // not read yet: the body streams unchanged
  return true;
}

void Exchange::Respond(const dp::LocalResponse& response) {
  if (upstream_ != nullptr) {
    upstream_->Abort();
    upstream_ = nullptr;
  }
  local_response_ = true;
  pending_body_.clear();
  response_status_ = response.status;
  RunResponseHeadSteps(response.status);
  downstream_->SendLocal(response, response_headers.items());
  response_started_ = true;
  response_complete_ = true;
}

void Exchange::RunResponseHeadSteps(int status) {
  if (config_ == nullptr) return;
  for (const dp::ResponseHeadStep* step : config_->pipeline().response_head_steps()) {
    step->OnResponseHead(*this, status);
  }
}

void Exchange::Cancel() {
  if (cancelled_) return;
  cancelled_ = true;
  if (suspended_ && config_ != nullptr) {
    suspended_ = false;
    config_->pipeline().request_steps()[next_step_]->OnCancel(*this);
  }
  if (upstream_ != nullptr) {
    upstream_->Abort();
    upstream_ = nullptr;
  }
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

void Exchange::StartUpstream(bool allow_pooled) {
  const dp::Target& target_address = *upstream_target;
  UpstreamConnection* connection = allow_pooled ? worker_->AcquireIdle(target_address.pool_key) : nullptr;
  if (connection == nullptr) {
    absl::StatusOr<UpstreamConnection*> fresh = worker_->ConnectUpstream(target_address);
    if (!fresh.ok()) {
      PORTICO_LOG(kWarn, "proxy", "upstream ", target_address.pool_key, ": ", fresh.status().message());
      FailUpstream(502, dp::kMsgBadGateway);
      return;
    }
    connection = *fresh;
  }
  upstream_ = connection;
  UpstreamTimeouts timeouts;
  timeouts.connect_ms = service->connect_timeout_ms;
  timeouts.write_ms = service->write_timeout_ms;
  timeouts.read_ms = service->read_timeout_ms;
  connection->Attach(this, timeouts);
  if (connection->connected()) OnUpstreamConnected();
}

void Exchange::OnUpstreamConnected() {
  if (upstream_ == nullptr) return;
  // upstream_head stays for the stale-connection retry.
  if (!pending_body_.empty()) body_streamed_ = true;
  upstream_->Write({upstream_head, pending_body_});
  pending_body_.clear();
}

void Exchange::OnRequestBody(absl::string_view data) {
  if (local_response_ || cancelled_) return;
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
    downstream_->Abort();
    return;
  }
  FailUpstream(413, dp::kMsgRequestTooLarge);
}

void Exchange::OnRequestComplete() {
  request_complete_ = true;
  if (!local_response_ && !cancelled_ && request_chunked_) SendToUpstream(kLastChunk, /*as_chunk=*/false);
  MaybeFinish();
}

void Exchange::SendToUpstream(absl::string_view data, bool as_chunk) {
  if (data.empty()) return;
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
  return backlog;
}

void Exchange::OnUpstreamWriteDrained() {
  if (!cancelled_) downstream_->RequestBodyWanted();
}

UpstreamHeadAction Exchange::OnUpstreamHead(const MessageHead& response) {
  if (cancelled_) return UpstreamHeadAction::kError;
  if (!IsForwardableResponseHead(response)) return UpstreamHeadAction::kError;  // 502, connection not reused
  response_status_ = response.status;
  response_head = &response;
  RunResponseHeadSteps(response.status);
  response_head = nullptr;
  body_to_client_ = downstream_->SendResponseHead(response, response_headers.items(), response_headers_removed);
  if (cancelled_) return UpstreamHeadAction::kError;
  response_started_ = true;
  return body_to_client_ ? UpstreamHeadAction::kContinue : UpstreamHeadAction::kSkipBody;
}

void Exchange::OnUpstreamBody(absl::string_view data) {
  if (!body_to_client_ || data.empty() || cancelled_) return;
  for (const dp::ResponseBodyStep* step : config_->pipeline().response_body_steps()) {
    step->OnResponseBody(*this, data);
  }
  downstream_->SendResponseBody(data);  // borrowed from the read buffer until FlushResponse
}

void Exchange::OnUpstreamReadEnd() {
  if (cancelled_) return;
  downstream_->FlushResponse();
  if (cancelled_ || upstream_ == nullptr) return;
  if (downstream_->ResponseBacklog() >= kHighWaterBytes) upstream_->PauseReading();
}

void Exchange::OnDownstreamDrained() {
  if (upstream_ != nullptr) upstream_->ResumeReading();
}

void Exchange::OnUpstreamComplete() {
  UpstreamConnection* connection = upstream_;
  upstream_ = nullptr;
  downstream_->EndResponse();
  // Reusable only if the whole request went out: otherwise the upstream may still expect body.
  // (After a cancel the connection was aborted: Release() of a closing connection does nothing.)
  connection->Release(/*reusable=*/request_complete_ && pending_body_.empty() && !cancelled_);
  if (cancelled_) return;
  response_complete_ = true;
  MaybeFinish();
}

void Exchange::OnUpstreamFailure(UpstreamError error, bool response_bytes_received) {
  upstream_ = nullptr;
  if (cancelled_) return;
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
  const bool timeout = error == UpstreamError::kConnectTimeout || error == UpstreamError::kWriteTimeout ||
                       error == UpstreamError::kReadTimeout;
  PORTICO_LOG(kDebug, "proxy", "upstream failure ", static_cast<int>(error));
  FailUpstream(timeout ? 504 : 502, timeout ? dp::kMsgTimeout : dp::kMsgBadGateway);
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
  if (config_ != nullptr) {
    for (const dp::LogStep* step : config_->pipeline().log_steps()) step->OnLog(*this, response_status_);
  }
  downstream_->ExchangeDone();  // may Reset() this exchange: nothing may follow
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
  pending_body_.clear();
  connect_retries_left_ = 0;
  request_is_head_ = false;
  request_chunked_ = false;
  request_complete_ = false;
  body_streamed_ = false;
  request_body_bytes_ = 0;
  local_response_ = false;
  response_started_ = false;
  response_complete_ = false;
  stale_retry_used_ = false;
  body_to_client_ = false;
  cancelled_ = false;
  response_status_ = 0;
  in_step_ = false;
  resumed_in_step_ = false;
  resumed_status_ = dp::StepStatus::kContinue;
}

bool Exchange::WorthPooling() const {
  return upstream_head.capacity() + pending_body_.capacity() <= kMaxPooledExchangeBytes;
}

}  // namespace portico::dp
