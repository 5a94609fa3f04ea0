#include "data_plane/proxy/http1_messages.h"

#include "absl/strings/ascii.h"
#include "common/base/host_port.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/http/header_lines.h"
#include "absl/strings/str_split.h"

namespace portico::dp {
namespace {


std::string JsonEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool IsListed(absl::Span<const absl::string_view> names, absl::string_view name) {
  for (absl::string_view listed : names) {
    if (absl::EqualsIgnoreCase(listed, name)) return true;
  }
  return false;
}

}  // namespace


std::string LocalResponseBody(const dp::LocalResponse& response, std::string* content_type) {
  content_type->clear();
  if (!response.body.empty()) {
    const absl::string_view type = response.content_type.empty()
                                       ? absl::string_view("application/json; charset=utf-8")
                                       : response.content_type;
    content_type->assign(type.data(), type.size());
    return std::string(response.body);
  }
  if (!response.message.empty()) {
    content_type->assign("application/json; charset=utf-8");
    return absl::StrCat("{\"message\":\"", JsonEscape(response.message), "\"}");
  }
  return std::string();
}

std::string SerializeLocalResponse(const dp::LocalResponse& response, bool close,
                                   absl::Span<const std::pair<std::string, std::string>> context_headers) {
  std::string out = absl::StrCat("HTTP/1.1 ", response.status, " ", HttpReasonPhrase(response.status), "\r\n");
  std::string body;
  const bool has_body = !response.body.empty() || !response.message.empty();
  if (!response.body.empty()) {
    body = std::string(response.body);
    AppendHeaderLine(&out, "Content-Type",
                     response.content_type.empty() ? absl::string_view("application/json; charset=utf-8")
                                                   : response.content_type);
    AppendHeaderLine(&out, "Content-Length", static_cast<uint64_t>(body.size()));
  } else if (!response.message.empty()) {
    body = absl::StrCat("{\"message\":\"", JsonEscape(response.message), "\"}");
    AppendHeaderLine(&out, "Content-Type", "application/json; charset=utf-8");
    AppendHeaderLine(&out, "Content-Length", static_cast<uint64_t>(body.size()));
  } else {
    for (const auto& [name, value] : response.headers) AppendHeaderLine(&out, name, value);
    AppendHeaderLine(&out, "Content-Length", "0");
  }
  AppendHeaderLine(&out, "Server", kServerToken);
  if (close) AppendHeaderLine(&out, "Connection", "close");
  if (has_body) {
    for (const auto& [name, value] : response.headers) AppendHeaderLine(&out, name, value);
  }
  for (const auto& [name, value] : context_headers) AppendHeaderLine(&out, name, value);
  out += "\r\n";
  out += body;
  return out;
}

std::string BuildKongResponse(int status, absl::string_view message, bool close,
                              absl::Span<const std::pair<std::string, std::string>> extra_headers) {
  dp::LocalResponse response;
  response.status = status;
  response.message = message;
  return SerializeLocalResponse(response, close, extra_headers);
}

std::string BuildHttpsRequiredResponse(int redirect_status, absl::string_view host, absl::string_view path_and_query,
                                       bool close,
                                       absl::Span<const std::pair<std::string, std::string>> extra_headers) {
  return SerializeLocalResponse(dp::HttpsRequiredResponse(redirect_status, host, path_and_query, close), close,
                                extra_headers);
}

ResponseFraming ChooseResponseFraming(const MessageHead& response, bool request_is_head,
                                      bool client_is_http11) {
  if ((response.status >= 100 && response.status < 200) || response.status == 204 || response.status == 304) {
    return ResponseFraming::kNoBody;
  }
  if (request_is_head) return ResponseFraming::kHeadResponse;
  if (response.has_content_length && !response.chunked) return ResponseFraming::kContentLength;
  return client_is_http11 ? ResponseFraming::kChunked : ResponseFraming::kUntilClose;
}

void AppendDownstreamResponseHead(std::string* out, const MessageHead& response, ResponseFraming framing,
                                  bool keep_alive, bool client_is_http11,
                                  absl::Span<const std::pair<std::string, std::string>> extra_headers,
                                  absl::Span<const absl::string_view> removed_headers) {
  out->reserve(out->size() + 256 + response.headers.size() * 48);
  absl::StrAppend(out, "HTTP/1.1 ", response.status, " ",
                  response.reason.empty() ? HttpReasonPhrase(response.status) : absl::string_view(response.reason),
                  "\r\n");
  const HopByHopFilter hop(response);
  std::string via;  // the upstream's Via values, joined; stays empty (no allocation) when none
  for (const auto& [name, value] : response.headers) {
    const KnownHeader kind = ClassifyHeader(name);
    if (hop.IsHopByHop(name, kind)) continue;
    if (kind == KnownHeader::kVia) {
      if (!via.empty()) via += ", ";
      via += value;
      continue;
    }
    if (kind == KnownHeader::kContentLength) continue;  // written below from the parsed framing
    if (!removed_headers.empty() && IsListed(removed_headers, name)) continue;
    AppendHeaderLine(out, name, value);
  }
  static constexpr absl::string_view kOwnVia = "1.1 portico/" PORTICO_VERSION;
  if (via.empty()) {
    AppendHeaderLine(out, "Via", kOwnVia);
  } else {
    absl::StrAppend(&via, ", ", kOwnVia);
    AppendHeaderLine(out, "Via", via);
  }
  switch (framing) {
    case ResponseFraming::kChunked:
      AppendHeaderLine(out, "Transfer-Encoding", "chunked");
      break;
    case ResponseFraming::kContentLength:
      AppendHeaderLine(out, "Content-Length", response.content_length);
      break;
    case ResponseFraming::kHeadResponse:
      if (response.has_content_length && !response.chunked) {
        AppendHeaderLine(out, "Content-Length", response.content_length);
      }
      break;
    case ResponseFraming::kNoBody:
    case ResponseFraming::kUntilClose:
      break;
  }
  if (!keep_alive) {
    AppendHeaderLine(out, "Connection", "close");
  } else if (!client_is_http11) {
    AppendHeaderLine(out, "Connection", "keep-alive");
  }
  for (const auto& [name, value] : extra_headers) AppendHeaderLine(out, name, value);
  out->append("\r\n");
}

std::string BuildDownstreamResponseHead(const MessageHead& response, ResponseFraming framing, bool keep_alive,
                                        bool client_is_http11,
                                        absl::Span<const std::pair<std::string, std::string>> extra_headers,
                                        absl::Span<const absl::string_view> removed_headers) {
  std::string out;
  AppendDownstreamResponseHead(&out, response, framing, keep_alive, client_is_http11, extra_headers, removed_headers);
  return out;
}

absl::string_view ChunkSizeLine(size_t size, char (&buffer)[24]) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char* end = buffer + sizeof(buffer);
  char* p = end;
  *--p = '\n';
  *--p = '\r';
  do {
    *--p = kDigits[size & 0xf];
    size >>= 4;
  } while (size != 0);
  return absl::string_view(p, static_cast<size_t>(end - p));
}

absl::string_view StripPort(absl::string_view host) { return SplitHostHeader(host).name; }

}  // namespace portico::dp
