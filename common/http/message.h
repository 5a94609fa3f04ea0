#pragma once
// Plain HTTP/1.1 request and response values for the small servers (Admin API, DP status).
// The proxy has its own zero-copy path and does not use these.
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/strings/match.h"

namespace portico {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Reason phrase for a status code ("Not Found"); "Unknown" for codes it does not know.
inline absl::string_view HttpReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

struct HttpRequest {
  std::string method;    // "GET"
  std::string target;    // raw request-target, "/services?size=2"
  std::string path;      // target before '?', still percent-encoded
  std::string query;     // target after '?', without it; empty if none
  HeaderList headers;    // in arrival order, names as sent
  std::string body;
  std::string peer_ip;

  // First header with this name (case-insensitive), or nullptr.
  const std::string* Header(absl::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (absl::EqualsIgnoreCase(k, name)) return &v;
    }
    return nullptr;
  }
  size_t HeaderCount(absl::string_view name) const {
    size_t n = 0;
    for (const auto& [k, v] : headers) n += absl::EqualsIgnoreCase(k, name) ? 1 : 0;
    return n;
  }
};

struct HttpResponse {
  int status = 200;
  HeaderList headers;  // Content-Length and Date are added by the server
  std::string body;

  static HttpResponse Json(int status, std::string body) {
    HttpResponse r;
    r.status = status;
    r.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
    r.body = std::move(body);
    return r;
  }
};

}  // namespace portico
