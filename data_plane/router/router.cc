// Router compilation and matching (issue-2 scope; see router.h).
//
// Compiled shape:
//   * every routable route becomes one or more Candidates: one per plain path, one per regex path,
//     or a single path-less one. Each Candidate carries Kong's 64-bit priority for its path
//     (route_priority.h), so "a route with several paths is ranked by the path that matched".
//   * all Candidates are sorted once by (priority desc, route id desc) and numbered (`rank`);
//     a lower rank is tried first. This is atc-router's BTreeMap<(priority, uuid)> iterated in
//     reverse. Deviation: Kong gives each split path group a derived UUID; we keep the route's id.
//   * Candidates are indexed by the host rules of their route: exact host, "*.suffix" (keyed by
//     ".suffix"), "prefix.*" (keyed by "prefix."), or "no host rule". A request only visits the
//     lists its host can hit, merged by rank, and stops at the first Candidate whose route
//     matches in every configured field.
#include "data_plane/router/router.h"

#include <algorithm>
#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "data_plane/router/route_priority.h"

namespace portico::router {
namespace {

using config::v1::Route;
using config::v1::Service;

enum class HostKind { kExact, kSuffix, kPrefix };

struct HostRule {
  HostKind kind = HostKind::kExact;
  std::string text;  // lowercase; kSuffix: ".example.com"; kPrefix: "example."
  std::optional<uint16_t> port;
};

struct HeaderRule {
  std::string name;                 // lowercase
  std::vector<std::string> values;  // lowercase plain values; "~*" regex values are not kept yet
};

struct CompiledRoute {
  const Route* route = nullptr;
  const Service* service = nullptr;
  std::vector<std::string> methods;
  std::vector<HostRule> hosts;
  std::vector<HeaderRule> headers;
};

enum class PathKind { kNone, kPrefix, kRegex };

struct Candidate {
  uint64_t priority = 0;
  uint32_t rank = 0;
  const CompiledRoute* route = nullptr;
  PathKind path_kind = PathKind::kNone;
  std::string path;  // plain prefix, or the regex without '~'
};

using CandidateList = std::vector<const Candidate*>;

// Splits "name:port" / "[v6]:port". Without a valid numeric port, the whole text is the name.
void SplitHostPort(absl::string_view text, absl::string_view* name, std::optional<uint16_t>* port) {
  *name = text;
  port->reset();
  size_t colon = absl::string_view::npos;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close != absl::string_view::npos && close + 1 < text.size() && text[close + 1] == ':') {
      colon = close + 1;
    }
  } else {
    colon = text.rfind(':');
    if (colon != absl::string_view::npos && text.find(':') != colon) colon = absl::string_view::npos;
  }
  if (colon == absl::string_view::npos) return;
  const absl::string_view digits = text.substr(colon + 1);
  uint32_t value = 0;
  if (digits.empty() || digits.size() > 5 || !absl::SimpleAtoi(digits, &value) || value > 65535 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return absl::ascii_isdigit(c); })) {
    return;
  }
  *name = text.substr(0, colon);
  *port = static_cast<uint16_t>(value);
}

HostRule CompileHost(absl::string_view configured) {
  HostRule rule;
  absl::string_view name;
  SplitHostPort(configured, &name, &rule.port);
  std::string lower = absl::AsciiStrToLower(name);
  if (absl::StartsWith(lower, "*.")) {
    rule.kind = HostKind::kSuffix;
    rule.text = lower.substr(1);
  } else if (absl::EndsWith(lower, ".*")) {
    rule.kind = HostKind::kPrefix;
    rule.text = lower.substr(0, lower.size() - 1);
  } else {
    rule.kind = HostKind::kExact;
    rule.text = std::move(lower);
  }
  return rule;
}

// Protocols unset means Kong's default ["http","https"].
bool ServesPlainHttp(const Route& route) {
  if (route.protocols_size() == 0) return true;
  return std::find(route.protocols().begin(), route.protocols().end(), "http") !=
         route.protocols().end();
}

