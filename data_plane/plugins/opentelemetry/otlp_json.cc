#include "data_plane/plugins/opentelemetry/otlp_json.h"

#include "absl/strings/str_cat.h"
#include "common/config/utf8_fields.h"

namespace portico::dp::plugins {
namespace {

void AppendId(const uint8_t* bytes, size_t n, std::string* out) {
  char quoted[34];
  quoted[0] = '"';
  HexEncode(bytes, n, quoted + 1);
  quoted[2 * n + 1] = '"';
  out->append(quoted, 2 * n + 2);
}

void AppendDecimalString(uint64_t value, std::string* out) {
  const absl::AlphaNum number(value);
  out->push_back('"');
  out->append(number.data(), number.size());
  out->push_back('"');
}

void AppendAttributes(absl::Span<const SpanAttribute> attributes, std::string* out) {
  out->append("[");
  for (size_t i = 0; i < attributes.size(); ++i) {
    const SpanAttribute& a = attributes[i];
    if (i != 0) out->push_back(',');
    out->append("{\"key\":");
    AppendJsonString(a.key, out);
    if (a.is_int) {
      out->append(",\"value\":{\"intValue\":");
      const absl::AlphaNum number(a.int_value);
      out->push_back('"');
      out->append(number.data(), number.size());
      out->append("\"}}");
    } else {
      out->append(",\"value\":{\"stringValue\":");
      AppendJsonString(a.string_value, out);
      out->append("}}");
    }
  }
  out->append("]");
}

}  // namespace

void AppendJsonString(absl::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool utf8 = IsValidUtf8(text);
  out->push_back('"');
  size_t run = 0;  // start of the bytes not yet appended, which need no escaping
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const bool plain = c >= 0x20 && c != '"' && c != '\\' && c != 0x7f && (c < 0x80 || utf8);
    if (plain) continue;
    out->append(text.data() + run, i - run);
    run = i + 1;
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c >= 0x80) {
      out->push_back('?');
    } else {
      const char escaped[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
      out->append(escaped, 6);
    }
  }
  out->append(text.data() + run, text.size() - run);
  out->push_back('"');
}

void AppendSpanJson(const SpanData& span, std::string* out) {
  out->append("{\"traceId\":");
  AppendId(span.trace_id.data(), span.trace_id.size(), out);
  out->append(",\"spanId\":");
  AppendId(span.span_id.data(), span.span_id.size(), out);
  if (span.has_parent) {
    out->append(",\"parentSpanId\":");
    AppendId(span.parent_span_id.data(), span.parent_span_id.size(), out);
  }
  out->append(",\"name\":");
  AppendJsonString(span.name, out);
  out->append(",\"kind\":");
  out->push_back(static_cast<char>('0' + static_cast<int>(span.kind)));
  out->append(",\"startTimeUnixNano\":");
  AppendDecimalString(span.start_unix_ns, out);
  out->append(",\"endTimeUnixNano\":");
  AppendDecimalString(span.end_unix_ns, out);
  out->append(",\"attributes\":");
  AppendAttributes(span.attributes, out);
  out->append(",\"status\":{");
  if (span.status != SpanStatusCode::kUnset) {
    out->append("\"code\":");
    out->push_back(static_cast<char>('0' + static_cast<int>(span.status)));
    if (!span.status_message.empty()) {
      out->append(",\"message\":");
      AppendJsonString(span.status_message, out);
    }
  }
  out->append("}}");
}

std::string ResourceJson(const std::vector<std::pair<std::string, std::string>>& attributes) {
  std::vector<SpanAttribute> list;
  list.reserve(attributes.size());
  for (const auto& [key, value] : attributes) list.push_back(SpanAttribute::String(key, value));
  std::string out = "{\"attributes\":";
  AppendAttributes(list, &out);
  out.push_back('}');
  return out;
}

void AppendExportRequestJson(absl::string_view resource_json, absl::string_view scope_name,
                             absl::string_view scope_version, absl::string_view spans_json, std::string* body) {
  std::string& out = *body;
  out.append("{\"resourceSpans\":[{\"resource\":");
  out.append(resource_json.data(), resource_json.size());
  out.append(",\"scopeSpans\":[{\"scope\":{\"name\":");
  AppendJsonString(scope_name, &out);
  out.append(",\"version\":");
  AppendJsonString(scope_version, &out);
  out.append("},\"spans\":[");
  out.append(spans_json.data(), spans_json.size());
  out.append("]}]}]}");
}

std::string ExportRequestJson(absl::string_view resource_json, absl::string_view scope_name,
                              absl::string_view scope_version, absl::string_view spans_json) {
  std::string out;
  out.reserve(resource_json.size() + spans_json.size() + 128);
  AppendExportRequestJson(resource_json, scope_name, scope_version, spans_json, &out);
  return out;
}

}  // namespace portico::dp::plugins
