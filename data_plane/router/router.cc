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
//     are indexed by a flat prefix trie; regex paths without such a literal are tried one by one
//     (up to kMaxFlatRegexes) or filtered by an RE2::Set.
//   * What the matcher reads per candidate (an Entry: rank, method bits, flags, path length, route
//     and regex pointers) is copied into every bucket the candidate is in, and each bucket (key,
//     trie, entries) is laid out contiguously in one arena. A match at 100,000 routes therefore
//     reads a hash-table slot and one bucket's few cache lines, plus the winner's route, instead of
//     chasing pointers across the heap (docs/router.md, "Memory layout").
//   * Find visits only the buckets the request's host can hit and, in them, only the entry ranges
//     whose path index matches the request path; it merges those ranges by rank and stops at the
//     first entry whose route matches in every configured field.
#include "data_plane/router/router.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <iterator>
#include <memory_resource>
#include <new>
#include <type_traits>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/base/host_port.h"
#include "common/config/validate.h"
#include "data_plane/router/prefix_trie.h"
#include "data_plane/router/route_priority.h"
#include "re2/re2.h"
#include "re2/set.h"

namespace portico::dp {
namespace {

using config::v1::Route;
using config::v1::Service;

// Up to this many literal-less regex candidates a bucket tries them one by one instead of
// building an RE2::Set: cheaper to build and to store, and bounded work per request.
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

// Matches name routes and services by their index in the config (Entry::route_index,
// service_index), never by pointer, so that a table outlives the config it was compiled from:
// a layered router (Router::BuildOn) resolves the indices of its base table in a newer config.
constexpr uint32_t kNoService = UINT32_MAX;

struct CompiledRoute {
  const Route* route = nullptr;  // build time only (the table may outlive the config)
  uint32_t route_index = 0;      // in the config's routes
  uint32_t service_index = kNoService;  // in the config's services; kNoService: none (enabled)
  bool https_only = false;
  bool grpc = false;            // Match::grpc
  bool websocket_only = false;  // Match::websocket_only
  bool has_methods = false;
  uint32_t method_mask = 0;  // MethodBit of each configured method
  // Set only when some configured method has no bit (kMethodsOutsideMask): then every method.
  std::vector<std::string> methods;
  std::vector<HostRule> hosts;
  // A candidate is only reached through a host bucket its route's host names match (or the
  // host-less bucket), so host names never need re-checking; ports do.
  bool host_ports = false;
  std::vector<HeaderRule> headers;
  std::vector<std::string> snis;  // lowercase, without a trailing dot
};

enum class PathKind : uint8_t { kNone, kPrefix, kRegex };

// Build-time form of one (route, path) pair; the matcher uses Entry.
struct Candidate {
  uint64_t priority = 0;
  const CompiledRoute* route = nullptr;
  PathKind path_kind = PathKind::kNone;
  // Plain prefix (a view of the route's path), or for kRegex the RE2 pattern ("^...", in the
  // pattern storage of Router::Build; the route's "~..." path until the regex pass sets it).
  absl::string_view path;
  const re2::RE2* regex = nullptr;         // kRegex without rest_regex (owned by Router::Impl)
  std::string regex_literal;               // kRegex: literal prefix of every match (may be "")
  // kRegex with a non-empty literal whose rest can be matched alone (RegexLiteral): the rest's
  // regex runs from path byte rest_path_offset, anchored there, instead of `regex` on the path.
  const re2::RE2* rest_regex = nullptr;
  uint32_t rest_path_offset = 0;
};

// Methods a route can be tested against with one AND; a route with another method also keeps
// its list (kMethodsOutsideMask).
constexpr absl::string_view kMaskedMethods[] = {"GET",   "HEAD",    "POST",  "PUT",    "DELETE",
                                                "PATCH", "OPTIONS", "TRACE", "CONNECT"};

uint32_t MethodBit(absl::string_view method) {
  for (size_t i = 0; i < std::size(kMaskedMethods); ++i) {
    if (method == kMaskedMethods[i]) return uint32_t{1} << i;
  }
  return 0;
}

enum EntryFlags : uint16_t {
  kHasMethods = 1,
  kMethodsOutsideMask = 2,
  kHostPorts = 4,
  kHasHeaders = 8,
  kRestRegex = 16,  // `regex` is the rest after the literal, matched from path_length, anchored
  kHttpsOnly = 32,  // Match::https_only
  kHasSnis = 64,    // checked on TLS requests only
  kWebSocketOnly = 128,  // Match::websocket_only
  kGrpc = 256,      // Match::grpc
};

// What the matcher reads for one candidate, copied into every bucket the candidate belongs to so
// that a match touches the bucket's memory and, only for a winner or an extra check, its route.
struct Entry {
  uint32_t rank = 0;         // position in Kong's order: lower is tried first
  // kPrefix: length of the plain path (the matched length). kRegex with kRestRegex: the path
  // byte where `regex` (the pattern's rest after its literal) starts matching.
  uint32_t path_length = 0;
  uint32_t method_mask = 0;  // MethodBit of each configured method
  PathKind path_kind = PathKind::kNone;
  uint16_t flags = 0;        // EntryFlags
  const CompiledRoute* route = nullptr;  // read only for the checks a flag asks for
  const re2::RE2* regex = nullptr;  // kRegex: the whole pattern, or its rest (kRestRegex)
  // Kong's priority of the candidate: orders the winners of two tables of a layered router.
  uint64_t priority = 0;
  // The result, so that a winner costs no read of its CompiledRoute (indices: see CompiledRoute).
  uint32_t route_index = 0;
  uint32_t service_index = kNoService;
};

// The literal-less regex entries of one bucket behind one RE2::Set.
struct RegexIndex {
  std::unique_ptr<re2::RE2::Set> set;
  std::vector<std::vector<Entry>> by_pattern;  // set pattern index -> entries using that pattern
};

// Everything a request reads in one host bucket. The Bucket and the arrays it views are allocated
// one after the other in the router's arena (LayOutBucket), so they share a few pages.
struct Bucket {
  absl::string_view key;                 // exact host, ".suffix" or "prefix." ("" host-less bucket)
  absl::Span<const Entry> pathless;      // rank order
  PrefixTrie path_trie;                  // plain paths and regex literal prefixes -> path_entries
  absl::Span<const Entry> path_entries;  // sorted by (trie key, rank)
  // Regex paths without a literal prefix, rank order; tried one by one while there are at most
  // kMaxFlatRegexes, else filtered first by regex_index.
  absl::Span<const Entry> regexes;
  std::unique_ptr<RegexIndex> regex_index;
};

HostRule CompileHost(absl::string_view configured) {
  HostRule rule;
  const HostAndPort split = SplitHostHeader(configured);
  rule.port = split.port;
  std::string lower = absl::AsciiStrToLower(split.name);
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

// The protocols of a route the router looks at. Protocols unset means Kong's default
// ["http","https"].
struct Protocols {
  bool http = false, https = false, grpc = false, grpcs = false, ws = false, wss = false;
};
Protocols ProtocolsOf(const Route& route) {
  Protocols p;
  if (route.protocols_size() == 0) {
    p.http = p.https = true;
    return p;
  }
  for (const std::string& protocol : route.protocols()) {
    if (protocol == "http") p.http = true;
    else if (protocol == "https") p.https = true;
    else if (protocol == "grpc") p.grpc = true;
    else if (protocol == "grpcs") p.grpcs = true;
    else if (protocol == "ws") p.ws = true;
    else if (protocol == "wss") p.wss = true;
  }
  return p;
}

re2::StringPiece Piece(absl::string_view text) { return re2::StringPiece(text.data(), text.size()); }

// What the router knows of a path regex `pattern` ("^" + regex, as RoutePathRegexPattern builds
// it) from its text alone.
struct RegexLiteral {
  // Every match starts with this text, so the regex can be filed in the prefix trie under it.
  // Conservative: stops at the first metacharacter, class escape or non-ASCII byte, drops a
  // literal made optional by the quantifier after it, and is "" for any pattern containing '|'
  // (Kong's textual "^" anchors only the first alternative).
  std::string literal;
  // When `rest_splittable`: pattern.substr(rest_offset), matched anchored at path byte
  // `rest_path_offset` (<= literal.size()), matches exactly what the whole pattern matches after
  // the literal's first rest_path_offset bytes. Then the matcher runs only that smaller regex on
  // the rest of the path (the trie already checked the literal), which reads far fewer DFA states.
  bool rest_splittable = false;
  size_t rest_offset = 0;
  size_t rest_path_offset = 0;
};

// True when `rest` means the same alone, anchored at its start, as it does after a literal:
// nothing in it may look at the text before it ('^', \A, \b, \B outside a character class).
// Conservative: a rest with a POSIX class ("[:") or a quoted run (\Q...\E), whose brackets this
// scan does not follow, is never split.
bool RestIsContextFree(absl::string_view rest) {
  if (absl::StrContains(rest, "[:") || absl::StrContains(rest, "\\Q")) return false;
  bool in_class = false;
  size_t class_body = 0;  // index of the first byte of the current class's body
  for (size_t j = 0; j < rest.size(); ++j) {
    const char c = rest[j];
    if (c == '\\') {
      if (j + 1 >= rest.size()) return false;
      const char escaped = rest[j + 1];
      if (!in_class && (escaped == 'A' || escaped == 'b' || escaped == 'B')) return false;
      ++j;
      continue;
    }
    if (in_class) {
      if (c == ']' && j > class_body) in_class = false;
      continue;
    }
    if (c == '^') return false;
    if (c == '[') {
      in_class = true;
      class_body = j + 1;
      if (class_body < rest.size() && rest[class_body] == '^') ++class_body;
      // "[]..." and "[^]...": that first ']' is a member, not the end (j > class_body skips it).
    }
  }
  return !in_class;
}

RegexLiteral AnalyzeRegexLiteral(absl::string_view pattern) {
  RegexLiteral result;
  if (!absl::StartsWith(pattern, "^") || absl::StrContains(pattern, '|')) return result;
  std::string& literal = result.literal;
  size_t i = 1;
  size_t rest_offset = 1;         // where the part after the splittable literal starts
  size_t rest_path_offset = 0;
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
    // c at least once: it belongs to the trie key, but the rest starts at c ("c+...").
    if (next < pattern.size() && pattern[next] == '+') break;
    i = next;
    rest_offset = i;
    rest_path_offset = literal.size();
  }
  if (!literal.empty() && RestIsContextFree(pattern.substr(rest_offset))) {
    result.rest_splittable = true;
    result.rest_offset = rest_offset;
    result.rest_path_offset = rest_path_offset;
  }
  return result;
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
// `method_bit` is MethodBit(request.method).
bool EntryMatches(const Entry& entry, const RequestView& request, uint32_t method_bit, absl::string_view host,
                  std::optional<uint16_t> host_port, size_t* matched_length) {
  if ((entry.flags & kHasMethods) != 0 && (entry.method_mask & method_bit) == 0) {
    if ((entry.flags & kMethodsOutsideMask) == 0) return false;
    const std::vector<std::string>& methods = entry.route->methods;
    if (std::find(methods.begin(), methods.end(), request.method) == methods.end()) return false;
  }
  switch (entry.path_kind) {
    case PathKind::kNone: *matched_length = 0; break;
    case PathKind::kPrefix: *matched_length = entry.path_length; break;  // the trie matched it
    case PathKind::kRegex: {
      re2::StringPiece whole;
      if ((entry.flags & kRestRegex) != 0) {
        // The trie matched the literal; run the rest on what follows it.
        const absl::string_view rest = request.path.substr(entry.path_length);
        if (!entry.regex->Match(Piece(rest), 0, rest.size(), re2::RE2::ANCHOR_START, &whole, 1)) return false;
        *matched_length = entry.path_length + whole.size();
        break;
      }
      if (!entry.regex->Match(Piece(request.path), 0, request.path.size(), re2::RE2::UNANCHORED, &whole, 1)) {
        return false;
      }
      *matched_length = whole.size();  // Kong strips the match's length from the start
      break;
    }
  }
  if ((entry.flags & kHostPorts) != 0) {
    bool any = false;
    for (const HostRule& rule : entry.route->hosts) {
      if (HostRuleMatches(rule, host, host_port, request.port)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  if ((entry.flags & kHasSnis) != 0 && request.tls) {
    const std::vector<std::string>& snis = entry.route->snis;
    if (std::find(snis.begin(), snis.end(), request.sni) == snis.end()) return false;
  }
  return (entry.flags & kHasHeaders) == 0 || HeadersMatch(entry.route->headers, request);
}

Entry MakeEntry(const Candidate& candidate, uint32_t rank) {
  const CompiledRoute& route = *candidate.route;
  Entry entry;
  entry.rank = rank;
  entry.path_kind = candidate.path_kind;
  entry.path_length = candidate.path_kind == PathKind::kPrefix ? static_cast<uint32_t>(candidate.path.size()) : 0;
  entry.route = &route;
  entry.priority = candidate.priority;
  entry.route_index = route.route_index;
  entry.service_index = route.service_index;
  if (route.https_only) entry.flags |= kHttpsOnly;
  if (route.grpc) entry.flags |= kGrpc;
  if (route.websocket_only) entry.flags |= kWebSocketOnly;
  entry.regex = candidate.regex;
  if (candidate.rest_regex != nullptr) {
    entry.regex = candidate.rest_regex;
    entry.path_length = candidate.rest_path_offset;
    entry.flags |= kRestRegex;
  }
  if (route.has_methods) {
    entry.flags |= kHasMethods;
    entry.method_mask = route.method_mask;
    if (!route.methods.empty()) entry.flags |= kMethodsOutsideMask;
  }
  if (route.host_ports) entry.flags |= kHostPorts;
  if (!route.headers.empty()) entry.flags |= kHasHeaders;
  if (!route.snis.empty()) entry.flags |= kHasSnis;
  return entry;
}

// `candidates` in Kong's order: priority descending, then route id descending, then path length
// descending (then the order they were made in). `routes` holds every candidate's route. The ids
// are compared once per route (not per comparison): a ConfigSet lists routes sorted by id
// (`routes_sorted_by_id`, strictly ascending, checked by the caller); otherwise they are sorted here.
std::vector<Candidate> SortCandidates(std::vector<Candidate> candidates, const std::vector<CompiledRoute>& routes,
                                      bool routes_sorted_by_id) {
  // id_rank[i]: the position of routes[i]'s id among the ids (equal ids share one).
  std::vector<uint32_t> id_rank(routes.size());
  if (routes_sorted_by_id) {
    for (size_t i = 0; i < routes.size(); ++i) id_rank[i] = static_cast<uint32_t>(i);
  } else {
    std::vector<uint32_t> order(routes.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
    std::sort(order.begin(), order.end(),
              [&routes](uint32_t a, uint32_t b) { return routes[a].route->id() < routes[b].route->id(); });
    uint32_t rank = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      if (i > 0 && routes[order[i - 1]].route->id() != routes[order[i]].route->id()) rank = static_cast<uint32_t>(i);
      id_rank[order[i]] = rank;
    }
  }
  struct Key {
    uint64_t priority;
    uint32_t id_rank;
    uint32_t path_size;
    uint32_t index;  // into `candidates`
  };
  std::vector<Key> keys;
  keys.reserve(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    keys.push_back(Key{c.priority, id_rank[static_cast<size_t>(c.route - routes.data())],
                       static_cast<uint32_t>(c.path.size()), static_cast<uint32_t>(i)});
  }
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    if (a.id_rank != b.id_rank) return a.id_rank > b.id_rank;
    if (a.path_size != b.path_size) return a.path_size > b.path_size;
    return a.index < b.index;
  });
  std::vector<Candidate> out;
  out.reserve(candidates.size());
  for (const Key& key : keys) out.push_back(std::move(candidates[key.index]));
  return out;
}

// The candidate ranks of one bucket, gathered before the bucket is laid out.
struct BucketDraft {
  std::string key;
  std::vector<uint32_t> pathless, with_prefix, regexes;  // ascending ranks
};

void AppendUnique(std::vector<uint32_t>& list, uint32_t rank) {
  if (list.empty() || list.back() != rank) list.push_back(rank);
}

// Entries live in the arena, which never runs destructors.
static_assert(std::is_trivially_copyable_v<Entry> && std::is_trivially_destructible_v<Entry>);

// Lays out one bucket in `memory`: the Bucket, its key, trie and entries, one after the other.
Bucket* LayOutBucket(const BucketDraft& draft, const std::vector<Candidate>& candidates,
                     std::pmr::memory_resource* memory) {
  Bucket* bucket = new (memory->allocate(sizeof(Bucket), alignof(Bucket))) Bucket;
  if (!draft.key.empty()) {
    char* key = static_cast<char*>(memory->allocate(draft.key.size(), 1));
    std::memcpy(key, draft.key.data(), draft.key.size());
    bucket->key = absl::string_view(key, draft.key.size());
  }
  // The entries of `ranks`, made in place in the arena.
  auto entries_of = [&candidates, memory](const auto& ranks) -> absl::Span<const Entry> {
    if (ranks.empty()) return {};
    Entry* place = static_cast<Entry*>(memory->allocate(ranks.size() * sizeof(Entry), alignof(Entry)));
    for (size_t i = 0; i < ranks.size(); ++i) new (place + i) Entry(MakeEntry(candidates[ranks[i]], ranks[i]));
    return absl::Span<const Entry>(place, ranks.size());
  };
  bucket->pathless = entries_of(draft.pathless);

  // Trie keys: the plain path, or the regex's literal prefix. Sorted by (key, rank) so that the
  // entries of one key form a rank-ordered range.
  struct TrieKey {
    uint64_t head;  // the key's first 8 bytes, big-endian, zero-padded: orders most keys alone
    absl::string_view key;
    uint32_t rank;
  };
  std::vector<TrieKey> by_key;
  by_key.reserve(draft.with_prefix.size());
  for (uint32_t rank : draft.with_prefix) {
    const Candidate& candidate = candidates[rank];
    const absl::string_view key =
        candidate.path_kind == PathKind::kRegex ? candidate.regex_literal : candidate.path;
    uint64_t head = 0;
    for (size_t i = 0; i < 8; ++i) {
      head = (head << 8) | (i < key.size() ? static_cast<unsigned char>(key[i]) : 0u);
    }
    by_key.push_back(TrieKey{head, key, rank});
  }
  // Heads that differ order their keys as the bytes do (a shorter key's padding is 0, the least).
  std::sort(by_key.begin(), by_key.end(), [](const TrieKey& a, const TrieKey& b) {
    if (a.head != b.head) return a.head < b.head;
    if (a.key != b.key) return a.key < b.key;
    return a.rank < b.rank;
  });
  std::vector<absl::string_view> keys;
  std::vector<uint32_t> ranks;
  keys.reserve(by_key.size());
  ranks.reserve(by_key.size());
  for (const TrieKey& k : by_key) {
    keys.push_back(k.key);
    ranks.push_back(k.rank);
  }
  bucket->path_trie = PrefixTrie(keys, memory);
  bucket->path_entries = entries_of(ranks);
  const absl::Span<const Entry> regexes = entries_of(draft.regexes);
  bucket->regexes = regexes;

  if (draft.regexes.size() > kMaxFlatRegexes) {
    auto index = std::make_unique<RegexIndex>();
    re2::RE2::Options options;
    options.set_log_errors(false);
    options.set_max_mem(kRegexSetMaxMem);
    index->set = std::make_unique<re2::RE2::Set>(options, re2::RE2::UNANCHORED);
    absl::flat_hash_map<absl::string_view, int> pattern_index;
    bool ok = true;
    for (const Entry& entry : regexes) {
      const absl::string_view pattern = candidates[entry.rank].path;
      auto [it, inserted] = pattern_index.try_emplace(pattern, static_cast<int>(index->by_pattern.size()));
      if (inserted) {
        std::string error;
        if (index->set->Add(Piece(pattern), &error) != it->second) ok = false;
        index->by_pattern.emplace_back();
      }
      index->by_pattern[static_cast<size_t>(it->second)].push_back(entry);
    }
    if (ok && index->set->Compile()) bucket->regex_index = std::move(index);
    // else: no index; every regex of the bucket is tried in rank order.
  }
  return bucket;
}

// Upstream of the router's arena. Blocks of 2 MiB or more are mapped aligned to 2 MiB and marked
// MADV_HUGEPAGE, so the kernel may back them with transparent huge pages: a match that reads a
// random bucket among 100,000 routes then misses the TLB far less. Smaller blocks, and any block
// the mapping fails for, come from the heap.
class HugePageBlocks final : public std::pmr::memory_resource {
 public:
  ~HugePageBlocks() override {
    for (const auto& [address, size] : mapped_) munmap(address, size);
  }

 private:
  static constexpr size_t kHugePage = size_t{2} << 20;

  void* do_allocate(size_t bytes, size_t alignment) override {
    if (bytes >= kHugePage && alignment <= kHugePage) {
      const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
      void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (raw != MAP_FAILED) {
        const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
        const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
        if (aligned > start) munmap(raw, aligned - start);
        const size_t tail = start + size + kHugePage - (aligned + size);
        if (tail > 0) munmap(reinterpret_cast<void*>(aligned + size), tail);
        void* block = reinterpret_cast<void*>(aligned);
        madvise(block, size, MADV_HUGEPAGE);  // advisory: ignored where THP is off
        mapped_.emplace(block, size);
        return block;
      }
    }
    return std::pmr::new_delete_resource()->allocate(bytes, alignment);
  }

  void do_deallocate(void* pointer, size_t bytes, size_t alignment) override {
    auto it = mapped_.find(pointer);
    if (it != mapped_.end()) {
      munmap(it->first, it->second);
      mapped_.erase(it);
      return;
    }
    std::pmr::new_delete_resource()->deallocate(pointer, bytes, alignment);
  }

  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }

 public:
  size_t mapped_bytes() const {
    size_t total = 0;
    for (const auto& [address, size] : mapped_) total += size;
    return total;
  }

 private:
  absl::flat_hash_map<void*, size_t> mapped_;
};

uint64_t DotCountBit(size_t dots) { return uint64_t{1} << std::min<size_t>(dots, 63); }
uint64_t DotCountBit(absl::string_view key) {
  return DotCountBit(static_cast<size_t>(std::count(key.begin(), key.end(), '.')));
}

// Arena bytes a bucket needs (Bucket, key, trie, entries), generously: the arena is sized from
// this sum so that the buckets land in one block.
size_t EstimateBucketBytes(const BucketDraft& draft) {
  const size_t entries = draft.pathless.size() + draft.with_prefix.size() + draft.regexes.size();
  return sizeof(Bucket) + draft.key.size() + 64 + entries * (sizeof(Entry) + 2 * 25 + 32);
}

// One compiled route table: what Router::Build makes of a whole config, and what a layered
// router makes of the routes changed since its base. Once built it holds no pointer into the config.
struct Table {
  ~Table() {
    for (Bucket* bucket : buckets) bucket->~Bucket();  // their memory goes with `arena`
  }

  std::vector<CompiledRoute> routes;  // by ascending route_index
  std::vector<std::unique_ptr<const re2::RE2>> regexes;  // path regexes, referenced by entries
  // Holds every Bucket and its arrays, laid out bucket after bucket so that one request's reads
  // stay within a few pages. Declared before `buckets` and the maps that point into it.
  HugePageBlocks arena_blocks;
  std::unique_ptr<std::pmr::monotonic_buffer_resource> arena;
  std::vector<Bucket*> buckets;  // buckets[0]: routes without host rules
  // Keys view Bucket::key.
  absl::flat_hash_map<absl::string_view, const Bucket*> by_exact_host;
  absl::flat_hash_map<absl::string_view, const Bucket*> by_host_suffix;
  absl::flat_hash_map<absl::string_view, const Bucket*> by_host_prefix;
  // Bit n set: some key of the map above has n dots (n >= 63: bit 63). A request host is looked
  // up only with the suffixes / prefixes whose dot count some key has.
  uint64_t suffix_dot_counts = 0;
  uint64_t prefix_dot_counts = 0;
  // Whole tables only: a hash of every route id in config order (one per route of the config),
  // and whether the ids are strictly ascending, against which BuildOn checks a newer config.
  std::vector<uint64_t> id_hashes;
  bool ids_sorted = false;
};

uint64_t HashId(absl::string_view id) { return absl::Hash<absl::string_view>{}(id); }

struct Hit {
  const Entry* entry = nullptr;
  size_t matched_length = 0;
};

// The base routes a layered router skips (at most kMaxLayeredRoutes): a 4,096-bit filter, small
// enough to stay in cache from one request to the next, in front of their sorted indices. (A bit
// per base route would be a cache miss per entry visited at 100,000 routes.)
class RouteMask {
 public:
  RouteMask() = default;
  explicit RouteMask(std::vector<uint32_t> indices) : indices_(std::move(indices)) {
    std::sort(indices_.begin(), indices_.end());
    for (uint32_t i : indices_) filter_[(i >> 6) & 63] |= uint64_t{1} << (i & 63);
  }
  bool empty() const { return indices_.empty(); }
  bool Contains(uint32_t index) const {
    if ((filter_[(index >> 6) & 63] >> (index & 63) & 1) == 0) return false;
    return std::binary_search(indices_.begin(), indices_.end(), index);
  }
  const std::vector<uint32_t>& indices() const { return indices_; }  // ascending

 private:
  uint64_t filter_[64] = {};
  std::vector<uint32_t> indices_;
};

// Compiles the routes of `set` at the indices `only` (ascending), or every route when `only` is
// null (a whole table, with what BuildOn checks a newer config against).
absl::StatusOr<std::unique_ptr<Table>> BuildTable(const ConfigSet& set, const std::vector<uint32_t>* only) {
  auto table = std::make_unique<Table>();

  // A whole table looks services up in a map; a few routes by search in the (sorted) list.
  absl::flat_hash_map<absl::string_view, uint32_t> services;
  if (only == nullptr) {
    services.reserve(set.services.size());
    for (size_t i = 0; i < set.services.size(); ++i) services[set.services[i].id()] = static_cast<uint32_t>(i);
  }
  auto service_index_of = [&set, &services, only](absl::string_view id) -> std::optional<uint32_t> {
    if (only == nullptr) {
      auto it = services.find(id);
      return it == services.end() ? std::nullopt : std::optional<uint32_t>(it->second);
    }
    auto it = std::lower_bound(set.services.begin(), set.services.end(), id,
                               [](const Service& service, absl::string_view key) { return service.id() < key; });
    if (it != set.services.end() && it->id() == id) return static_cast<uint32_t>(it - set.services.begin());
    for (size_t i = 0; i < set.services.size(); ++i) {  // a list not sorted by id
      if (set.services[i].id() == id) return static_cast<uint32_t>(i);
    }
    return std::nullopt;
  };
  const size_t route_total = only != nullptr ? only->size() : set.routes.size();
  if (only == nullptr) {
    table->id_hashes.reserve(set.routes.size());
    table->ids_sorted = true;
    for (size_t i = 0; i < set.routes.size(); ++i) {
      table->id_hashes.push_back(HashId(set.routes[i].id()));
      if (i > 0 && !(set.routes[i - 1].id() < set.routes[i].id())) table->ids_sorted = false;
    }
  }

  table->routes.reserve(route_total);  // Candidates point into this vector: no reallocation.
  // One candidate per path (or one without a path), made right after its route is compiled,
  // while the route's protobuf is still in the cache.
  std::vector<Candidate> candidates;
  candidates.reserve(set.routes.size());
  auto add_candidates = [&candidates](const CompiledRoute& compiled) {
    const Route& route = *compiled.route;
    if (route.paths().values_size() == 0) {
      Candidate candidate;
      candidate.priority = RoutePriority(route, "");
      candidate.route = &compiled;
      candidates.push_back(std::move(candidate));
      return;
    }
    for (const std::string& path : route.paths().values()) {
      Candidate candidate;
      candidate.priority = RoutePriority(route, path);
      candidate.route = &compiled;
      // A regex path's pattern and RE2 are made below, once every route is compiled.
      candidate.path_kind = IsRegexPath(path) ? PathKind::kRegex : PathKind::kPrefix;
      candidate.path = path;
      candidates.push_back(std::move(candidate));
    }
  };
  bool routes_sorted_by_id = true;  // strictly ascending ids (as a ConfigSet lists them)
  for (size_t n = 0; n < route_total; ++n) {
    const uint32_t route_index = only != nullptr ? (*only)[n] : static_cast<uint32_t>(n);
    const Route& route = set.routes[route_index];
    // Kong's gRPC routes match like HTTP ones; GrpcRouteStep then refuses requests that are not
    // gRPC over HTTP/2. Stream routes (tcp, tls, udp, tls_passthrough) are not routed here.
    const Protocols protocols = ProtocolsOf(route);
    const bool grpc = protocols.grpc || protocols.grpcs;
    const bool http = protocols.http;
    // ws/wss (Kong EE) routes take WebSocket upgrades only; the protocol groups never mix.
    const bool websocket_only = protocols.ws || protocols.wss;
    if (!grpc && !http && !protocols.https && !websocket_only) continue;
    CompiledRoute compiled;
    compiled.route = &route;
    compiled.route_index = route_index;
    compiled.grpc = grpc;
    compiled.https_only = grpc ? !protocols.grpc : websocket_only ? !protocols.ws : !http;
    compiled.websocket_only = websocket_only;
    if (route.has_service_id()) {
      if (std::optional<uint32_t> service = service_index_of(route.service_id()); service.has_value()) {
        if (!set.services[*service].enabled()) continue;  // disabled service: not routable
        compiled.service_index = *service;
      }
    }
    bool methods_outside_mask = false;
    for (const std::string& method : route.methods().values()) {
      const uint32_t bit = MethodBit(method);
      compiled.has_methods = true;
      compiled.method_mask |= bit;
      if (bit == 0) methods_outside_mask = true;
    }
    if (methods_outside_mask) {
      compiled.methods.assign(route.methods().values().begin(), route.methods().values().end());
    }
    compiled.hosts.reserve(static_cast<size_t>(route.hosts().values_size()));
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
    for (const std::string& sni : route.snis().values()) {
      absl::string_view name = sni;
      if (!name.empty() && name.back() == '.') name.remove_suffix(1);
      compiled.snis.push_back(absl::AsciiStrToLower(name));
    }
    // Header names are matched in a fixed order; sort so that the result does not depend on the
    // protobuf map's iteration order.
    std::sort(compiled.headers.begin(), compiled.headers.end(),
              [](const HeaderRule& a, const HeaderRule& b) { return a.name < b.name; });
    if (!table->routes.empty() && !(table->routes.back().route->id() < route.id())) routes_sorted_by_id = false;
    table->routes.push_back(std::move(compiled));
    add_candidates(table->routes.back());
  }


  // The path regexes, apart from the loop above: their allocations would sit between the
  // compiled routes' (and push the routes' protobufs out of the cache). Patterns and literals
  // first, then the RE2s, so that the matcher's RE2s are allocated next to each other.
  std::deque<std::string> patterns;  // Candidate::path of kRegex candidates views these
  std::vector<RegexLiteral> literals;  // of the kRegex candidates, in order
  for (Candidate& candidate : candidates) {
    if (candidate.path_kind != PathKind::kRegex) continue;
    patterns.push_back(RoutePathRegexPattern(candidate.path));
    candidate.path = patterns.back();
    literals.push_back(AnalyzeRegexLiteral(candidate.path));
    candidate.regex_literal = literals.back().literal;
  }
  size_t regex_index = 0;
  for (Candidate& candidate : candidates) {
    if (candidate.path_kind != PathKind::kRegex) continue;
    const Route& route = *candidate.route->route;
    const RegexLiteral& literal = literals[regex_index++];
    // The literal holds only plain characters at the top level, so "^" + literal + rest
    // compiles exactly when the rest does: compiling the rest alone is enough. Anything else
    // (and a rest that fails, for the error message) compiles the whole pattern.
    absl::StatusOr<std::unique_ptr<const re2::RE2>> rest =
        literal.rest_splittable ? CompileRegex(route, std::string(candidate.path.substr(literal.rest_offset)))
                                : absl::StatusOr<std::unique_ptr<const re2::RE2>>(nullptr);
    if (rest.ok() && *rest != nullptr) {
      candidate.rest_regex = rest->get();
      candidate.rest_path_offset = static_cast<uint32_t>(literal.rest_path_offset);
      table->regexes.push_back(*std::move(rest));
    } else {
      absl::StatusOr<std::unique_ptr<const re2::RE2>> regex = CompileRegex(route, std::string(candidate.path));
      if (!regex.ok()) return regex.status();
      candidate.regex = regex->get();
      table->regexes.push_back(*std::move(regex));
    }
  }
  candidates = SortCandidates(std::move(candidates), table->routes, routes_sorted_by_id);

  // Gather each bucket's ranks, then lay the buckets out one after the other.
  std::vector<BucketDraft> drafts(1);  // drafts[0]: the bucket without host rules
  absl::flat_hash_map<std::string, uint32_t> exact_drafts, suffix_drafts, prefix_drafts;
  auto draft_for = [&drafts](absl::flat_hash_map<std::string, uint32_t>& map, const std::string& key) {
    auto [it, inserted] = map.try_emplace(key, static_cast<uint32_t>(drafts.size()));
    if (inserted) {
      drafts.emplace_back();
      drafts.back().key = key;
    }
    return it->second;
  };
  auto add_to_draft = [&drafts, &candidates](uint32_t draft_index, uint32_t rank) {
    BucketDraft& draft = drafts[draft_index];
    const Candidate& candidate = candidates[rank];
    switch (candidate.path_kind) {
      case PathKind::kNone: AppendUnique(draft.pathless, rank); break;
      case PathKind::kPrefix: AppendUnique(draft.with_prefix, rank); break;
      case PathKind::kRegex:
        AppendUnique(candidate.regex_literal.empty() ? draft.regexes : draft.with_prefix, rank);
        break;
    }
  };
  for (size_t i = 0; i < candidates.size(); ++i) {
    const uint32_t rank = static_cast<uint32_t>(i);
    const CompiledRoute& route = *candidates[i].route;
    if (route.hosts.empty()) {
      add_to_draft(0, rank);
      continue;
    }
    for (const HostRule& rule : route.hosts) {
      switch (rule.kind) {
        case HostKind::kExact: add_to_draft(draft_for(exact_drafts, rule.text), rank); break;
        case HostKind::kSuffix: add_to_draft(draft_for(suffix_drafts, rule.text), rank); break;
        case HostKind::kPrefix: add_to_draft(draft_for(prefix_drafts, rule.text), rank); break;
      }
    }
  }
  size_t arena_bytes = 4096;
  for (const BucketDraft& draft : drafts) arena_bytes += EstimateBucketBytes(draft);
  table->arena = std::make_unique<std::pmr::monotonic_buffer_resource>(arena_bytes, &table->arena_blocks);
  table->buckets.reserve(drafts.size());
  for (const BucketDraft& draft : drafts) {
    table->buckets.push_back(LayOutBucket(draft, candidates, table->arena.get()));
  }
  auto index_buckets = [&table](const absl::flat_hash_map<std::string, uint32_t>& drafts_by_key,
                               absl::flat_hash_map<absl::string_view, const Bucket*>& map) {
    map.reserve(drafts_by_key.size());
    for (const auto& [key, draft_index] : drafts_by_key) {
      const Bucket* bucket = table->buckets[draft_index];
      map.emplace(bucket->key, bucket);
    }
  };
  index_buckets(exact_drafts, table->by_exact_host);
  index_buckets(suffix_drafts, table->by_host_suffix);
  index_buckets(prefix_drafts, table->by_host_prefix);
  for (const auto& [key, bucket] : table->by_host_suffix) table->suffix_dot_counts |= DotCountBit(key);
  for (const auto& [key, bucket] : table->by_host_prefix) table->prefix_dot_counts |= DotCountBit(key);
  for (CompiledRoute& compiled : table->routes) compiled.route = nullptr;  // the config may go first
  return table;
}


// The first entry of `table` (Kong's order) that matches, skipping the routes whose index has its
// index `masked` contains (null: none). `host` is lowercase, without its port.
Hit FindIn(const Table& table, const RequestView& request, absl::string_view host,
           std::optional<uint16_t> host_port, uint32_t method_bit, const RouteMask* masked) {
  // One cursor per rank-ordered list of entries that can match; merged by rank below.
  struct Cursor {
    const Entry* next;
    const Entry* end;
  };
  absl::InlinedVector<Cursor, 16> cursors;
  auto add = [&cursors](const Entry* begin, const Entry* end) {
    if (begin != end) cursors.push_back(Cursor{begin, end});
  };
  auto add_list = [&add](absl::Span<const Entry> list) { add(list.data(), list.data() + list.size()); };
  auto add_bucket = [&](const Bucket& bucket) {
    add_list(bucket.pathless);
    const Entry* path_entries = bucket.path_entries.data();
    bucket.path_trie.ForEachPrefixOf(request.path, [&add, path_entries](uint32_t begin, uint32_t end) {
      add(path_entries + begin, path_entries + end);
    });
    if (bucket.regexes.empty()) return;
    if (bucket.regex_index == nullptr) {
      add_list(bucket.regexes);
      return;
    }
    const RegexIndex& index = *bucket.regex_index;
    thread_local std::vector<int> matched_patterns;
    matched_patterns.clear();
    re2::RE2::Set::ErrorInfo error;
    // First a yes/no pass (no per-pattern bookkeeping), then the full pass only on a hit.
    if (index.set->Match(Piece(request.path), nullptr, &error)) {
      if (index.set->Match(Piece(request.path), &matched_patterns, &error)) {
        for (int pattern : matched_patterns) add_list(index.by_pattern[static_cast<size_t>(pattern)]);
      } else {
        add_list(bucket.regexes);
      }
    } else if (error.kind != re2::RE2::Set::kNoError) {
      add_list(bucket.regexes);  // the DFA ran out of memory: try each regex
    }
  };
  auto add_from = [&](const absl::flat_hash_map<absl::string_view, const Bucket*>& map, absl::string_view key) {
    auto it = map.find(key);
    if (it != map.end()) add_bucket(*it->second);
  };
  add_bucket(*table.buckets[0]);
  if (!host.empty()) {
    add_from(table.by_exact_host, host);
    if (table.suffix_dot_counts != 0 || table.prefix_dot_counts != 0) {
      // A suffix starting at the host's k-th dot (from 0) holds (dots - k) dots, a prefix ending
      // there k + 1: look a map up only for counts some key has (DotCountBit clamps at 63, so
      // very long hosts are still looked up, never skipped).
      const size_t dots = static_cast<size_t>(std::count(host.begin(), host.end(), '.'));
      for (size_t i = 0, k = 0; i < host.size(); ++i) {
        if (host[i] != '.') continue;
        // "*.example.com" needs at least one label before ".example.com": i > 0.
        if (i > 0 && (table.suffix_dot_counts & DotCountBit(dots - k)) != 0) {
          add_from(table.by_host_suffix, host.substr(i));
        }
        if ((table.prefix_dot_counts & DotCountBit(k + 1)) != 0) {
          add_from(table.by_host_prefix, host.substr(0, i + 1));
        }
        ++k;
      }
    }
  }

  while (true) {
    Cursor* best = nullptr;
    for (Cursor& cursor : cursors) {
      if (cursor.next == cursor.end) continue;
      if (best == nullptr || cursor.next->rank < best->next->rank) best = &cursor;
    }
    if (best == nullptr) return Hit{};
    const Entry& entry = *best->next++;
    if (masked != nullptr && masked->Contains(entry.route_index)) continue;
    size_t matched_length = 0;
    if (EntryMatches(entry, request, method_bit, host, host_port, &matched_length)) {
      return Hit{&entry, matched_length};
    }
  }
}

// The k-th (from 0) number missing from an ascending list of distinct numbers, given the list as
// shifted[j] = list[j] - j (ascending too): k plus the count of list members below the answer.
uint32_t NthMissing(const std::vector<uint32_t>& shifted, uint32_t k) {
  return k + static_cast<uint32_t>(std::upper_bound(shifted.begin(), shifted.end(), k) - shifted.begin());
}

std::optional<uint32_t> IndexOfRoute(const ConfigSet& set, absl::string_view id) {
  auto it = std::lower_bound(set.routes.begin(), set.routes.end(), id,
                             [](const Route& route, absl::string_view key) { return route.id() < key; });
  if (it == set.routes.end() || it->id() != id) return std::nullopt;
  return static_cast<uint32_t>(it - set.routes.begin());
}

// Most routes a layered router holds apart from its base (changed since the base was built);
// beyond, BuildOn builds a whole table again.
constexpr size_t kMaxLayeredRoutes = 64;

}  // namespace

// A router is a whole table (`base`) read in `config`; a layered one (BuildOn) also skips the
// base's routes changed since it was built and adds the overlay, compiled from those routes as
// `config` has them. A route that exists in both configs and did not change sits in the same
// order among the unchanged ones of each (ids ascending), which is how a base index is mapped to
// an index of `config`.
struct Router::Impl {
  std::shared_ptr<const ConfigSet> config;  // what matches point into
  std::shared_ptr<const Table> base;        // built from `config`, or from an older config (layered)
  bool layered = false;
  size_t route_count = 0;
  // Layered only:
  std::unique_ptr<const Table> overlay;  // null when no changed route exists in `config`
  RouteMask masked;                       // the base's routes changed or gone (M: masked.indices())
  std::vector<uint32_t> masked_shifted;   // M[j] - j
  std::vector<uint32_t> changed_indices;  // indices in `config` of the changed routes it has (A)
  std::vector<uint32_t> changed_shifted;  // A[j] - j
  // The ids changed since the base was built, ascending, each with its index in the base's
  // config (-1: it was not there).
  std::vector<std::pair<std::string, int64_t>> changed;

