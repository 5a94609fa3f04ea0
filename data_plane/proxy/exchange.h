#pragma once
// One request through the proxy, independent of the client's HTTP version: it pins the config
// the request started with, runs the snapshot's pipeline (data_plane/pipeline/pipeline.h), drives
// the upstream connection and relays the response to its Downstream. An HTTP/1 client connection
// has at most one exchange at a time (pipelined requests wait); an HTTP/2 connection would run
// many, each with its own Downstream stream.
//
//   Begin(head) ──steps──▶ request steps done ──▶ upstream ──response──▶ Downstream ──▶ done
//        │  kSuspend: waits for Resume (config pinned; Cancel() if the client goes away)
//        └─ kStop: a local response (Downstream::SendLocal); the request body is discarded
//
// Taken from the worker's pool when a request head arrives and given back once the connection
// is idle again (Reset keeps buffer capacity). Thread-compatible: the worker's loop only.
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "absl/strings/string_view.h"
#include "common/http/http1_codec.h"
#include "data_plane/pipeline/pipeline.h"
#include "data_plane/proxy/http1_messages.h"
#include "data_plane/proxy/runtime_config.h"
#include "data_plane/proxy/upstream_connection.h"

namespace portico::dp {

class Http2UpstreamStream;
class Worker;

// The client side of one exchange, implemented by the client connection for its HTTP version.
// None of these calls destroys the exchange; a call may close the connection (then the exchange
// is cancelled or retired by the connection, never from inside the call).
class Downstream {
 public:
  virtual ~Downstream() = default;
  // A response the proxy made itself, followed by `extra_headers` (the request's response
  // headers). The connection closes after it when `response.close` or when it cannot keep the
  // connection (the client asked to close, or the request body cannot be discarded).
  virtual void SendLocal(const dp::LocalResponse& response,
                         absl::Span<const std::pair<std::string, std::string>> extra_headers) = 0;
  // The upstream's final response head without its `removed_headers` (lowercase names), with
  // `extra_headers` added. Returns whether its body goes to the client (false for a response to
  // HEAD and for 1xx/204/304: the upstream codec skips it).
  virtual bool SendResponseHead(const MessageHead& head,
                                absl::Span<const std::pair<std::string, std::string>> extra_headers,
                                absl::Span<const absl::string_view> removed_headers) = 0;
  // A piece of the upstream response body; borrowed until FlushResponse.
  virtual void SendResponseBody(absl::string_view data) = 0;
  // One upstream read ended: hand the gathered response bytes to the client.
  virtual void FlushResponse() = 0;
  // The upstream response's trailer fields (HTTP/2 and gRPC upstreams; names lowercase), sent
  // after the last body piece. Called at most once, right before EndResponse. A version that
  // cannot carry trailers drops them (HTTP/1: the response is not chunked-with-trailers).
  virtual void SendResponseTrailers(absl::Span<const std::pair<std::string, std::string>> trailers) {}
  // The upstream response is complete.
  virtual void EndResponse() = 0;
  // The upstream accepted a WebSocket handshake (101): send the 101 head (without
  // `removed_headers`, with `extra_headers`) and tunnel the connection's bytes to `upstream`
  // from now on (tunnel.h; `idle_timeout_ms` without traffic closes it). Returns false when this
  // downstream cannot (a version without HTTP/1.1 upgrades, or the connection closed): the
  // exchange then answers 502. On true the tunnel owns both connections; the exchange ends.
  virtual bool StartTunnel(const MessageHead& head, absl::Span<const std::pair<std::string, std::string>> extra_headers,
                           absl::Span<const absl::string_view> removed_headers, UpstreamConnection& upstream,
                           int64_t idle_timeout_ms) {
    return false;
  }
  // Response bytes waiting for the client (backpressure on the upstream).
  virtual size_t ResponseBacklog() const = 0;
  // The request steps are done: answer `Expect: 100-continue` if the protocol wants it (once per
  // request).
  virtual void ContinueRequest() = 0;
  // A step waits for the whole request body (RequestContext::ReadRequestBody): answer
  // `Expect: 100-continue`, and bound the wait for the client's bytes with the client timeout.
  virtual void WaitForRequestBody() = 0;
  // The request side can move again (a suspended step resumed, the upstream drained).
  virtual void RequestBodyWanted() = 0;
  // The exchange failed after response bytes went out: only closing can tell the client.
  virtual void Abort() = 0;
  // Both directions are complete.
  virtual void ExchangeDone() = 0;
};

class Exchange final : public dp::RequestContext, public UpstreamObserver {
 public:
  Exchange() = default;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // Starts the request: pins `config`, runs the request steps. REQUIRES: `head` (codec storage)
  // stays valid until the exchange ends; the head passed the codec's checks (http1_checks.h).
  // Ends when both directions are complete (Downstream::ExchangeDone), or with Cancel().
  // `connection_serial`/`connection_requests`: the connection's number on its worker and this
  // request's number on the connection (both from 1). `over_tls`: it came on the TLS listener,
  // with server name `sni` (normalised; a view that outlives the exchange).
  void Begin(Worker& worker, Downstream& downstream, std::shared_ptr<const RuntimeConfig> config,
             const MessageHead& head, const RequestHeadCheck& check, absl::string_view client_ip,
             uint64_t connection_serial, uint32_t connection_requests, bool over_tls = false,
             absl::string_view sni = {});

