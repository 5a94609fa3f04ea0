#include "data_plane/plugins/opentelemetry/opentelemetry.h"

#include <time.h>
#include <uv.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "data_plane/plugins/opentelemetry/otlp_json.h"
#include "data_plane/plugins/opentelemetry/span_export.h"
#include "data_plane/plugins/opentelemetry/trace_context.h"
#include "data_plane/telemetry/log_serializer.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

using nlohmann::json;

uint64_t UnixNowNs() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ULL + static_cast<uint64_t>(now.tv_nsec);
}

// Per worker thread: scratch strings for span names and the URL attribute (capacity kept).
struct Scratch {
  std::string url;
  std::string plugin_span_name;
};
Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

bool ListHas(const json& list, const char* value) {
  if (!list.is_array()) return false;
  for (const json& item : list) {
    if (item.is_string() && item.get_ref<const std::string&>() == value) return true;
  }
  return false;
}

// The request's path and query, credential-looking query values redacted (as the access log's).
void AppendRedactedTarget(const RequestContext& request, std::string* out) {
  out->append(request.target.path.data(), request.target.path.size());
  if (!request.target.has_query) return;
  out->push_back('?');
  const absl::string_view query = request.target.query;
  for (size_t start = 0; start <= query.size();) {
    size_t end = query.find('&', start);
    if (end == absl::string_view::npos) end = query.size();
    const absl::string_view arg = query.substr(start, end - start);
    const size_t eq = arg.find('=');
    if (start != 0) out->push_back('&');
    if (eq != absl::string_view::npos && IsSecretQueryArgument(arg.substr(0, eq))) {
      out->append(arg.data(), eq + 1);
      out->append(kRedacted.data(), kRedacted.size());
    } else {
      out->append(arg.data(), arg.size());
    }
    start = end + 1;
  }
}

// The client's tracestate headers (one list across them), each valid and together short enough.
bool ClientTracestateValid(const MessageHead& head) {
  size_t length = 0, headers = 0;
  for (const auto& [name, value] : head.headers) {
    if (!absl::EqualsIgnoreCase(name, "tracestate")) continue;
    length += value.size() + (headers++ != 0 ? 1 : 0);
    if (length > kMaxTracestateLength || !ValidTracestate(value)) return false;
  }
  return true;
}

// The client's traceparent: one header with a valid value (W3C: more than one is invalid).
std::optional<TraceParent> ClientTraceparent(const MessageHead& head) {
  const std::string* found = nullptr;
  for (const auto& [name, value] : head.headers) {
    if (!absl::EqualsIgnoreCase(name, "traceparent")) continue;
    if (found != nullptr) return std::nullopt;
    found = &value;
  }
  return found != nullptr ? ParseTraceparent(*found) : std::nullopt;
}

class Opentelemetry final : public PluginHandler {
 public:
  struct Options {
    OtlpExportTarget target;
    double sampling_rate = 1.0;
    bool extract_w3c = true;
    bool inject_w3c = true;
    std::vector<std::string> clear;  // lowercase header names
    std::string response_header;     // http_response_header_for_traceid; empty: none
    std::shared_ptr<OtlpBatchSender> sender;  // null: no sender in this process (spans dropped)
  };

  explicit Opentelemetry(Options options) : options_(std::move(options)) {}

  // The request's trace: the client's (a valid traceparent, when extraction allows) or a new one,
  // its sampling decision, and the gateway's span ids.
  std::optional<TraceParent> StartTrace(const MessageHead& head, RequestContext::TraceState& trace) const {
    trace.active = true;
    std::optional<TraceParent> parent;
    if (options_.extract_w3c) parent = ClientTraceparent(head);
    IdGenerator& ids = ThreadIdGenerator();
    TraceId trace_id;
    if (parent.has_value()) {
      trace_id = parent->trace_id;
      std::copy(parent->parent_id.begin(), parent->parent_id.end(), trace.parent_span_id);
      trace.has_parent = true;
      trace.sampled = parent->sampled();
      trace.flags = parent->flags;
    } else {
      trace_id = ids.NewTraceId();
      trace.has_parent = false;
      trace.sampled = SampleByTraceId(trace_id, options_.sampling_rate);
      trace.flags = trace.sampled ? kTraceFlagSampled : 0;
    }
    std::copy(trace_id.begin(), trace_id.end(), trace.trace_id);
    const SpanId span_id = ids.NewSpanId(), upstream_span_id = ids.NewSpanId();
    std::copy(span_id.begin(), span_id.end(), trace.span_id);
    std::copy(upstream_span_id.begin(), upstream_span_id.end(), trace.upstream_span_id);
    return parent;
  }

