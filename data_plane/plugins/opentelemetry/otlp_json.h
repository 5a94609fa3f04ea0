#pragma once
// OTLP/JSON encoding of spans (OpenTelemetry protocol, JSON mapping of
// ExportTraceServiceRequest): trace and span ids as lowercase hex strings (not base64), 64-bit
// times as decimal strings, enums (kind, status code) as integers, attributes as
// {"key": ..., "value": {"stringValue"|"intValue": ...}} (intValue as a string). Strings that are
// not valid UTF-8 are written with '?' for their bytes above 0x7f.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "data_plane/plugins/opentelemetry/trace_context.h"

namespace portico::dp::plugins {

enum class SpanKind { kInternal = 1, kServer = 2, kClient = 3 };
enum class SpanStatusCode { kUnset = 0, kOk = 1, kError = 2 };

struct SpanAttribute {
  absl::string_view key;
  bool is_int = false;
  absl::string_view string_value;
  int64_t int_value = 0;

  static SpanAttribute String(absl::string_view key, absl::string_view value) { return {key, false, value, 0}; }
  static SpanAttribute Int(absl::string_view key, int64_t value) { return {key, true, {}, value}; }
};

// One finished span; views are read only while it is encoded.
struct SpanData {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_span_id{};
  bool has_parent = false;
  absl::string_view name;
  SpanKind kind = SpanKind::kInternal;
  uint64_t start_unix_ns = 0;
  uint64_t end_unix_ns = 0;
  absl::Span<const SpanAttribute> attributes;
  SpanStatusCode status = SpanStatusCode::kUnset;
  absl::string_view status_message;
};

// Appends `span` as one JSON object to `out` (no separator). Allocation-free once `out` has room.
void AppendSpanJson(const SpanData& span, std::string* out);

// The `resource` object: {"attributes":[...]} of `attributes` (service.name first when given).
std::string ResourceJson(const std::vector<std::pair<std::string, std::string>>& attributes);

// A whole ExportTraceServiceRequest: one resourceSpans entry with `resource_json`, one scopeSpans
// entry with scope `scope_name`/`scope_version` and the spans `spans_json` (objects made by
// AppendSpanJson, joined by commas).
std::string ExportRequestJson(absl::string_view resource_json, absl::string_view scope_name,
                              absl::string_view scope_version, absl::string_view spans_json);
// The same appended to `body` (allocation-free once it has room).
void AppendExportRequestJson(absl::string_view resource_json, absl::string_view scope_name,
                             absl::string_view scope_version, absl::string_view spans_json, std::string* body);

// `text` as a JSON string literal (quotes included), appended to `out`.
void AppendJsonString(absl::string_view text, std::string* out);

}  // namespace portico::dp::plugins
