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
