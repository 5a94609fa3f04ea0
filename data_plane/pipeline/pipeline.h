#pragma once
// The request pipeline: what the proxy does with a request between its head and the upstream,
// and with the response on its way back, as an ordered list of steps compiled once per snapshot
// (RuntimeConfig::Compile) and shared read-only by every worker. Steps know nothing of
// connections or HTTP versions: they read and write a RequestContext, which the exchange
// (data_plane/proxy/exchange.h) implements. docs/architecture.md, "How to add a pipeline step".
//
// Request phases, in order (Phase): route -> rewrite -> access -> destination -> upstream. A step
// finishes synchronously (kContinue: the next one runs at once, nothing is allocated), answers the
// request itself (kStop, after RequestContext::Respond), or suspends (kSuspend) and later calls
// RequestContext::Resume exactly once on the same worker loop; the request's config stays pinned
// meanwhile. If the client goes away first, the exchange calls the suspended step's OnCancel
// instead, and Resume must not be called after that.
//
// A step that needs the whole request body (an auth plugin reading a key from it, a body
// transformation) calls RequestContext::ReadRequestBody: when it returns false, the step returns
// kSuspend and the exchange runs it again from its start once the body is read (or found too
// large to hold). The upstream then gets the buffered body, or `upstream_body` when a step set one,
// with a Content-Length.
//
// Response phases: response-head steps see (and may add headers to) every response that goes to
// the client, upstream or local; body steps see each piece of an upstream response body; a
// response-head step may instead ask for the whole body (buffer_response_body), which buffered-body
// steps then see and may rewrite before anything goes to the client; log steps run once when the
// exchange ends. They never suspend.
#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/http/http1_checks.h"
#include "common/http/http1_codec.h"
#include "data_plane/balancer/destinations.h"
#include "data_plane/dns/dns_answer.h"
#include "data_plane/router/router.h"