  // An unchanged route's index in `config` from its index in the base's config, and back.
  uint32_t ConfigIndexOfBase(uint32_t base_index) const {
    const std::vector<uint32_t>& m = masked.indices();
    const auto below = std::lower_bound(m.begin(), m.end(), base_index);
    return NthMissing(changed_shifted, base_index - static_cast<uint32_t>(below - m.begin()));
  }
  uint32_t BaseIndexOfConfig(uint32_t config_index) const {
    const auto below = std::lower_bound(changed_indices.begin(), changed_indices.end(), config_index);
    return NthMissing(masked_shifted, config_index - static_cast<uint32_t>(below - changed_indices.begin()));
  }
};

Router::Router(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Router::~Router() = default;

size_t Router::route_count() const { return impl_->route_count; }

size_t Router::mapped_bytes() const {
  return impl_->base->arena_blocks.mapped_bytes() +
         (impl_->overlay != nullptr ? impl_->overlay->arena_blocks.mapped_bytes() : 0);
}

bool Router::layered() const { return impl_->layered; }

absl::StatusOr<std::unique_ptr<const Router>> Router::Build(std::shared_ptr<const ConfigSet> config) {
  if (config == nullptr) return absl::InvalidArgumentError("router: null config");
  absl::StatusOr<std::unique_ptr<Table>> table = BuildTable(*config, nullptr);
  if (!table.ok()) return table.status();
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  impl->route_count = (*table)->routes.size();
  impl->base = *std::move(table);
  return std::unique_ptr<const Router>(new Router(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<const Router>> Router::BuildOn(const Router& previous,
                                                              std::shared_ptr<const ConfigSet> config,
                                                              const RouteChanges& changes) {
  if (config == nullptr) return absl::InvalidArgumentError("router: null config");
  const Impl& before = *previous.impl_;
  const Table& base = *before.base;
  // Services are read into every compiled route (enabled, index): any change builds it all.
  if (changes.services_changed || !base.ids_sorted) return Build(std::move(config));
  std::vector<std::pair<std::string, int64_t>> changed = before.changed;
  for (absl::string_view id : changes.route_ids) {
    auto at = std::lower_bound(changed.begin(), changed.end(), id,
                               [](const auto& entry, absl::string_view key) { return entry.first < key; });
    if (at != changed.end() && at->first == id) continue;
    int64_t base_index = -1;
    // Not changed since the base, so where the previous config has it, the base has it too.
    if (std::optional<uint32_t> index = IndexOfRoute(*before.config, id); index.has_value()) {
      const uint32_t in_base = before.BaseIndexOfConfig(*index);
      if (in_base >= base.id_hashes.size() || base.id_hashes[in_base] != HashId(id)) return Build(std::move(config));
      base_index = in_base;
    }
    changed.emplace(at, std::string(id), base_index);
    if (changed.size() > kMaxLayeredRoutes) return Build(std::move(config));
  }

  const ConfigSet& set = *config;
  auto impl = std::make_unique<Impl>();
  {
    std::vector<uint32_t> masked;
    for (const auto& [id, base_index] : changed) {
      if (base_index >= 0) masked.push_back(static_cast<uint32_t>(base_index));
      if (std::optional<uint32_t> index = IndexOfRoute(set, id); index.has_value()) {
        impl->changed_indices.push_back(*index);
      }
    }
    impl->masked = RouteMask(std::move(masked));
  }
  const std::vector<uint32_t>& masked_indices = impl->masked.indices();
  std::sort(impl->changed_indices.begin(), impl->changed_indices.end());
  // `config` must be the base's config with exactly these routes changed: same count, and every
  // other route's id where the mapping puts it, ids ascending. Anything else builds it all.
  if (set.routes.size() + masked_indices.size() != base.id_hashes.size() + impl->changed_indices.size()) {
    return Build(std::move(config));
  }
  for (size_t i = 1; i < set.routes.size(); ++i) {
    if (!(set.routes[i - 1].id() < set.routes[i].id())) return Build(std::move(config));
  }
  {
    size_t m = 0, a = 0, index = 0;
    for (size_t i = 0; i < base.id_hashes.size(); ++i) {
      if (m < masked_indices.size() && masked_indices[m] == i) {
        ++m;
        continue;
      }
      while (a < impl->changed_indices.size() && impl->changed_indices[a] == index) {
        ++a;
        ++index;
      }
      if (index >= set.routes.size() || base.id_hashes[i] != HashId(set.routes[index].id())) {
        return Build(std::move(config));
      }
      ++index;
    }
  }
  for (size_t j = 0; j < masked_indices.size(); ++j) {
    impl->masked_shifted.push_back(masked_indices[j] - static_cast<uint32_t>(j));
  }
  for (size_t j = 0; j < impl->changed_indices.size(); ++j) {
    impl->changed_shifted.push_back(impl->changed_indices[j] - static_cast<uint32_t>(j));
  }
  size_t masked_compiled = 0;  // masked routes the base compiled (not all routes are routable)
  for (uint32_t i : masked_indices) {
    auto it = std::lower_bound(base.routes.begin(), base.routes.end(), i,
                               [](const CompiledRoute& route, uint32_t key) { return route.route_index < key; });
    if (it != base.routes.end() && it->route_index == i) ++masked_compiled;
  }
  if (!impl->changed_indices.empty()) {
    absl::StatusOr<std::unique_ptr<Table>> overlay = BuildTable(set, &impl->changed_indices);
    if (!overlay.ok()) return overlay.status();
    if (!(*overlay)->routes.empty()) impl->overlay = *std::move(overlay);
  }
  impl->route_count = base.routes.size() - masked_compiled + (impl->overlay != nullptr ? impl->overlay->routes.size() : 0);
  impl->changed = std::move(changed);
  impl->base = before.base;
  impl->config = std::move(config);
  impl->layered = true;
  return std::unique_ptr<const Router>(new Router(std::move(impl)));
}

std::optional<Match> Router::Find(const RequestView& request) const {
  const HostAndPort split_host = SplitHostHeader(request.host);
  const absl::string_view raw_host = split_host.name;
  const std::optional<uint16_t> host_port = split_host.port;
  char lowered[256];
  std::string lowered_long;
  absl::string_view host = raw_host;
  if (std::any_of(raw_host.begin(), raw_host.end(), [](char c) { return absl::ascii_isupper(c); })) {
    if (raw_host.size() <= sizeof(lowered)) {
      for (size_t i = 0; i < raw_host.size(); ++i) lowered[i] = absl::ascii_tolower(raw_host[i]);
      host = absl::string_view(lowered, raw_host.size());
    } else {
      lowered_long = absl::AsciiStrToLower(raw_host);
      host = lowered_long;
    }
  }

  const Impl& impl = *impl_;
  const uint32_t method_bit = MethodBit(request.method);
  Hit hit = FindIn(*impl.base, request, host, host_port, method_bit, impl.masked.empty() ? nullptr : &impl.masked);
  uint32_t route_index = hit.entry != nullptr ? hit.entry->route_index : 0;
  if (impl.layered) {
    if (hit.entry != nullptr) route_index = impl.ConfigIndexOfBase(route_index);
    if (impl.overlay != nullptr) {
      const Hit top = FindIn(*impl.overlay, request, host, host_port, method_bit, nullptr);
      // Kong's order across the two tables: priority, then route id, both descending (one route
      // is in one table only).
      if (top.entry != nullptr &&
          (hit.entry == nullptr || top.entry->priority > hit.entry->priority ||
           (top.entry->priority == hit.entry->priority &&
            impl.config->routes[top.entry->route_index].id() > impl.config->routes[route_index].id()))) {
        hit = top;
        route_index = top.entry->route_index;
      }
    }
  }
  if (hit.entry == nullptr) return std::nullopt;
  const Entry& entry = *hit.entry;
  Match match;
  match.route = &impl.config->routes[route_index];
  match.service = entry.service_index == kNoService ? nullptr : &impl.config->services[entry.service_index];
  match.matched_path = request.path.substr(0, hit.matched_length);
  match.https_only = (entry.flags & kHttpsOnly) != 0;
  match.grpc = (entry.flags & kGrpc) != 0;
  match.websocket_only = (entry.flags & kWebSocketOnly) != 0;
  if (entry.path_kind == PathKind::kRegex) {
    match.path_regex = entry.regex;
    match.path_regex_offset = (entry.flags & kRestRegex) != 0 ? entry.path_length : 0;
  }
  return match;
}

}  // namespace portico::dp
