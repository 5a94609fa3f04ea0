#include "data_plane/pipeline/builtin_steps.h"

#include <uv.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>

#include "re2/re2.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "data_plane/balancer/balancer.h"
#include "data_plane/dns/resolver.h"
#include "common/http/known_headers.h"
#include "common/base/log.h"
#include "common/base/host_port.h"
#include "common/base/uuid.h"
#include "data_plane/pipeline/local_responses.h"
#include "data_plane/pipeline/query_arguments.h"
#include "data_plane/pipeline/upstream_request.h"

namespace portico::dp {
namespace {

StepStatus Answer(RequestContext& request, int status, absl::string_view message) {
  LocalResponse response;
  response.status = status;
  response.message = message;
  request.Respond(response);
  return StepStatus::kStop;
}

// Kong normalises the path before matching; the normalised path is also what goes upstream.
class RouteStep final : public RequestStep {
 public:
  explicit RouteStep(const dp::Router* router) : router_(router) {}
  StepStatus OnRequest(RequestContext& request) const override {
    request.normalized_path = dp::NormalizeRequestPath(request.target.path);
    request.header_views.clear();  // keeps its capacity across requests
    for (const auto& [name, value] : request.head->headers) request.header_views.emplace_back(name, value);
    dp::RequestView view;
    view.method = request.head->method;
    view.host = request.host;
    view.port = request.local_port;
    view.path = request.normalized_path;
    view.headers = &request.header_views;
    view.tls = request.tls;
    view.sni = request.sni;
    request.match = router_->Find(view);
    if (!request.match.has_value() || request.match->route == nullptr) return Answer(request, 404, kMsgNoRoute);
    return StepStatus::kContinue;
  }

 private:
  const dp::Router* router_;
};

// Kong adds the debug headers whenever the request carries Kong-Debug (any value).
class DebugHeadersStep final : public RequestStep {
 public:
  StepStatus OnRequest(RequestContext& request) const override {
    if (!request.debug_headers_allowed || request.head->Find("kong-debug") == nullptr) return StepStatus::kContinue;
    const dp::Match& match = *request.match;
    request.response_headers.Add("Kong-Route-Id", match.route->id());
    if (match.route->has_name()) request.response_headers.Add("Kong-Route-Name", match.route->name());
    if (match.service != nullptr) {
      request.response_headers.Add("Kong-Service-Id", match.service->id());
      if (match.service->has_name()) request.response_headers.Add("Kong-Service-Name", match.service->name());
    }
    return StepStatus::kContinue;
  }
};

// A plain-HTTP request: a route whose protocols lack "http" gets Kong's
// https_redirect_status_code answer.
class HttpsOnlyStep final : public RequestStep {
 public:
  StepStatus OnRequest(RequestContext& request) const override {
    if (!request.match->https_only || request.match->grpc || request.tls) return StepStatus::kContinue;
    const std::string path_and_query = request.target.has_query
                                           ? absl::StrCat(request.target.path, "?", request.target.query)
                                           : std::string(request.target.path);
    request.Respond(HttpsRequiredResponse(request.match->route->https_redirect_status_code(), request.host,
                                          path_and_query, /*close=*/false));
    return StepStatus::kStop;
  }
};

// Kong's rules for a gRPC route (protocols grpc/grpcs), in Kong's order: a gRPC request
// (content-type application/grpc*) over HTTP/1 -> 426 "Please use HTTP2 protocol" with
// `Connection: Upgrade` and `Upgrade: HTTP/2`; a request that is not gRPC -> 415; a cleartext
// request on a grpcs-only route -> HTTP 200 with grpc-status 1 (CANCELLED).
class GrpcRouteStep final : public RequestStep {
 public:
  StepStatus OnRequest(RequestContext& request) const override {
    if (!request.match->grpc) return StepStatus::kContinue;
    const std::string* content_type = request.head->Find("content-type");
    if (content_type == nullptr || !IsGrpcContentType(*content_type)) {
      return Answer(request, 415, kMsgNonGrpcRequest);
    }
    if (request.head->version_major < 2) {
      LocalResponse response;
      response.status = 426;
      response.message = kMsgHttp2Required;
      response.headers = {{"Connection", "Upgrade"}, {"Upgrade", "HTTP/2"}};
      request.Respond(response);
      return StepStatus::kStop;
    }
    if (request.match->https_only && !request.tls) {
      LocalResponse response;
      response.status = 200;
      response.grpc_status = 1;  // CANCELLED
      response.message = kMsgGrpcsRequired;
      request.Respond(response);
      return StepStatus::kStop;
    }
    return StepStatus::kContinue;
  }
};

// A ws/wss-only route (Kong EE) takes WebSocket handshakes only: anything else gets 426.
class WebSocketOnlyStep final : public RequestStep {
 public:
  StepStatus OnRequest(RequestContext& request) const override {
    if (!request.match->websocket_only || request.websocket_upgrade) return StepStatus::kContinue;
    request.Respond(WebSocketRequiredResponse());
    return StepStatus::kStop;
  }
};

class ServiceStep final : public RequestStep {
 public:
  explicit ServiceStep(const ServiceMap* services) : services_(services) {}
  StepStatus OnRequest(RequestContext& request) const override {
    auto it = request.match->service != nullptr ? services_->find(request.match->service) : services_->end();
    if (it == services_->end()) return Answer(request, 503, kMsgNoService);
    request.service = &it->second;
    return StepStatus::kContinue;
  }

