#include "data_plane/proxy/http1_messages.h"

#include "common/base/host_port.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace portico::proxy {
namespace {

void AppendHeader(std::string* out, absl::string_view name, absl::string_view value) {
  // Plain appends: Debian's absl::StrAppend zero-fills the grown string first.
  out->append(name.data(), name.size()).append(": ", 2).append(value.data(), value.size()).append("\r\n", 2);
}

// The query as received, except raw bytes >= 0x80 (which the parser accepts, as nginx does, but
// which a request line cannot carry): those become %XX, which an upstream decodes to the same byte.
void AppendQuery(std::string* out, absl::string_view query) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  size_t start = 0;
  for (size_t i = 0; i < query.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(query[i]);
    if (c < 0x80) continue;
    out->append(query.data() + start, i - start);
    const char escaped[3] = {'%', kHex[c >> 4], kHex[c & 15]};
    out->append(escaped, 3);
    start = i + 1;
  }
  out->append(query.data() + start, query.size() - start);
}

void AppendNumberHeader(std::string* out, absl::string_view name, uint64_t value) {
  char digits[24];
  char* end = digits + sizeof(digits);
  char* p = end;
  do {
    *--p = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  AppendHeader(out, name, absl::string_view(p, static_cast<size_t>(end - p)));
}

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

}  // namespace


std::string BuildKongResponse(int status, absl::string_view message, bool close,
                              const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  const std::string body = absl::StrCat("{\"message\":\"", JsonEscape(message), "\"}");
  std::string out = absl::StrCat("HTTP/1.1 ", status, " ", HttpReasonPhrase(status), "\r\n");
  AppendHeader(&out, "Content-Type", "application/json; charset=utf-8");
  AppendHeader(&out, "Content-Length", absl::StrCat(body.size()));
  AppendHeader(&out, "Server", kServerToken);
  if (close) AppendHeader(&out, "Connection", "close");
  for (const auto& [name, value] : extra_headers) AppendHeader(&out, name, value);
  out += "\r\n";
  out += body;
  return out;
}

std::string BuildHttpsRequiredResponse(int redirect_status, absl::string_view host, absl::string_view path_and_query,
                                       bool close,
                                       const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  if (redirect_status != 301 && redirect_status != 302 && redirect_status != 307 && redirect_status != 308) {
    std::vector<std::pair<std::string, std::string>> headers = extra_headers;
    headers.emplace_back("Connection", "Upgrade");
    headers.emplace_back("Upgrade", "TLS/1.2, HTTP/1.1");
    return BuildKongResponse(426, kMsgHttpsRequired, close, headers);
  }
  std::string out = absl::StrCat("HTTP/1.1 ", redirect_status, " ", HttpReasonPhrase(redirect_status), "\r\n");
  AppendHeader(&out, "Location", absl::StrCat("https://", absl::AsciiStrToLower(StripPort(host)), path_and_query));
  AppendHeader(&out, "Content-Length", "0");
  AppendHeader(&out, "Server", kServerToken);
  if (close) AppendHeader(&out, "Connection", "close");
  for (const auto& [name, value] : extra_headers) AppendHeader(&out, name, value);
  out += "\r\n";
  return out;
}

KnownHeader ClassifyHeader(absl::string_view name) {
  if (name.empty()) return KnownHeader::kOther;
  const char first = absl::ascii_tolower(static_cast<unsigned char>(name[0]));
  const auto is = [name](absl::string_view lower) { return absl::EqualsIgnoreCase(name, lower); };
  switch (name.size()) {
    case 2:
      if (first == 't' && is("te")) return KnownHeader::kTe;
      break;
    case 3:
      if (first == 'v' && is("via")) return KnownHeader::kVia;
      break;
    case 4:
      if (first == 'h' && is("host")) return KnownHeader::kHost;
      break;
    case 6:
      if (first == 'e' && is("expect")) return KnownHeader::kExpect;
      break;
    case 7:
      if (first == 't' && is("trailer")) return KnownHeader::kTrailer;
      if (first == 'u' && is("upgrade")) return KnownHeader::kUpgrade;
      break;
    case 9:
      if (first == 'x' && is("x-real-ip")) return KnownHeader::kXRealIp;
      break;
    case 10:
      if (first == 'c' && is("connection")) return KnownHeader::kConnection;
      if (first == 'k' && is("keep-alive")) return KnownHeader::kKeepAlive;
      break;
    case 14:
      if (first == 'c' && is("content-length")) return KnownHeader::kContentLength;
      break;
    case 15:
      if (first == 'x' && is("x-forwarded-for")) return KnownHeader::kXForwardedFor;
      break;
    case 16:
      if (first == 'p' && is("proxy-connection")) return KnownHeader::kProxyConnection;
      if (first == 'x' && is("x-forwarded-host")) return KnownHeader::kXForwardedHost;
      if (first == 'x' && is("x-forwarded-port")) return KnownHeader::kXForwardedPort;
      break;
    case 17:
      if (first == 't' && is("transfer-encoding")) return KnownHeader::kTransferEncoding;
      if (first == 'x' && is("x-forwarded-proto")) return KnownHeader::kXForwardedProto;
      break;
    case 18:
      if (first == 'x' && is("x-forwarded-prefix")) return KnownHeader::kXForwardedPrefix;
      break;
    default:
      break;
  }
  return KnownHeader::kOther;
}