  StepStatus Access(RequestContext& request) const override {
    RequestContext::TraceState& trace = request.trace;
    const std::optional<TraceParent> parent = StartTrace(*request.head, trace);
    TraceId trace_id;
    std::copy_n(trace.trace_id, 16, trace_id.begin());
    SpanId upstream_span_id;
    std::copy_n(trace.upstream_span_id, 8, upstream_span_id.begin());
    if (options_.inject_w3c) {
      // Version 00 defines only the sampled flag: other bits are not forwarded.
      FormatTraceparent(trace_id, upstream_span_id, trace.flags & kTraceFlagSampled, trace.traceparent);
      request.upstream_headers.emplace_back("traceparent", absl::string_view(trace.traceparent, kTraceparentLength));
      // A tracestate belongs to the traceparent it came with: without one, it is meaningless; an
      // invalid or oversized one is dropped too (W3C: the list is then discarded).
      if (!parent.has_value() || !ClientTracestateValid(*request.head)) {
        request.upstream_headers_removed.push_back("tracestate");
      }
    }
    for (const std::string& name : options_.clear) request.upstream_headers_removed.push_back(name);
    if (!options_.response_header.empty()) {
      HexEncode(trace_id.data(), 16, trace.trace_id_hex);
      request.response_headers.Add(options_.response_header, absl::string_view(trace.trace_id_hex, 32));
    }
    return StepStatus::kContinue;
  }

  bool logs() const override { return true; }
  bool times_plugins() const override { return true; }

  // A request answered before this plugin's access phase (an auth plugin's 401, an earlier
  // plugin's refusal) still has its spans, in a trace started here (as Kong's request span exists
  // from the start).
  void Log(const RequestContext& request, int status) const override {
    if (request.head == nullptr || request.loop == nullptr) return;
    RequestContext::TraceState started_late;
    const RequestContext::TraceState& trace = request.trace.active ? request.trace : started_late;
    if (!request.trace.active) StartTrace(*request.head, started_late);
    if (!trace.sampled) return;
    const size_t plugin_spans = std::min<size_t>(request.plugin_timing_count, RequestContext::kMaxPluginTimings);
    const size_t try_spans = std::min<size_t>(request.upstream_try_count, RequestContext::kMaxRecordedTries);
    if (options_.sender == nullptr) {
      GlobalSpanExportCounters().spans_dropped.fetch_add(1 + plugin_spans + try_spans, std::memory_order_relaxed);
      return;
    }
    SpanBatcher& batcher = FindSpanBatcher(request.loop, request.worker_index, options_.sender, options_.target);
    if (!batcher.Reserve(1 + plugin_spans + try_spans)) return;

    const uint64_t now_hr = uv_hrtime(), now_unix = UnixNowNs();
    auto unix_time = [&](uint64_t hr) { return hr == 0 || hr > now_hr ? now_unix : now_unix - (now_hr - hr); };
    const uint64_t finished = request.finished_ns != 0 ? request.finished_ns : now_hr;

    SpanData span;
    std::copy_n(trace.trace_id, 16, span.trace_id.begin());

    // The request span.
    Scratch& scratch = ThreadScratch();
    scratch.url.clear();
    scratch.url.append(request.tls ? "https://" : "http://");
    scratch.url.append(request.host.data(), request.host.size());
    AppendRedactedTarget(request, &scratch.url);
    const absl::string_view flavor = request.head->version_major == 2 ? "2.0" : request.client_http11 ? "1.1" : "1.0";
    const SpanAttribute request_attributes[] = {
        SpanAttribute::String("http.method", request.head->method),
        SpanAttribute::String("http.url", scratch.url),
        SpanAttribute::String("http.host", request.host),
        SpanAttribute::String("http.scheme", request.tls ? "https" : "http"),
        SpanAttribute::String("http.flavor", flavor),
        SpanAttribute::Int("http.status_code", status),
        SpanAttribute::String("net.peer.ip", request.client_ip),
    };
    std::copy_n(trace.span_id, 8, span.span_id.begin());
    span.has_parent = trace.has_parent;
    std::copy_n(trace.parent_span_id, 8, span.parent_span_id.begin());
    span.name = "kong";
    span.kind = SpanKind::kServer;
    span.start_unix_ns = unix_time(request.received_ns);
    span.end_unix_ns = unix_time(finished);
    span.attributes = request_attributes;
    span.status = status >= 500 ? SpanStatusCode::kError : SpanStatusCode::kUnset;
    AppendSpanJson(span, &batcher.BeginSpan());

    // Children of the request span.
    span.has_parent = true;
    std::copy_n(trace.span_id, 8, span.parent_span_id.begin());
    IdGenerator& ids = ThreadIdGenerator();
    for (size_t i = 0; i < plugin_spans; ++i) {
      const RequestContext::PluginTiming& timing = request.plugin_timings[i];
      scratch.plugin_span_name.assign("kong.access.plugin.");
      scratch.plugin_span_name.append(timing.name.data(), timing.name.size());
      span.span_id = ids.NewSpanId();
      span.name = scratch.plugin_span_name;
      span.kind = SpanKind::kInternal;
      span.start_unix_ns = unix_time(timing.started_ns);
      span.end_unix_ns = unix_time(timing.ended_ns);
      span.attributes = {};
      span.status = SpanStatusCode::kUnset;
      AppendSpanJson(span, &batcher.BeginSpan());
    }
    // The upstream's parent (the traceparent it was sent) is the last attempt (Kong's
    // last_try_balancer_span); earlier attempts get ids of their own.
    for (size_t i = 0; i < try_spans; ++i) {
      const RequestContext::UpstreamTry& attempt = request.upstream_tries[i];
      if (i + 1 == try_spans) {
        std::copy_n(trace.upstream_span_id, 8, span.span_id.begin());
      } else {
        span.span_id = ids.NewSpanId();
      }
      const SpanAttribute try_attributes[] = {
          SpanAttribute::String("net.peer.ip", attempt.ip),
          SpanAttribute::Int("net.peer.port", attempt.port),
          SpanAttribute::Int("try_count", static_cast<int64_t>(i + 1)),
          SpanAttribute::Int("http.status_code", attempt.status),
      };
      span.name = "kong.balancer";
      span.kind = SpanKind::kClient;
      span.start_unix_ns = unix_time(attempt.started_ns);
      span.end_unix_ns = unix_time(attempt.ended_ns != 0 ? attempt.ended_ns : finished);
      span.attributes = absl::MakeConstSpan(try_attributes, attempt.status != 0 ? 4 : 3);
      span.status = attempt.status == 0 ? SpanStatusCode::kError : SpanStatusCode::kUnset;
      span.status_message = attempt.status == 0 ? "the upstream attempt failed" : "";
      AppendSpanJson(span, &batcher.BeginSpan());
      span.status_message = {};
    }
    batcher.EndRequest();
  }

