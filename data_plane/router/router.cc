// Router compilation and matching (see router.h and docs/router.md).
//
// Compiled shape:
//   * every routable route becomes one or more Candidates: one per plain path, one per regex path,
//     or a single path-less one. Each Candidate carries Kong's 64-bit priority for its path
//     (route_priority.h), so "a route with several paths is ranked by the path that matched".
//   * all Candidates are sorted once by (priority desc, route id desc) and numbered (`rank`);
//     a lower rank is tried first. This is atc-router's BTreeMap<(priority, uuid)> iterated in
//     reverse. Deviation: Kong gives each split path group a derived UUID; we keep the route's id.
//   * Candidates are put in host Buckets by the host rules of their route: exact host, "*.suffix"
//     (keyed by ".suffix"), "prefix.*" (keyed by "prefix."), or the bucket without host rule.
//     Inside a bucket, plain paths, and regex paths by the literal text every match starts with,
//     are indexed by a prefix trie; regex paths without such a literal go to an RE2::Set (small
//     buckets keep flat lists instead). Every index entry is a rank-sorted list.
//   * Find visits only the buckets the request's host can hit and, in them, only the lists whose
//     path index matches the request path; it merges those lists by rank and stops at the first
//     Candidate whose route matches in every configured field.
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
#include "common/config/validate.h"
#include "data_plane/router/prefix_trie.h"
#include "data_plane/router/route_priority.h"
#include "re2/re2.h"
#include "re2/set.h"