HopByHopFilter::HopByHopFilter(const Http1Head& head) {
  for (const auto& [name, value] : head.headers) {
    if (ClassifyHeader(name) != KnownHeader::kConnection) continue;
    for (absl::string_view token : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      listed_.push_back(absl::StripAsciiWhitespace(token));
    }
  }
}

bool HopByHopFilter::IsHopByHop(absl::string_view name, KnownHeader kind) const {
  switch (kind) {
    case KnownHeader::kConnection:
    case KnownHeader::kKeepAlive:
    case KnownHeader::kProxyConnection:
    case KnownHeader::kTe:
    case KnownHeader::kTrailer:
    case KnownHeader::kTransferEncoding:
    case KnownHeader::kUpgrade:
      return true;
    default:
      break;
  }
  for (absl::string_view listed : listed_) {
    if (absl::EqualsIgnoreCase(name, listed)) return true;
  }
  return false;
}

void AppendUpstreamRequestHead(std::string* out_buffer, const Http1Head& request,
                               const UpstreamRequestParams& params) {
  std::string& out = *out_buffer;
  out.reserve(out.size() + 512 + request.headers.size() * 48);
  absl::StrAppend(&out, request.method, " ", params.upstream_path);
  if (params.has_query) {
    out.push_back('?');
    AppendQuery(&out, params.query);
  }
  out += " HTTP/1.1\r\n";
  AppendHeader(&out, "Host", params.host_header);

  const HopByHopFilter hop(request);
  std::string forwarded_for;
  for (const auto& [name, value] : request.headers) {
    const KnownHeader kind = ClassifyHeader(name);
    if (hop.IsHopByHop(name, kind)) continue;
    switch (kind) {
      case KnownHeader::kXForwardedFor:
        if (!forwarded_for.empty()) forwarded_for += ", ";
        forwarded_for += value;
        continue;
      case KnownHeader::kHost:
      case KnownHeader::kExpect:
      case KnownHeader::kXRealIp:
      case KnownHeader::kXForwardedProto:
      case KnownHeader::kXForwardedHost:
      case KnownHeader::kXForwardedPort:
      case KnownHeader::kXForwardedPrefix:
        continue;
      case KnownHeader::kContentLength:
      case KnownHeader::kTransferEncoding:
        continue;  // written below from the parsed framing
      default:
        break;
    }
    AppendHeader(&out, name, value);
  }
  AppendHeader(&out, "X-Real-IP", params.client_ip);
  if (!forwarded_for.empty()) forwarded_for += ", ";
  forwarded_for.append(params.client_ip.data(), params.client_ip.size());
  AppendHeader(&out, "X-Forwarded-For", forwarded_for);
  AppendHeader(&out, "X-Forwarded-Proto", "http");
  if (!params.client_host.empty()) AppendHeader(&out, "X-Forwarded-Host", params.client_host);
  AppendNumberHeader(&out, "X-Forwarded-Port", params.local_port);
  if (params.chunked_body) {
    AppendHeader(&out, "Transfer-Encoding", "chunked");
  } else if (params.has_content_length) {
    AppendNumberHeader(&out, "Content-Length", params.content_length);
  }
  out += "\r\n";
}

std::string BuildUpstreamRequestHead(const Http1Head& request, const UpstreamRequestParams& params) {
  std::string out;
  AppendUpstreamRequestHead(&out, request, params);
  return out;
}

ResponseFraming ChooseResponseFraming(const Http1Head& response, bool request_is_head,
                                      bool client_is_http11) {
  if ((response.status >= 100 && response.status < 200) || response.status == 204 || response.status == 304) {
    return ResponseFraming::kNoBody;
  }
  if (request_is_head) return ResponseFraming::kHeadResponse;
  if (response.has_content_length && !response.chunked) return ResponseFraming::kContentLength;
  return client_is_http11 ? ResponseFraming::kChunked : ResponseFraming::kUntilClose;
}

void AppendDownstreamResponseHead(std::string* out, const Http1Head& response, ResponseFraming framing,
                                  bool keep_alive, bool client_is_http11,
                                  const std::vector<std::pair<std::string, std::string>>& extra_headers) {
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
    AppendHeader(out, name, value);
  }
  static constexpr absl::string_view kOwnVia = "1.1 portico/" PORTICO_VERSION;
  if (via.empty()) {
    AppendHeader(out, "Via", kOwnVia);
  } else {
    absl::StrAppend(&via, ", ", kOwnVia);
    AppendHeader(out, "Via", via);
  }
  switch (framing) {
    case ResponseFraming::kChunked:
      AppendHeader(out, "Transfer-Encoding", "chunked");
      break;
    case ResponseFraming::kContentLength:
      AppendNumberHeader(out, "Content-Length", response.content_length);
      break;
    case ResponseFraming::kHeadResponse:
      if (response.has_content_length && !response.chunked) {
        AppendNumberHeader(out, "Content-Length", response.content_length);
      }
      break;
    case ResponseFraming::kNoBody:
    case ResponseFraming::kUntilClose:
      break;
  }
  if (!keep_alive) {
    AppendHeader(out, "Connection", "close");
  } else if (!client_is_http11) {
    AppendHeader(out, "Connection", "keep-alive");
  }
  for (const auto& [name, value] : extra_headers) AppendHeader(out, name, value);
  out->append("\r\n");
}

std::string BuildDownstreamResponseHead(const Http1Head& response, ResponseFraming framing, bool keep_alive,
                                        bool client_is_http11,
                                        const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  std::string out;
  AppendDownstreamResponseHead(&out, response, framing, keep_alive, client_is_http11, extra_headers);
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

}  // namespace portico::proxy