  // ---- from the client connection
  // A piece of the (de-chunked) request body.
  void OnRequestBody(absl::string_view data);
  // The request (head and body) has been read completely.
  void OnRequestComplete();
  // The client connection went away (or failed): cancel a suspended step, abort the upstream.
  // `local_status`: the connection answers the client itself instead (400 to a malformed body),
  // and the request is logged with that status, as a local response; 0: logged with the status
  // already sent, or 499 when none was.
  void Cancel(int local_status = 0);
  // Response bytes drained below the low-water mark: let the upstream go on.
  void OnDownstreamDrained();

  bool suspended() const { return suspended_; }
  // The connection may parse request body bytes for this exchange now (flow control aside).
  bool WantsRequestBody() const { return !suspended_ || reading_request_body_; }
  bool local_response() const { return local_response_; }
  bool request_complete() const { return request_complete_; }
  bool response_started() const { return response_started_; }
  bool response_complete() const { return response_complete_; }
  // The upstream may still want request bytes the client has not sent: the connection must
  // close after the response (it answered early, or a local response left the body unread).
  bool request_incomplete_at_response_end() const { return !request_complete_; }
  // Request bytes waiting for the upstream (pending connect plus queued writes).
  size_t UpstreamBacklog() const;

  // Back to the state of a new exchange, keeping buffer capacity; unpins the config.
  void Reset();
  // False when its buffers grew too large to keep in the worker's pool.
  bool WorthPooling() const;

  // ---- dp::RequestContext
  void Respond(const dp::LocalResponse& response) override;
  void Resume(dp::StepStatus status) override;
  bool ReadRequestBody() override;

  // ---- UpstreamObserver
  void OnUpstreamConnected() override;
  UpstreamHeadAction OnUpstreamHead(const MessageHead& head) override;
  void OnUpstreamBody(absl::string_view data) override;
  void OnUpstreamTrailers(absl::Span<const std::pair<std::string, std::string>> trailers) override;
  void OnUpstreamComplete() override;
  void OnUpstreamFailure(UpstreamError error, bool response_bytes_received) override;
  void OnUpstreamWriteDrained() override;
  void OnUpstreamReadEnd() override;
  bool OnUpstreamSwitchingProtocols(const MessageHead& head) override;