namespace portico::router {
namespace {

using config::v1::Route;
using config::v1::Service;

// Up to this many plain-path (regex) candidates a bucket keeps a flat list instead of a trie
// (an RE2::Set): cheaper to build and to store, and bounded work per request.
constexpr size_t kMaxFlatPrefixes = 8;
constexpr size_t kMaxFlatRegexes = 4;
// Memory budget of one bucket's RE2::Set DFA; when exceeded a match falls back to trying the
// bucket's regexes one by one (still correct, slower).
constexpr int64_t kRegexSetMaxMem = 64 << 20;

enum class HostKind { kExact, kSuffix, kPrefix };

struct HostRule {
  HostKind kind = HostKind::kExact;
  std::string text;  // lowercase; kSuffix: ".example.com"; kPrefix: "example."
  std::optional<uint16_t> port;
};

struct HeaderRule {
  std::string name;                                // lowercase
  std::vector<std::string> values;                 // lowercase plain values
  std::vector<std::unique_ptr<const re2::RE2>> regexes;  // "~*" values (lowercased pattern)
};

struct CompiledRoute {
  const Route* route = nullptr;
  const Service* service = nullptr;
  bool https_only = false;
  std::vector<std::string> methods;
  std::vector<HostRule> hosts;
  // A candidate is only reached through a host bucket its route's host names match (or the
  // host-less bucket), so host names never need re-checking; ports do.
  bool host_ports = false;
  std::vector<HeaderRule> headers;
};

enum class PathKind { kNone, kPrefix, kRegex };

struct Candidate {
  uint64_t priority = 0;
  const CompiledRoute* route = nullptr;
  PathKind path_kind = PathKind::kNone;
  std::string path;                        // plain prefix, or the RE2 pattern ("^...")
  std::unique_ptr<const re2::RE2> regex;   // kRegex only
  std::string regex_literal;               // kRegex: literal prefix of every match (may be "")
};

using RankList = std::vector<uint32_t>;  // candidate ranks, ascending

// The regex candidates of one bucket behind one RE2::Set.
struct RegexIndex {
  std::unique_ptr<re2::RE2::Set> set;
  std::vector<RankList> by_pattern;  // set pattern index -> candidates using that pattern
  RankList all;                      // fallback when the set cannot run (DFA out of memory)
};

struct Bucket {
  RankList pathless;
  // Plain paths and regex paths with a literal prefix: a flat list while there are at most
  // kMaxFlatPrefixes, else a trie keyed by the plain path / the regex's literal prefix.
  RankList flat_prefixes;
  std::unique_ptr<PrefixTrie> prefix_trie;
  // Regex paths without a literal prefix: a flat list up to kMaxFlatRegexes, else an RE2::Set.
  RankList flat_regexes;
  std::unique_ptr<RegexIndex> regex_index;
};

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
bool HasProtocol(const Route& route, absl::string_view protocol) {
  if (route.protocols_size() == 0) return protocol == "http" || protocol == "https";
  return std::find(route.protocols().begin(), route.protocols().end(), protocol) !=
         route.protocols().end();
}

re2::StringPiece Piece(absl::string_view text) { return re2::StringPiece(text.data(), text.size()); }

// The literal text every match of `pattern` ("^" + regex, as RoutePathRegexPattern builds it) must
// start with, so regex paths can be indexed in the prefix trie. Conservative: stops at the first
// metacharacter, class escape or non-ASCII byte, drops a literal made optional by the quantifier
// after it, and gives "" for any pattern containing '|' (Kong's textual "^" anchors only the first
// alternative).
std::string RegexLiteralPrefix(absl::string_view pattern) {
  if (!absl::StartsWith(pattern, "^") || absl::StrContains(pattern, '|')) return "";
  std::string literal;
  size_t i = 1;
  while (i < pattern.size()) {
    char c = pattern[i];
    size_t width = 1;
    if (c == '\\') {
      if (i + 1 >= pattern.size()) break;
      const char escaped = pattern[i + 1];
      if (absl::ascii_isalnum(escaped) || static_cast<unsigned char>(escaped) >= 0x80) break;  // \d, \Q, ...
      c = escaped;
      width = 2;
    } else if (static_cast<unsigned char>(c) >= 0x80 || absl::StrContains(".[](){}*+?^$", c)) {
      break;
    }
    const size_t next = i + width;
    if (next < pattern.size() && absl::StrContains("*?{", pattern[next])) break;  // optional
    literal.push_back(c);
    if (next < pattern.size() && pattern[next] == '+') break;  // c at least once; stop after it
    i = next;
  }
  return literal;
}

absl::StatusOr<std::unique_ptr<const re2::RE2>> CompileRegex(const Route& route, const std::string& pattern) {
  auto regex = std::make_unique<const re2::RE2>(Piece(pattern), re2::RE2::Quiet);
  if (!regex->ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("route ", route.id(), ": invalid regex '", pattern, "': ", regex->error()));
  }
  return regex;
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

bool HeaderValueMatches(const HeaderRule& rule, absl::string_view value) {
  for (const std::string& wanted : rule.values) {
    if (absl::EqualsIgnoreCase(value, wanted)) return true;
  }
  if (rule.regexes.empty()) return false;
  // Kong: any(lower(http.headers.x)) ~ "<lowercased regex>", unanchored.
  std::string lowered = absl::AsciiStrToLower(value);
  for (const auto& regex : rule.regexes) {
    if (re2::RE2::PartialMatch(lowered, *regex)) return true;
  }
  return false;
}

bool HeadersMatch(const std::vector<HeaderRule>& rules, const RequestView& request) {
  for (const HeaderRule& rule : rules) {
    bool found = false;
    if (request.headers != nullptr) {
      for (const auto& [name, value] : *request.headers) {
        if (absl::EqualsIgnoreCase(name, rule.name) && HeaderValueMatches(rule, value)) {
          found = true;
          break;
        }
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
    case PathKind::kRegex: {
      re2::StringPiece whole;
      if (!candidate.regex->Match(Piece(request.path), 0, request.path.size(), re2::RE2::UNANCHORED,
                                  &whole, 1)) {
        return false;
      }
      *matched_length = whole.size();  // Kong strips the match's length from the start
      break;
    }
  }
  if (!route.methods.empty() &&
      std::find(route.methods.begin(), route.methods.end(), request.method) == route.methods.end()) {
    return false;
  }
  if (route.host_ports) {
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

void AppendUnique(RankList& list, uint32_t rank) {
  if (list.empty() || list.back() != rank) list.push_back(rank);
}

// Builds the path indexes of a bucket whose flat lists hold every candidate (rank order).
void IndexBucket(Bucket& bucket, const std::vector<Candidate>& candidates) {
  if (bucket.flat_prefixes.size() > kMaxFlatPrefixes) {
    bucket.prefix_trie = std::make_unique<PrefixTrie>();
    for (uint32_t rank : bucket.flat_prefixes) {
      const Candidate& candidate = candidates[rank];
      bucket.prefix_trie->Insert(candidate.path_kind == PathKind::kRegex ? candidate.regex_literal : candidate.path,
                                 rank);
    }
    bucket.prefix_trie->Shrink();
    RankList().swap(bucket.flat_prefixes);
  }
  if (bucket.flat_regexes.size() > kMaxFlatRegexes) {
    auto index = std::make_unique<RegexIndex>();
    re2::RE2::Options options;
    options.set_log_errors(false);
    options.set_max_mem(kRegexSetMaxMem);
    index->set = std::make_unique<re2::RE2::Set>(options, re2::RE2::UNANCHORED);
    absl::flat_hash_map<absl::string_view, int> pattern_index;
    bool ok = true;
    for (uint32_t rank : bucket.flat_regexes) {
      const std::string& pattern = candidates[rank].path;
      auto [it, inserted] = pattern_index.try_emplace(pattern, static_cast<int>(index->by_pattern.size()));
      if (inserted) {
        std::string error;
        if (index->set->Add(Piece(pattern), &error) != it->second) ok = false;
        index->by_pattern.emplace_back();
      }
      index->by_pattern[static_cast<size_t>(it->second)].push_back(rank);
    }
    if (ok && index->set->Compile()) {
      index->all = std::move(bucket.flat_regexes);
      RankList().swap(bucket.flat_regexes);
      bucket.regex_index = std::move(index);
    }  // else: keep the flat list (every regex tried in rank order)
  }
  bucket.pathless.shrink_to_fit();
  bucket.flat_prefixes.shrink_to_fit();
  bucket.flat_regexes.shrink_to_fit();
}

}  // namespace

struct Router::Impl {
  std::shared_ptr<const ConfigSet> config;
  std::vector<CompiledRoute> routes;
  std::vector<Candidate> candidates;  // sorted; a candidate's rank is its index
  std::vector<Bucket> buckets;        // buckets[0]: routes without host rules
  absl::flat_hash_map<std::string, uint32_t> by_exact_host;
  absl::flat_hash_map<std::string, uint32_t> by_host_suffix;
  absl::flat_hash_map<std::string, uint32_t> by_host_prefix;
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
  services.reserve(set.services.size());
  for (const Service& service : set.services) services[service.id()] = &service;

  impl->routes.reserve(set.routes.size());  // Candidates point into this vector: no reallocation.
  for (const Route& route : set.routes) {
    const bool http = HasProtocol(route, "http");
    if (!http && !HasProtocol(route, "https")) continue;  // grpc/stream routes: no HTTP/1.1 routing
    CompiledRoute compiled;
    compiled.route = &route;
    compiled.https_only = !http;
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
      if (compiled.hosts.back().port.has_value()) compiled.host_ports = true;
    }
    for (const auto& [name, list] : route.headers().values()) {
      HeaderRule rule;
      rule.name = absl::AsciiStrToLower(name);
      for (const std::string& value : list.values()) {
        if (absl::StartsWith(value, "~*")) {
          absl::StatusOr<std::unique_ptr<const re2::RE2>> regex =
              CompileRegex(route, HeaderValueRegexPattern(value));
          if (!regex.ok()) return regex.status();
          rule.regexes.push_back(*std::move(regex));
        } else {
          rule.values.push_back(absl::AsciiStrToLower(value));
        }
      }
      compiled.headers.push_back(std::move(rule));
    }
    // Header names are matched in a fixed order; sort so that the result does not depend on the
    // protobuf map's iteration order.
    std::sort(compiled.headers.begin(), compiled.headers.end(),
              [](const HeaderRule& a, const HeaderRule& b) { return a.name < b.name; });
    impl->routes.push_back(std::move(compiled));
  }

  for (const CompiledRoute& compiled : impl->routes) {
    const Route& route = *compiled.route;
    if (route.paths().values_size() == 0) {
      Candidate candidate;
      candidate.priority = RoutePriority(route, "");
      candidate.route = &compiled;
      impl->candidates.push_back(std::move(candidate));
      continue;
    }
    for (const std::string& path : route.paths().values()) {
      Candidate candidate;
      candidate.priority = RoutePriority(route, path);
      candidate.route = &compiled;
      if (IsRegexPath(path)) {
        candidate.path_kind = PathKind::kRegex;
        candidate.path = RoutePathRegexPattern(path);
        absl::StatusOr<std::unique_ptr<const re2::RE2>> regex = CompileRegex(route, candidate.path);
        if (!regex.ok()) return regex.status();
        candidate.regex = *std::move(regex);
        candidate.regex_literal = RegexLiteralPrefix(candidate.path);
      } else {
        candidate.path_kind = PathKind::kPrefix;
        candidate.path = path;
      }
      impl->candidates.push_back(std::move(candidate));
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

  impl->buckets.emplace_back();  // the bucket without host rules
  auto bucket_for = [&impl](absl::flat_hash_map<std::string, uint32_t>& map, const std::string& key) {
    auto [it, inserted] = map.try_emplace(key, static_cast<uint32_t>(impl->buckets.size()));
    if (inserted) impl->buckets.emplace_back();
    return it->second;
  };
  auto add_to_bucket = [&impl](uint32_t bucket_index, uint32_t rank) {
    Bucket& bucket = impl->buckets[bucket_index];
    switch (impl->candidates[rank].path_kind) {
      case PathKind::kNone: AppendUnique(bucket.pathless, rank); break;
      case PathKind::kPrefix: AppendUnique(bucket.flat_prefixes, rank); break;
      case PathKind::kRegex:
        AppendUnique(impl->candidates[rank].regex_literal.empty() ? bucket.flat_regexes : bucket.flat_prefixes,
                     rank);
        break;
    }
  };
  for (size_t i = 0; i < impl->candidates.size(); ++i) {
    const uint32_t rank = static_cast<uint32_t>(i);
    const CompiledRoute& route = *impl->candidates[i].route;
    if (route.hosts.empty()) {
      add_to_bucket(0, rank);
      continue;
    }
    for (const HostRule& rule : route.hosts) {
      switch (rule.kind) {
        case HostKind::kExact: add_to_bucket(bucket_for(impl->by_exact_host, rule.text), rank); break;
        case HostKind::kSuffix: add_to_bucket(bucket_for(impl->by_host_suffix, rule.text), rank); break;
        case HostKind::kPrefix: add_to_bucket(bucket_for(impl->by_host_prefix, rule.text), rank); break;
      }
    }
  }
  for (Bucket& bucket : impl->buckets) IndexBucket(bucket, impl->candidates);
  impl->buckets.shrink_to_fit();
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
    const uint32_t* next;
    const uint32_t* end;
  };
  absl::InlinedVector<Cursor, 16> cursors;
  auto add = [&cursors](const RankList& list) {
    if (!list.empty()) cursors.push_back(Cursor{list.data(), list.data() + list.size()});
  };
  auto add_bucket = [&](const Bucket& bucket) {
    add(bucket.pathless);
    add(bucket.flat_prefixes);
    if (bucket.prefix_trie != nullptr) bucket.prefix_trie->ForEachPrefixOf(request.path, add);
    add(bucket.flat_regexes);
    if (bucket.regex_index != nullptr) {
      const RegexIndex& index = *bucket.regex_index;
      thread_local std::vector<int> matched_patterns;
      matched_patterns.clear();
      re2::RE2::Set::ErrorInfo error;
      // First a yes/no pass (no per-pattern bookkeeping), then the full pass only on a hit.
      if (index.set->Match(Piece(request.path), nullptr, &error)) {
        if (index.set->Match(Piece(request.path), &matched_patterns, &error)) {
          for (int pattern : matched_patterns) add(index.by_pattern[static_cast<size_t>(pattern)]);
        } else {
          add(index.all);
        }
      } else if (error.kind != re2::RE2::Set::kNoError) {
        add(index.all);  // the DFA ran out of memory: try each regex
      }
    }
  };
  auto add_from = [&](const absl::flat_hash_map<std::string, uint32_t>& map, absl::string_view key) {
    auto it = map.find(key);
    if (it != map.end()) add_bucket(impl_->buckets[it->second]);
  };
  add_bucket(impl_->buckets[0]);
  if (!host.empty()) {
    add_from(impl_->by_exact_host, host);
    if (!impl_->by_host_suffix.empty() || !impl_->by_host_prefix.empty()) {
      for (size_t i = 0; i < host.size(); ++i) {
        if (host[i] != '.') continue;
        // "*.example.com" needs at least one label before ".example.com": i > 0.
        if (i > 0) add_from(impl_->by_host_suffix, host.substr(i));
        add_from(impl_->by_host_prefix, host.substr(0, i + 1));
      }
    }
  }

  while (true) {
    Cursor* best = nullptr;
    for (Cursor& cursor : cursors) {
      if (cursor.next == cursor.end) continue;
      if (best == nullptr || *cursor.next < *best->next) best = &cursor;
    }
    if (best == nullptr) return std::nullopt;
    const uint32_t rank = *best->next++;
    const Candidate& candidate = impl_->candidates[rank];
    size_t matched_length = 0;
    if (CandidateMatches(candidate, request, host, host_port, &matched_length)) {
      Match match;
      match.route = candidate.route->route;
      match.service = candidate.route->service;
      match.matched_path = request.path.substr(0, matched_length);
      match.https_only = candidate.route->https_only;
      return match;
    }
  }
}

}  // namespace portico::router