bool HostRuleMatches(const HostRule& rule, absl::string_view host,
                     std::optional<uint16_t> host_port, uint16_t local_port) {
  bool name_matches = false;
  switch (rule.kind) {
    case HostKind::kExact: name_matches = host == rule.text; break;
    case HostKind::kSuffix: name_matches = absl::EndsWith(host, rule.text); break;
    case HostKind::kPrefix: name_matches = absl::StartsWith(host, rule.text); break;
  }
  if (!name_matches) return false;
  if (!rule.port.has_value()) return true;
  return (host_port.has_value() && *host_port == *rule.port) || local_port == *rule.port;
}

bool HeadersMatch(const std::vector<HeaderRule>& rules, const RequestView& request) {
  for (const HeaderRule& rule : rules) {
    bool found = false;
    if (request.headers != nullptr) {
      for (const auto& [name, value] : *request.headers) {
        if (!absl::EqualsIgnoreCase(name, rule.name)) continue;
        for (const std::string& wanted : rule.values) {
          if (absl::EqualsIgnoreCase(value, wanted)) {
            found = true;
            break;
          }
        }
        if (found) break;
      }
    }
    if (!found) return false;
  }
  return true;
}

// Every configured field must match; within a field any value may. `host` is lowercase, no port.
bool CandidateMatches(const Candidate& candidate, const RequestView& request, absl::string_view host,
                      std::optional<uint16_t> host_port, size_t* matched_length) {
  const CompiledRoute& route = *candidate.route;
  switch (candidate.path_kind) {
    case PathKind::kNone: *matched_length = 0; break;
    case PathKind::kPrefix:
      if (!absl::StartsWith(request.path, candidate.path)) return false;
      *matched_length = candidate.path.size();
      break;
    case PathKind::kRegex:
      return false;  // Regex paths are the router issue's; they never match yet.
  }
  if (!route.methods.empty() &&
      std::find(route.methods.begin(), route.methods.end(), request.method) == route.methods.end()) {
    return false;
  }
  if (!route.hosts.empty()) {
    bool any = false;
    for (const HostRule& rule : route.hosts) {
      if (HostRuleMatches(rule, host, host_port, request.port)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  return HeadersMatch(route.headers, request);
}

void AppendUnique(CandidateList& list, const Candidate* candidate) {
  if (list.empty() || list.back() != candidate) list.push_back(candidate);
}

}  // namespace

struct Router::Impl {
  std::shared_ptr<const ConfigSet> config;
  std::vector<CompiledRoute> routes;
  std::vector<Candidate> candidates;  // sorted; candidates[i].rank == i
  absl::flat_hash_map<std::string, CandidateList> by_exact_host;
  absl::flat_hash_map<std::string, CandidateList> by_host_suffix;
  absl::flat_hash_map<std::string, CandidateList> by_host_prefix;
  CandidateList without_host;
};

Router::Router(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Router::~Router() = default;

size_t Router::route_count() const { return impl_->routes.size(); }

absl::StatusOr<std::unique_ptr<const Router>> Router::Build(std::shared_ptr<const ConfigSet> config) {
  if (config == nullptr) return absl::InvalidArgumentError("router: null config");
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  const ConfigSet& set = *impl->config;

  absl::flat_hash_map<absl::string_view, const Service*> services;
  for (const Service& service : set.services) services[service.id()] = &service;

  impl->routes.reserve(set.routes.size());  // Candidates point into this vector: no reallocation.
  for (const Route& route : set.routes) {
    if (!ServesPlainHttp(route)) continue;  // https-only: redirect behaviour is the router issue's
    CompiledRoute compiled;
    compiled.route = &route;
    if (route.has_service_id()) {
      auto it = services.find(route.service_id());
      if (it != services.end()) {
        if (!it->second->enabled()) continue;  // disabled service: not routable
        compiled.service = it->second;
      }
    }
    for (const std::string& method : route.methods().values()) compiled.methods.push_back(method);
    for (const std::string& host : route.hosts().values()) {
      if (host.empty()) return absl::InvalidArgumentError(absl::StrCat("route ", route.id(), ": empty host"));
      compiled.hosts.push_back(CompileHost(host));
    }
    for (const auto& [name, list] : route.headers().values()) {
      HeaderRule rule;
      rule.name = absl::AsciiStrToLower(name);
      for (const std::string& value : list.values()) {
        if (absl::StartsWith(value, "~*")) continue;
        rule.values.push_back(absl::AsciiStrToLower(value));
      }
      compiled.headers.push_back(std::move(rule));
    }
    impl->routes.push_back(std::move(compiled));
  }

  for (const CompiledRoute& compiled : impl->routes) {
    const Route& route = *compiled.route;
    if (route.paths().values_size() == 0) {
      impl->candidates.push_back(Candidate{RoutePriority(route, ""), 0, &compiled, PathKind::kNone, ""});
      continue;
    }
    for (const std::string& path : route.paths().values()) {
      const bool regex = IsRegexPath(path);
      impl->candidates.push_back(Candidate{RoutePriority(route, path), 0, &compiled,
                                           regex ? PathKind::kRegex : PathKind::kPrefix,
                                           regex ? path.substr(1) : path});
    }
  }
  std::sort(impl->candidates.begin(), impl->candidates.end(),
            [](const Candidate& a, const Candidate& b) {
              if (a.priority != b.priority) return a.priority > b.priority;
              const std::string& a_id = a.route->route->id();
              const std::string& b_id = b.route->route->id();
              if (a_id != b_id) return a_id > b_id;
              return a.path.size() > b.path.size();
            });
  for (size_t i = 0; i < impl->candidates.size(); ++i) {
    Candidate& candidate = impl->candidates[i];
    candidate.rank = static_cast<uint32_t>(i);
    if (candidate.route->hosts.empty()) {
      impl->without_host.push_back(&candidate);
      continue;
    }
    for (const HostRule& rule : candidate.route->hosts) {
      switch (rule.kind) {
        case HostKind::kExact: AppendUnique(impl->by_exact_host[rule.text], &candidate); break;
        case HostKind::kSuffix: AppendUnique(impl->by_host_suffix[rule.text], &candidate); break;
        case HostKind::kPrefix: AppendUnique(impl->by_host_prefix[rule.text], &candidate); break;
      }
    }
  }
  return std::unique_ptr<const Router>(new Router(std::move(impl)));
}

std::optional<Match> Router::Find(const RequestView& request) const {
  absl::string_view raw_host;
  std::optional<uint16_t> host_port;
  SplitHostPort(request.host, &raw_host, &host_port);
  std::string lowered;
  absl::string_view host = raw_host;
  if (std::any_of(raw_host.begin(), raw_host.end(), [](char c) { return absl::ascii_isupper(c); })) {
    lowered = absl::AsciiStrToLower(raw_host);
    host = lowered;
  }

  struct Cursor {
    const Candidate* const* next;
    const Candidate* const* end;
  };
  absl::InlinedVector<Cursor, 8> cursors;
  auto add = [&cursors](const CandidateList& list) {
    if (!list.empty()) cursors.push_back(Cursor{list.data(), list.data() + list.size()});
  };
  auto add_from = [&add](const absl::flat_hash_map<std::string, CandidateList>& map,
                         absl::string_view key) {
    auto it = map.find(key);
    if (it != map.end()) add(it->second);
  };
  add(impl_->without_host);
  if (!host.empty()) {
    add_from(impl_->by_exact_host, host);
    if (!impl_->by_host_suffix.empty() || !impl_->by_host_prefix.empty()) {
      for (size_t i = 0; i < host.size(); ++i) {
        if (host[i] != '.') continue;
        add_from(impl_->by_host_suffix, host.substr(i));
        add_from(impl_->by_host_prefix, host.substr(0, i + 1));
      }
    }
  }

  while (true) {
    Cursor* best = nullptr;
    for (Cursor& cursor : cursors) {
      if (cursor.next == cursor.end) continue;
      if (best == nullptr || (*cursor.next)->rank < (*best->next)->rank) best = &cursor;
    }
    if (best == nullptr) return std::nullopt;
    const Candidate* candidate = *best->next++;
    size_t matched_length = 0;
    if (CandidateMatches(*candidate, request, host, host_port, &matched_length)) {
      Match match;
      match.route = candidate->route->route;
      match.service = candidate->route->service;
      match.matched_path = request.path.substr(0, matched_length);
      return match;
    }
  }
}

}  // namespace portico::router
