#include "common/http/known_headers.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace portico {

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

HopByHopFilter::HopByHopFilter(const MessageHead& head) {
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

bool ListHasToken(absl::string_view value, absl::string_view token) {
  for (absl::string_view item : absl::StrSplit(value, ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(item), token)) return true;
  }
  return false;
}

bool IsConnectionSpecific(KnownHeader kind) {
  return kind == KnownHeader::kConnection || kind == KnownHeader::kKeepAlive ||
         kind == KnownHeader::kProxyConnection || kind == KnownHeader::kTransferEncoding ||
         kind == KnownHeader::kUpgrade;
}

bool IsGrpcContentType(absl::string_view value) {
  constexpr absl::string_view kGrpc = "application/grpc";
  return absl::StartsWithIgnoreCase(value, kGrpc) &&
         (value.size() == kGrpc.size() || value[kGrpc.size()] == '+' || value[kGrpc.size()] == ';');
}

}  // namespace portico