 private:
  // Runs request steps from `next_step_` on; when they are all done, starts the upstream.
  void RunSteps();
  // A retry needs a new destination: runs the steps that say so (rerun_on_retry) again.
  bool RerunDestinationSteps();
  void StartUpstream(bool allow_pooled);
  // The service speaks HTTP/2 (grpc, grpcs): a stream from the worker's HTTP/2 pool instead of
  // an UpstreamConnection; the body goes unframed (HTTP/2 DATA).
  bool UpstreamIsHttp2() const { return service != nullptr && service->http2; }
  void StartHttp2Upstream();
  // The HTTP/2 stream's connection is up: the body held meanwhile goes (and the end, if read).
  void WriteHttp2RequestStart();
  // A connection could not even be started: logged, passive report, 502.
  void FailToConnect(const absl::Status& status);
  void SendToUpstream(absl::string_view data, bool as_chunk);
  // The upstream head, a body read whole, and the body bytes held while connecting.
  void WriteRequestStart();
  void FailUpstream(int status, absl::string_view message);
  // A (healthy) target this request has not tried yet could take it.
  bool UntriedTargetExists() const;
  // Passive health check: the current attempt failed with `error` (no-op once its head was seen).
  void ReportFailedAttempt(UpstreamError error, bool response_bytes_received);
  // The body went over RequestContext::request_body_limit: 413, or a close if the response started.
  void RefuseOversizedBody();
  void RunResponseHeadSteps(int status);
  // The upstream's response head (a 101 too) arrived: records its status, reports the attempt as
  // answered (once per attempt: passive checks, latency) and runs the response-head steps on it.
  void AcceptUpstreamHead(const MessageHead& response);
  // The body a step waited for is in (or too large to hold): runs the waiting step again.
  void RunStepsAfterBody();
  // The body of the upstream request when it was read whole (the client's, or a step's).
  absl::string_view WholeBodyForUpstream() const;
  // A held response (buffer_response_body) goes out as it came: its head, the body so far.
  void ReleaseHeldResponse();
  // A held response is complete: buffered-body steps, then the head with its new length and body.
  void SendHeldResponse();
  void MaybeFinish();
  // Runs the log steps unless they ran: the exchange is over, with `status` sent to the client.
  void RunLogSteps(int status);

  Worker* worker_ = nullptr;
  Downstream* downstream_ = nullptr;
  std::shared_ptr<const RuntimeConfig> config_;  // pinned until the exchange ends
  size_t next_step_ = 0;
  bool suspended_ = false;
  bool steps_done_ = false;     // every request step ran (the upstream may start)
  UpstreamConnection* upstream_ = nullptr;
  Http2UpstreamStream* upstream_stream_ = nullptr;  // instead of upstream_ for an HTTP/2 service
  uint64_t grpc_deadline_ms_ = 0;  // loop time the call's grpc-timeout ends (0: none, or not read yet)
  std::string pending_body_;    // body bytes (framed) waiting for the upstream to connect
  int connect_retries_left_ = 0;
  bool request_is_head_ = false;
  bool request_chunked_ = false;
  bool request_complete_ = false;
  bool body_streamed_ = false;     // body bytes were handed to a connected upstream
  uint64_t request_body_bytes_ = 0;  // counted only under a request_body_limit
  bool measured_ = false;  // the config has log steps: the timings are taken (RequestContext)
  bool logged_ = false;    // the log steps ran (once per exchange: MaybeFinish or Cancel)
  static constexpr int kClientClosedRequest = 499;
  bool local_response_ = false;    // the proxy answered; the request body is discarded
  bool response_started_ = false;  // a byte of the final response went to the client
  bool response_complete_ = false;
  bool stale_retry_used_ = false;
  bool head_reported_ = false;     // the current attempt's response head went to passive checks
  int health_target_ = -1;         // the balancer target of the current attempt (passive checks)
  bool body_to_client_ = false;    // the upstream response's body goes to the client
  bool cancelled_ = false;         // Cancel() ran: the client connection is gone
  int response_status_ = 0;        // the status sent to the client (for log steps)
  bool holding_response_ = false;  // the upstream response is buffered (buffer_response_body)
  MessageHead held_head_;          // its head, kept while its body is buffered
  bool in_step_ = false;           // a request step is running (Resume from inside it is deferred)
  bool resumed_in_step_ = false;
  dp::StepStatus resumed_status_ = dp::StepStatus::kContinue;
};

}  // namespace portico::dp