 private:
  const ServiceMap* services_;
};

// The raw value of the first `name` argument of `query` (still percent-encoded), or empty.
absl::string_view FindQueryArgument(absl::string_view query, absl::string_view name) {
  absl::string_view found;
  bool seen = false;
  ForEachQueryArgument(query, [&](absl::string_view arg, absl::string_view raw_value, absl::string_view) {
    if (!seen && arg == name) {
      found = raw_value;
      seen = true;
    }
  });
  return found;
}

// Kong's uri capture `name` (a group name, or its number) of the regex path the route matched;
// empty when the route matched no regex path or the group took no part in the match.
absl::string_view UriCapture(const RequestContext& request, const std::string& name) {
  if (!request.match.has_value() || request.match->path_regex == nullptr) return {};
  const re2::RE2& regex = *request.match->path_regex;
  int group = -1;
  if (!absl::SimpleAtoi(name, &group)) {
    const std::map<std::string, int>& named = regex.NamedCapturingGroups();
    auto it = named.find(name);
    if (it == named.end()) return {};
    group = it->second;
  }
  constexpr int kMaxGroups = 32;
  if (group < 0 || group > regex.NumberOfCapturingGroups() || group >= kMaxGroups) return {};
  // What the router ran the pattern on (the rest after the literal prefix, anchored there).
  const size_t offset = request.match->path_regex_offset;
  if (offset > request.normalized_path.size()) return {};
  const absl::string_view text = absl::string_view(request.normalized_path).substr(offset);
  re2::StringPiece groups[kMaxGroups];
  if (!regex.Match(re2::StringPiece(text.data(), text.size()), 0, text.size(),
                   offset > 0 ? re2::RE2::ANCHOR_START : re2::RE2::UNANCHORED, groups, group + 1)) {
    return {};
  }
  return absl::string_view(groups[group].data(), groups[group].size());
}

// Consistent hashing's key from one of Kong's hash_on sources; empty when the request has none.
absl::string_view HashKeyFrom(const RequestContext& request, const HashSource& source) {
  switch (source.input) {
    case HashInput::kNone:
      return {};
    case HashInput::kConsumer:
      return request.consumer != nullptr ? absl::string_view(request.consumer->id()) : absl::string_view();
    case HashInput::kIp:
      return request.client_ip;
    case HashInput::kHeader: {
      const std::string* value = request.head->Find(source.name);
      return value != nullptr ? absl::string_view(*value) : absl::string_view();
    }
    case HashInput::kCookie:
      return request.head->FindCookie(source.name);
    case HashInput::kPath:
      return request.normalized_path;
    case HashInput::kQueryArg:
      return request.target.has_query ? FindQueryArgument(request.target.query, source.name) : absl::string_view();
    case HashInput::kUriCapture:
      return UriCapture(request, source.name);
  }
  return {};
}

// Kong's hash_on cookie for a request without the cookie: a random value (a version-4 UUID) that
// keys this request and comes back in Set-Cookie, so that the client's next requests stick.
absl::string_view NewHashCookie(RequestContext& request, const HashSource& source) {
  if (request.hash_cookie_value.empty()) {  // the first attempt; retries keep the same key
    request.hash_cookie_value = NewUuid();
    request.response_headers.Add(
        "Set-Cookie", absl::StrCat(source.name, "=", request.hash_cookie_value, "; Path=", source.cookie_path,
                                   "; SameSite=Lax; HttpOnly"));
  }
  return request.hash_cookie_value;
}

class DestinationStep final : public RequestStep {
 public:
  StepStatus OnRequest(RequestContext& request) const override {
    // A retry does not wait for DNS (Exchange::RerunDestinationSteps ends retries on a suspend).
    return Run(request, /*may_wait=*/request.attempt == 0);
  }
  void OnCancel(RequestContext& request) const override {
    if (request.resolver != nullptr && request.suspended_data != nullptr) {
      request.resolver->CancelWait(reinterpret_cast<uintptr_t>(request.suspended_data));
    }
  }
  bool rerun_on_retry() const override { return true; }