namespace portico::dp {

enum class Phase { kRoute, kRewrite, kAccess, kDestination, kUpstream };

enum class StepStatus {
  kContinue,  // done; the next step runs
  kSuspend,   // still working: the step calls RequestContext::Resume later (same loop), or is
              // cancelled (RequestStep::OnCancel) first
  kStop,      // the step answered the request (RequestContext::Respond): no later request step runs
};

// A response the proxy makes itself. The connection serialises it for its HTTP version: Kong's
// JSON body {"message": message} (none when message is empty: Content-Length 0), the headers
// given, the context's response headers, Server, and Connection: close when the connection closes.
struct LocalResponse {
  int status = 500;
  absl::string_view message;
  // A body of its own instead of {"message": ...} (request-termination's `body`), sent with
  // `content_type` (application/json; charset=utf-8 when empty). Used when not empty.
  absl::string_view body;
  absl::string_view content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the client connection after it, whatever keep-alive says
  // To a gRPC request (HTTP/2 downstream): the grpc-status to answer with, instead of the one the
  // downstream maps from `status` (-1: mapped); grpc-message is `message`.
  int grpc_status = -1;
};

// Headers that steps add to the response. Keeps its strings (and their capacity) across requests,
// so adding headers allocates nothing once warm.
class HeaderList {
 public:
  void Add(absl::string_view name, absl::string_view value) {
    if (size_ == items_.size()) items_.emplace_back();
    items_[size_].first.assign(name.data(), name.size());
    items_[size_].second.assign(value.data(), value.size());
    ++size_;
  }
  // The same with `name` lowercased (HTTP/2 field names).
  void AddLowercase(absl::string_view name, absl::string_view value) {
    Add(name, value);
    for (char& c : items_[size_ - 1].first) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  void Clear() { size_ = 0; }
  // Case-insensitive on names; keep the strings' capacity (no allocation once warm).
  bool Contains(absl::string_view name) const;
  void Remove(absl::string_view name);
  void Rename(absl::string_view from, absl::string_view to);
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  absl::Span<const std::pair<std::string, std::string>> items() const { return {items_.data(), size_}; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
  size_t size_ = 0;
};

// The request as the steps see it. Plain fields are set by the exchange (request data) or by the
// steps (their results); the two actions are the exchange's.
class RequestStep;
class Resolver;

class RequestContext {
 public:
  // ---- the request, set before the first step and valid until the exchange ends
  const MessageHead* head = nullptr;
  RequestTarget target;          // path, query, absolute-form authority (http1_checks.h)
  absl::string_view host;        // the authority of an absolute-form target, else Host
  bool has_host = false;
  uint16_t local_port = 0;       // the listener's port (the TLS listener's for a TLS request)
  // The request came over TLS ("https"), with this server name (SNI: lowercase, no trailing
  // dot; empty when the client sent none). A view into the client connection.
  bool tls = false;
  absl::string_view sni;
  absl::string_view local_ip;    // the address the client connected to
  absl::string_view client_ip;
  uint64_t connection_serial = 0;    // the client connection's number on its worker (from 1)
  uint32_t connection_requests = 0;  // this request's number on its connection (from 1)
  bool client_http11 = true;
  // An HTTP/1.1 WebSocket handshake (data_plane/proxy/websocket.h): it goes upstream with its
  // upgrade headers, and a 101 answer turns the connection into a tunnel.
  bool websocket_upgrade = false;
  uv_loop_t* loop = nullptr;     // the worker's loop (for steps that suspend)
  uint64_t worker_cursor = 0;    // a per-worker counter for round-robin picks
  int worker_index = 0;          // the worker's index (balancers keep per-worker state)
  Resolver* resolver = nullptr;  // the worker's DNS resolver (data_plane/dns); null in some tests
  bool debug_headers_allowed = false;  // the DP runs with --allow-debug-header

  // ---- results of the steps
  std::string normalized_path;                   // route step: what the router matched
  std::optional<dp::Match> match;            // route step
  const dp::UpstreamService* service = nullptr;  // service step
  const dp::Target* upstream_target = nullptr;   // destination step
  // When upstream_target is an address of a DNS answer: that answer, held until the request ends
  // (a refresh replacing it in the resolver's cache cannot free the address in use).
  DnsAnswerPtr dns_answer;
  int attempt = 0;                               // destination attempts so far (retries count)
  // For a service balanced over an upstream (destination step): the balancer and the target of
  // the current attempt (released by EndAttempt), the Host that target wants, and the targets of
  // earlier attempts (a retry goes elsewhere when it can; the last kMaxTriedTargets are kept).
  const dp::Balancer* balancer = nullptr;
  int balancer_target = -1;
  uint64_t attempt_started_ns = 0;  // latency balancing: uv_hrtime() of the pick
  absl::string_view target_host_header;
  static constexpr size_t kMaxTriedTargets = 8;
  uint32_t tried_targets[kMaxTriedTargets] = {};
  uint32_t tried_count = 0;
  // Consistent hashing on a cookie the request did not send: the value the DP made up (sent back
  // in Set-Cookie, and the key of every attempt of this request).
  std::string hash_cookie_value;
  std::string upstream_head;                     // upstream step: the head to send
  // Upstream step, for an HTTP/2 service (UpstreamService::http2) instead of upstream_head: the
  // header list to send (pseudo-headers first, lowercase names).
  HeaderList upstream_http2_headers;
  absl::string_view upstream_host_header;        // upstream step: its Host (the SNI of an https service)
  // Added to every response that goes to the client (debug headers, plugins).
  HeaderList response_headers;
  // Set while response-head steps run for an upstream response: its head (null for a local
  // response). Headers of it not to send to the client (lowercase names; views that outlive the
  // request); framing and hop-by-hop headers are the proxy's and cannot be dropped this way.
  const MessageHead* response_head = nullptr;
  std::vector<absl::string_view> response_headers_removed;
  // Set by an auth plugin: who the request comes from (config entities of the pinned snapshot).
  const config::v1::Consumer* consumer = nullptr;
  absl::string_view credential_id;  // empty for an anonymous consumer
  // Set on the upstream request by plugins: headers (replacing any the client sent under the same
  // name; names as written, matched case-insensitively), client headers to drop (lowercase
  // names), and a query that replaces the client's (`upstream_query_set`). Views must outlive the
  // request (snapshot strings or the context's own storage).
  std::vector<std::pair<absl::string_view, absl::string_view>> upstream_headers;
  std::vector<absl::string_view> upstream_headers_removed;
  std::string upstream_query;
  bool upstream_query_set = false;
  // Overrides of the upstream request line and Host (empty: as the proxy builds them): the method,
  // the path (already escaped, replacing the service path + route stripping), the Host header.
  // Views into the snapshot or the request head.
  absl::string_view upstream_method;
  absl::string_view upstream_path;
  absl::string_view upstream_host;
  // The request's correlation id when a plugin made one (correlation-id); storage for the views
  // in upstream_headers.
  std::string request_id;
  // Set by a step (request-size-limiting, for a body without Content-Length): a request body
  // longer than this many (de-chunked) bytes is refused by the exchange with 413 "Request size
  // limit exceeded" (the connection closes after it; an upstream already sent part of it is
  // aborted). kNoBodyLimit: none.
  static constexpr uint64_t kNoBodyLimit = UINT64_MAX;
  uint64_t request_body_limit = kNoBodyLimit;
  // ---- the whole request body (ReadRequestBody)
  // At most this many body bytes are held; a longer body streams to the upstream unchanged.
  static constexpr size_t kMaxBufferedRequestBody = 1024 * 1024;
  // Once ReadRequestBody returned true: the (de-chunked) body, or when request_body_too_large only
  // its first bytes (at least kMaxBufferedRequestBody; the rest has not been read).
  std::string request_body;
  bool request_body_read = false;  // request_body holds the whole body
  bool request_body_too_large = false;
  // Set by a step: the body the upstream gets instead of the client's (with its Content-Length).
  // REQUIRES: ReadRequestBody returned true and !request_body_too_large.
  std::string upstream_body;
  bool upstream_body_set = false;
  // ---- the whole response body (buffer_response_body)
  // Set by a response-head step for an upstream response with a body: the exchange holds the head
  // and body until the body is complete, runs the buffered-body steps on it (response_head is set
  // again meanwhile), then sends the head with a Content-Length for the body as they left it. A
  // body longer than kMaxBufferedResponseBody goes to the client unchanged, as it came.
  static constexpr size_t kMaxBufferedResponseBody = 8 * 1024 * 1024;
  bool buffer_response_body = false;
  std::string response_body;
  // ---- measured by the exchange, for log steps (LogStep::OnLog; plugins' Log): uv_hrtime()
  // nanoseconds, 0 when that moment did not come. Kong's latencies follow from them
  // (RequestLatencies). Wall-clock time is not kept: a log step derives it (now - age).
  uint64_t received_ns = 0;          // the request head was complete: the request began
  uint64_t upstream_started_ns = 0;  // the first upstream attempt began (connect or pooled write)
  uint64_t upstream_head_ns = 0;     // the upstream's response head arrived (last attempt)
  uint64_t finished_ns = 0;          // the response's last byte went to the client connection
  int upstream_status = 0;           // the upstream's response status; 0 when it did not answer
  // The client got a response the gateway made (a step's, or an error after the upstream's head
  // was taken), not the upstream's: Kong's `source` "kong" rather than "service".
  bool response_is_local = false;
  uint64_t request_body_received = 0;  // request body bytes read from the client (de-chunked)
  // Bytes that went to the client: the response head as serialised (HTTP/2: the header fields'
  // names and values, before HPACK) plus the body bytes handed over (a local response: all of it).
  uint64_t response_bytes = 0;
  // Each upstream attempt (connect or pooled write -> response head or failure), the first
  // kMaxRecordedTries of them; measured like the times above.
  struct UpstreamTry {
    uint64_t started_ns = 0;
    uint64_t ended_ns = 0;  // 0: still going when the exchange ended
    int status = 0;         // the response status; 0 when the attempt failed
    uint16_t port = 0;
    char ip[46] = {0};      // the target's numeric address, NUL-terminated
  };
  static constexpr size_t kMaxRecordedTries = 4;
  UpstreamTry upstream_tries[kMaxRecordedTries];
  uint32_t upstream_try_count = 0;  // attempts begun (may exceed kMaxRecordedTries)
  // The plugin chain's access phase per plugin (its Access call until it returns; a plugin that
  // waited for the request body has one entry, from its first call to its last return), the
  // first kMaxPluginTimings of them; measured only when a
  // plugin of the chain asks for it (PluginHandler::times_plugins). `name` is the snapshot's.
  struct PluginTiming {
    absl::string_view name;
    uint64_t started_ns = 0;
    uint64_t ended_ns = 0;
  };
  static constexpr size_t kMaxPluginTimings = 16;
  PluginTiming plugin_timings[kMaxPluginTimings];
  uint32_t plugin_timing_count = 0;
  // The request's trace (opentelemetry plugin): set in its access phase, read by its log phase.
  struct TraceState {
    bool active = false;    // the plugin ran for this request
    bool sampled = false;   // spans are recorded
    bool has_parent = false;  // the client sent a valid traceparent
    uint8_t flags = 0;
    uint8_t trace_id[16] = {0};
    uint8_t parent_span_id[8] = {0};    // the client's span (has_parent)
    uint8_t span_id[8] = {0};           // the gateway's request span
    uint8_t upstream_span_id[8] = {0};  // the first upstream attempt's span: the upstream's parent
    char traceparent[56] = {0};         // the header sent upstream (storage for upstream_headers)
    char trace_id_hex[33] = {0};        // storage for http_response_header_for_traceid
  };
  TraceState trace;
  // Free for the one step that is suspended (what it needs to cancel itself).
  void* suspended_data = nullptr;
  // The plugin chain while one of its plugins is suspended (data_plane/plugins/chain.cc): the
  // chain step and that plugin's position in it.
  const RequestStep* plugin_chain = nullptr;
  uint32_t plugin_position = 0;
  // Free for the step that answers: storage for a LocalResponse::message it builds (keeps its
  // capacity across requests).
  std::string response_text;
  // Scratch for the route step (the request headers as views), kept with its capacity.
  std::vector<std::pair<absl::string_view, absl::string_view>> header_views;

  // Answers the request; the step then returns kStop (or, once resumed, Resume(kStop)).
  virtual void Respond(const LocalResponse& response) = 0;
  // The current upstream attempt ended (answered, failed, or abandoned): a balancer counts it no
  // more. Idempotent; the exchange calls it.
  void EndAttempt();

  // Ends a suspension: the suspended step's result (kContinue or kStop). kSuspend: the suspended
  // step is waiting for the request body now (ReadRequestBody returned false), run again later.
  virtual void Resume(StepStatus status) = 0;
  // True when request_body holds the request body: at once when it was read before or the request
  // has none (or says it is longer than kMaxBufferedRequestBody: request_body_too_large). False:
  // the exchange reads it (answering Expect: 100-continue, the client timeout bounding the wait);
  // the step returns kSuspend and its OnRequest runs again once the body is in, or cancelled.
  virtual bool ReadRequestBody() = 0;
  // ReadRequestBody returned false and the body is still being read.
  bool reading_request_body() const { return reading_request_body_; }

 protected:
  ~RequestContext() = default;
  // Clears the per-request fields, keeping buffer capacity.
  void ResetContext();
  bool reading_request_body_ = false;  // set by the implementation of ReadRequestBody
};

// Kong's latencies of a finished request, in milliseconds (its log serializer's `latencies`):
// request = received -> finished; proxy = upstream started -> upstream head (0 without one);
// kong = request - proxy (what the gateway itself took, before and after the upstream).
struct RequestLatencies {
  double request_ms = 0;
  double proxy_ms = 0;
  double kong_ms = 0;
};
RequestLatencies ComputeLatencies(const RequestContext& request);
// The request as it came on the wire, approximately (HTTP/1.1 framing of the head + the body
// received): Kong's `request.size`, the ingress side of kong_bandwidth_bytes.
uint64_t RequestSizeBytes(const RequestContext& request);

class RequestStep {
 public:
  virtual ~RequestStep() = default;
  // Thread-safe: one step object serves every worker (it is part of the snapshot).
  virtual StepStatus OnRequest(RequestContext& request) const = 0;
  // The exchange ended while this step was suspended: stop whatever would call Resume.
  virtual void OnCancel(RequestContext& request) const {}
  // Run again when a retry needs a new destination (only destination steps say yes).
  virtual bool rerun_on_retry() const { return false; }
};

class ResponseHeadStep {
 public:
  virtual ~ResponseHeadStep() = default;
  // `status` of the response about to go to the client; may add to request.response_headers.
  virtual void OnResponseHead(RequestContext& request, int status) const = 0;
};

class ResponseBodyStep {
 public:
  virtual ~ResponseBodyStep() = default;
  virtual void OnResponseBody(RequestContext& request, absl::string_view data) const = 0;
};

// Sees a whole upstream response body a response-head step asked to buffer; may rewrite
// request.response_body (the head's Content-Length follows). request.response_head is set.
class BufferedResponseBodyStep {
 public:
  virtual ~BufferedResponseBodyStep() = default;
  virtual void OnBufferedResponseBody(RequestContext& request, int status) const = 0;
};

// Runs once per request when its exchange ends, however it ends: the response went out whole
// (`status` as sent), or the client went away or the connection failed first (`status` as sent
// when the response had started, else 499).
class LogStep {
 public:
  virtual ~LogStep() = default;
  virtual void OnLog(const RequestContext& request, int status) const = 0;
};

// The steps of one snapshot, by phase. Owns them.
class Pipeline {
 public:
  void Add(Phase phase, std::shared_ptr<const RequestStep> step);
  void AddResponseHead(std::shared_ptr<const ResponseHeadStep> step);
  void AddResponseBody(std::shared_ptr<const ResponseBodyStep> step);
  void AddBufferedResponseBody(std::shared_ptr<const BufferedResponseBodyStep> step);
  void AddLog(std::shared_ptr<const LogStep> step);

  // Request steps in phase order (within a phase, in the order added).
  const std::vector<const RequestStep*>& request_steps() const { return request_steps_; }
  const std::vector<const ResponseHeadStep*>& response_head_steps() const { return head_steps_; }
  const std::vector<const ResponseBodyStep*>& response_body_steps() const { return body_steps_; }
  const std::vector<const BufferedResponseBodyStep*>& buffered_body_steps() const { return buffered_steps_; }
  const std::vector<const LogStep*>& log_steps() const { return log_steps_; }

 private:
  struct Entry {
    Phase phase;
    std::shared_ptr<const RequestStep> step;
  };
  std::vector<Entry> entries_;  // sorted by phase, stable
  std::vector<const RequestStep*> request_steps_;
  std::vector<std::shared_ptr<const ResponseHeadStep>> head_owned_;
  std::vector<std::shared_ptr<const ResponseBodyStep>> body_owned_;
  std::vector<std::shared_ptr<const BufferedResponseBodyStep>> buffered_owned_;
  std::vector<std::shared_ptr<const LogStep>> log_owned_;
  std::vector<const ResponseHeadStep*> head_steps_;
  std::vector<const ResponseBodyStep*> body_steps_;
  std::vector<const BufferedResponseBodyStep*> buffered_steps_;
  std::vector<const LogStep*> log_steps_;
};

}  // namespace portico::dp