 private:
  const Options options_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileOpentelemetry(const PluginCompileContext& context) {
  const json& config = context.config;
  Opentelemetry::Options options;
  OtlpExportTarget& target = options.target;
  target.url = config["traces_endpoint"].get<std::string>();
  if (config["headers"].is_object()) {
    for (const auto& [name, value] : config["headers"].items()) {
      if (value.is_string()) target.headers.emplace_back(name, value.get<std::string>());
    }
    std::sort(target.headers.begin(), target.headers.end());
  }
  target.connect_timeout_ms = config["connect_timeout"].get<int64_t>();
  target.send_timeout_ms = config["send_timeout"].get<int64_t>();
  target.read_timeout_ms = config["read_timeout"].get<int64_t>();
  const json& queue = config["queue"];
  target.max_batch_size = queue["max_batch_size"].get<int64_t>();
  target.max_coalescing_delay_s = queue["max_coalescing_delay"].get<double>();
  target.max_entries = queue["max_entries"].get<int64_t>();
  target.max_retry_time_s = queue["max_retry_time"].get<double>();
  target.initial_retry_delay_s = queue["initial_retry_delay"].get<double>();
  target.max_retry_delay_s = queue["max_retry_delay"].get<double>();
  target.max_bytes = queue["max_bytes"].is_number_integer() ? queue["max_bytes"].get<int64_t>() : 0;
  // service.name first ("kong" unless resource_attributes names it), then the others by name.
  std::vector<std::pair<std::string, std::string>> resource;
  std::string service_name = "kong";
  if (config["resource_attributes"].is_object()) {
    for (const auto& [name, value] : config["resource_attributes"].items()) {
      if (!value.is_string()) continue;
      if (name == "service.name") {
        service_name = value.get<std::string>();
      } else {
        resource.emplace_back(name, value.get<std::string>());
      }
    }
  }
  std::sort(resource.begin(), resource.end());
  resource.insert(resource.begin(), {"service.name", service_name});
  target.resource_json = ResourceJson(resource);

  options.sampling_rate = config["sampling_rate"].is_number() ? config["sampling_rate"].get<double>() : 1.0;
  const json& propagation = config["propagation"];
  const std::string& header_type = config["header_type"].get_ref<const std::string&>();
  options.extract_w3c =
      propagation["extract"].is_array() ? ListHas(propagation["extract"], "w3c") : header_type != "ignore";
  options.inject_w3c = propagation["inject"].is_array()
                           ? ListHas(propagation["inject"], "w3c") || ListHas(propagation["inject"], "preserve")
                           : true;
  if (propagation["clear"].is_array()) {
    for (const json& name : propagation["clear"]) {
      if (name.is_string()) options.clear.push_back(absl::AsciiStrToLower(name.get<std::string>()));
    }
  }
  if (config["http_response_header_for_traceid"].is_string()) {
    options.response_header = config["http_response_header_for_traceid"].get<std::string>();
  }
  absl::StatusOr<std::shared_ptr<OtlpBatchSender>> sender = MakeOtlpBatchSender(target);
  if (!sender.ok()) return absl::InvalidArgumentError(absl::StrCat("config.traces_endpoint: ", sender.status().message()));
  options.sender = *std::move(sender);
  return std::make_unique<const Opentelemetry>(std::move(options));
}

}  // namespace portico::dp::plugins