 private:
  StepStatus Run(RequestContext& request, bool may_wait) const {
    if (request.service->balancer != nullptr) return PickBalanced(request, *request.service->balancer, may_wait);
    if (!request.service->dns_name.empty()) return PickResolved(request, may_wait);
    request.upstream_target = request.service->destinations.Pick(request.worker_cursor, request.attempt);
    if (request.upstream_target == nullptr) return Answer(request, 503, kMsgNameResolution);
    return StepStatus::kContinue;
  }

  // The answer for name:port, or null (*pending: a query is in flight).
  static const DnsAnswerPtr* Resolve(RequestContext& request, absl::string_view name, uint16_t port, bool* pending) {
    *pending = false;
    if (request.resolver == nullptr) return nullptr;
    return request.resolver->Lookup(name, port, pending);
  }

  // Suspends until the query for name:port completes, then runs again (without waiting twice).
  StepStatus WaitFor(RequestContext& request, absl::string_view name, uint16_t port) const {
    RequestContext* r = &request;
    const DestinationStep* self = this;
    const uint64_t ticket = request.resolver->Wait(name, port, [r, self] {
      r->suspended_data = nullptr;
      r->Resume(self->Run(*r, /*may_wait=*/false));
    });
    if (ticket == 0) return NameResolutionFailed(request, name);  // no query to wait for after all
    request.suspended_data = reinterpret_cast<void*>(static_cast<uintptr_t>(ticket));
    return StepStatus::kSuspend;
  }

  static StepStatus NameResolutionFailed(RequestContext& request, absl::string_view name) {
    // At most one line per second per worker (a DNS outage fails every request of the name).
    thread_local uint64_t last_logged_ms = 0;
    thread_local uint64_t unlogged = 0;
    const uint64_t now_ms = request.loop != nullptr ? uv_now(request.loop) : 0;
    if (last_logged_ms == 0 || now_ms >= last_logged_ms + 1000) {
      PORTICO_LOG(kWarn, "proxy", "name resolution failed for ", name, " (service ",
                  request.service->name.empty() ? request.service->id : request.service->name, "): 503",
                  unlogged > 0 ? absl::StrCat(" (and ", unlogged, " more on this worker since the last line)")
                               : std::string());
      last_logged_ms = std::max<uint64_t>(now_ms, 1);
      unlogged = 0;
    } else {
      ++unlogged;
    }
    return Answer(request, 503, kMsgNameResolution);
  }

  // A service whose host is a DNS name: an address of its answer, round-robin per worker.
  StepStatus PickResolved(RequestContext& request, bool may_wait) const {
    const UpstreamService& service = *request.service;
    bool pending = false;
    const DnsAnswerPtr* answer = Resolve(request, service.dns_name, service.dns_port, &pending);
    if (answer == nullptr) {
      if (pending && may_wait) return WaitFor(request, service.dns_name, service.dns_port);
      return NameResolutionFailed(request, service.dns_name);
    }
    request.dns_answer = *answer;  // held until the request ends
    request.upstream_target = request.dns_answer->Pick(request.worker_cursor + static_cast<uint64_t>(request.attempt));
    return StepStatus::kContinue;
  }

  // Kong's ring-balancer: a target of the upstream, another one on a retry when there is one. A
  // hostname target without an answer counts as tried and another target is picked.
  StepStatus PickBalanced(RequestContext& request, const Balancer& balancer, bool may_wait) const {
    uint64_t key_hash = 0;
    if (balancer.algorithm() == Balancer::Algorithm::kConsistentHashing) {
      absl::string_view key = HashKeyFrom(request, balancer.hash_on());
      if (key.empty() && balancer.hash_on().input == HashInput::kCookie) key = NewHashCookie(request, balancer.hash_on());
      if (key.empty()) key = HashKeyFrom(request, balancer.hash_fallback());
      key_hash = Balancer::HashKey(key);
    }
    const uint32_t tried_before = request.tried_count;
    const BalancerTarget* wait_for = nullptr;  // an unresolved target whose query is in flight
    const BalancerTarget* unresolved = nullptr;
    for (size_t round = 0; round <= balancer.eligible_count(); ++round) {
      const size_t tried = std::min<size_t>(request.tried_count, RequestContext::kMaxTriedTargets);
      const int picked = balancer.Pick(request.worker_index, key_hash, {request.tried_targets, tried});
      if (picked == Balancer::kNoTarget) return Answer(request, 503, kMsgNoPeer);
      const BalancerTarget& target = balancer.target(static_cast<size_t>(picked));
      const bool repeat = std::find(request.tried_targets, request.tried_targets + tried,
                                    static_cast<uint32_t>(picked)) != request.tried_targets + tried;
      const Target* address = &target.address;
      if (!target.dns_name.empty()) {
        bool pending = false;
        const DnsAnswerPtr* answer = Resolve(request, target.dns_name, target.dns_port, &pending);
        if (answer == nullptr) {
          balancer.Release(request.worker_index, picked);
          if (!pending && target.health != nullptr) target.health->SetDnsError(true);
          unresolved = &target;
          if (pending && wait_for == nullptr) wait_for = &target;
          if (repeat && round > 0) break;  // every target was seen
          request.tried_targets[request.tried_count++ % RequestContext::kMaxTriedTargets] =
              static_cast<uint32_t>(picked);
          continue;
        }
        request.dns_answer = *answer;  // held until the request ends
        if (target.health != nullptr) target.health->SetDnsError(false);
        address = request.dns_answer->Pick(request.worker_cursor + static_cast<uint64_t>(request.attempt));
      }
      request.balancer = &balancer;
      request.balancer_target = picked;
      if (balancer.algorithm() == Balancer::Algorithm::kLatency) request.attempt_started_ns = uv_hrtime();
      request.tried_targets[request.tried_count++ % RequestContext::kMaxTriedTargets] = static_cast<uint32_t>(picked);
      request.upstream_target = address;
      request.target_host_header = target.host_header;
      return StepStatus::kContinue;
    }
    if (wait_for != nullptr && may_wait) {
      request.tried_count = tried_before;  // the run after the wait starts afresh
      return WaitFor(request, wait_for->dns_name, wait_for->dns_port);
    }
    return NameResolutionFailed(request, unresolved != nullptr ? absl::string_view(unresolved->dns_name)
                                                               : absl::string_view(balancer.upstream_name()));
  }
};

class UpstreamRequestStep final : public RequestStep {
 public:
  StepStatus OnRequest(RequestContext& request) const override {
    const dp::UpstreamService& service = *request.service;
    const dp::Match& match = *request.match;
    const std::string upstream_path =
        !request.upstream_path.empty()
            ? std::string()
            : dp::EscapeUpstreamPath(dp::BuildUpstreamPath(
                  service.has_path ? absl::string_view(service.path) : absl::string_view(), request.normalized_path,
                  match.matched_path, match.route->strip_path()));
    UpstreamRequestParams params;
    params.method = request.upstream_method;
    params.upstream_path = !request.upstream_path.empty() ? request.upstream_path : absl::string_view(upstream_path);
    params.query = request.upstream_query_set ? absl::string_view(request.upstream_query) : request.target.query;
    params.has_query = request.upstream_query_set ? !request.upstream_query.empty() : request.target.has_query;
    if (!request.upstream_headers.empty()) params.set_headers = &request.upstream_headers;
    if (!request.upstream_headers_removed.empty()) params.removed_headers = &request.upstream_headers_removed;
    params.host_header = !request.upstream_host.empty()                     ? request.upstream_host
                         : (match.route->preserve_host() && request.has_host) ? request.host
                         : !request.target_host_header.empty()                ? request.target_host_header
                                                                              : absl::string_view(service.host_header);
    request.upstream_host_header = params.host_header;
    params.client_ip = request.client_ip;
    params.client_host = request.has_host ? SplitHostHeader(request.host).name : absl::string_view();
    params.local_port = request.local_port;
    params.forwarded_proto = request.tls ? "https" : "http";
    params.websocket_upgrade = request.websocket_upgrade;
    params.chunked_body = request.head->chunked;
    params.has_content_length = request.head->has_content_length;
    params.content_length = request.head->content_length;
    // A body read whole for a step goes out with its length (a step's replacement, if any).
    if (request.request_body_read && (request.upstream_body_set || params.chunked_body || params.has_content_length)) {
      params.chunked_body = false;
      params.has_content_length = true;
      params.content_length = request.upstream_body_set ? request.upstream_body.size() : request.request_body.size();
    }
    if (service.http2) {
      request.upstream_http2_headers.Clear();  // keeps its strings' capacity
      ForEachUpstreamHttp2Header(*request.head, params, service.tls != nullptr ? "https" : "http",
                                 [&request](absl::string_view name, absl::string_view value) {
                                   request.upstream_http2_headers.AddLowercase(name, value);
                                 });
      return StepStatus::kContinue;
    }
    request.upstream_head.clear();  // keeps its capacity
    AppendUpstreamRequestHead(&request.upstream_head, *request.head, params);
    return StepStatus::kContinue;
  }
  bool rerun_on_retry() const override { return true; }
};

}  // namespace

void AddBuiltinSteps(Pipeline* pipeline, const dp::Router* router, const ServiceMap* services) {
  pipeline->Add(Phase::kRoute, std::make_shared<RouteStep>(router));
  pipeline->Add(Phase::kRoute, std::make_shared<DebugHeadersStep>());
  pipeline->Add(Phase::kAccess, std::make_shared<GrpcRouteStep>());
  pipeline->Add(Phase::kAccess, std::make_shared<HttpsOnlyStep>());
  pipeline->Add(Phase::kAccess, std::make_shared<WebSocketOnlyStep>());
  pipeline->Add(Phase::kDestination, std::make_shared<ServiceStep>(services));
  pipeline->Add(Phase::kDestination, std::make_shared<DestinationStep>());
  pipeline->Add(Phase::kUpstream, std::make_shared<UpstreamRequestStep>());
}

}  // namespace portico::dp
