// The indexed router (host buckets, prefix tries, RE2::Sets) agrees with a brute-force reference
// that tries every route path in Kong's priority order, on generated configs large enough to use
// every index kind.
#include <algorithm>
#include <random>
#include <tuple>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "data_plane/router/route_priority.h"
#include "data_plane/router/router.h"
#include "gtest/gtest.h"
#include "re2/re2.h"
#include "tests/unit/data_plane/router/router_test_util.h"

namespace portico::dp {
namespace {

using testing_util::FindRoute;
using testing_util::MakeConfig;
using testing_util::MakeRoute;
using testing_util::Request;
using testing_util::RouteSpec;

bool HostMatches(const std::string& rule, const std::string& host) {
  if (absl::StartsWith(rule, "*.")) return host.size() > rule.size() - 1 && absl::EndsWith(host, rule.substr(1));
  if (absl::EndsWith(rule, ".*")) return absl::StartsWith(host, rule.substr(0, rule.size() - 1));
  return rule == host;
}

// Brute force: returns {route id, matched path} of the winner, or {"", ""}.
std::pair<std::string, std::string> Reference(const std::vector<RouteSpec>& specs, const Request& request) {
  uint64_t best_priority = 0;
  std::string best_id, best_matched;
  bool found = false;
  for (const RouteSpec& spec : specs) {
    const config::v1::Route route = MakeRoute(spec);
    if (!spec.methods.empty() &&
        std::find(spec.methods.begin(), spec.methods.end(), request.method) == spec.methods.end()) {
      continue;
    }
    if (!spec.hosts.empty() && std::none_of(spec.hosts.begin(), spec.hosts.end(), [&](const std::string& h) {
          return HostMatches(h, request.host);
        })) {
      continue;
    }
    bool headers_ok = true;
    for (const auto& [name, values] : spec.headers) {
      bool any = false;
      for (const auto& [request_name, request_value] : request.headers) {
        if (request_name != name) continue;
        for (const std::string& value : values) any = any || value == request_value;
      }
      headers_ok = headers_ok && any;
    }
    if (!headers_ok) continue;
    std::vector<std::string> paths = spec.paths;
    if (paths.empty()) paths.push_back("");
    for (const std::string& path : paths) {
      std::string matched;
      if (IsRegexPath(path)) {
        re2::StringPiece whole;
        const re2::RE2 regex("^" + path.substr(1));
        if (!regex.Match(request.path, 0, request.path.size(), re2::RE2::UNANCHORED, &whole, 1)) continue;
        matched = request.path.substr(0, whole.size());
      } else if (!path.empty()) {
        if (!absl::StartsWith(request.path, path)) continue;
        matched = path;
      }
      const uint64_t priority = RoutePriority(route, path);
      if (!found || priority > best_priority ||
          (priority == best_priority && route.id() > best_id) ||
          (priority == best_priority && route.id() == best_id && matched.size() > best_matched.size())) {
        found = true;
        best_priority = priority;
        best_id = route.id();
        best_matched = matched;
      }
    }
  }
  return {best_id, best_matched};
}

// Options of the generated config: `shuffled` lists the routes out of id order (the router sorts
// ties by id itself), `long_paths` gives paths a long shared prefix (keys that differ only after
// their first 8 bytes), `custom_methods` adds methods without a method bit (PURGE).
struct GeneratedConfig {
  unsigned seed = 12345;
  bool shuffled = false;
  bool long_paths = false;
  bool custom_methods = false;
};

void CheckAgainstBruteForce(const GeneratedConfig& options) {
  std::mt19937 random(options.seed);  // fixed seed: reproducible
  const std::string base = options.long_paths ? "/service/v1/s" : "/s";
  auto pick = [&random](int n) { return static_cast<int>(random() % static_cast<unsigned>(n)); };
  const std::vector<std::string> hosts = {"a.example.com", "b.example.com", "c.example.org", "*.example.com",
                                          "api.*", "*.org", "api.example.com", "x.y.example.com"};
  std::vector<RouteSpec> specs;
  int id = 1;
  for (int i = 0; i < 1500; ++i) {
    RouteSpec spec;
    spec.id = id++;
    const int kind = pick(10);
    if (pick(3) != 0) spec.hosts.push_back(hosts[static_cast<size_t>(pick(static_cast<int>(hosts.size())))]);
    if (kind < 6) {
      spec.paths.push_back(absl::StrCat(base, pick(20), kind < 3 ? absl::StrCat("/r", pick(10)) : ""));
    } else if (kind < 8) {
      spec.paths.push_back(absl::StrCat("~", base, pick(20), "/r\\d+", pick(2) == 0 ? "$" : ""));
      spec.regex_priority = pick(3);
    }
    if (pick(4) == 0) {
      const int method = pick(options.custom_methods ? 3 : 2);
      spec.methods = {method == 0 ? "GET" : method == 1 ? "POST" : "PURGE"};
      if (options.custom_methods && pick(2) == 0) spec.methods.push_back("GET");
    }
    if (pick(6) == 0) spec.headers.push_back({"x-v", {absl::StrCat("v", pick(3))}});
    if (spec.paths.empty() && spec.hosts.empty() && spec.methods.empty() && spec.headers.empty()) {
      spec.paths.push_back("/");
    }
    specs.push_back(spec);
  }
  std::vector<RouteSpec> listed = specs;
  if (options.shuffled) std::shuffle(listed.begin(), listed.end(), random);
  auto router = Router::Build(MakeConfig(listed));
  ASSERT_TRUE(router.ok()) << router.status();

  const std::vector<std::string> request_hosts = {"a.example.com", "b.example.com", "c.example.org", "api.example.com",
                                                  "api.test", "x.y.example.com", "example.com", "other.net", ""};
  int matched = 0;
  for (int i = 0; i < 3000; ++i) {
    Request request;
    request.host = request_hosts[static_cast<size_t>(pick(static_cast<int>(request_hosts.size())))];
    const int method = pick(options.custom_methods ? 3 : 2);
    request.method = method == 0 ? "GET" : method == 1 ? "POST" : "PURGE";
    request.path = absl::StrCat(base, pick(22), "/r", pick(12), pick(3) == 0 ? "/tail" : "");
    if (pick(3) == 0) request.headers.push_back({"x-v", absl::StrCat("v", pick(4))});
    const auto expected = Reference(specs, request);
    const std::optional<Match> match = FindRoute(**router, request);
    const std::string got_id = match.has_value() ? match->route->id() : "";
    const std::string got_matched = match.has_value() ? std::string(match->matched_path) : "";
    ASSERT_EQ(got_id, expected.first) << "host=" << request.host << " path=" << request.path;
    ASSERT_EQ(got_matched, expected.second) << "host=" << request.host << " path=" << request.path;
    if (match.has_value()) ++matched;
  }
  EXPECT_GT(matched, 1000);  // the generated mix really exercises matching, not only misses
}

TEST(RouterIndexTest, AgreesWithBruteForceOnGeneratedConfig) { CheckAgainstBruteForce({}); }

// The order the config lists routes in does not matter: ties still go to the higher id.
TEST(RouterIndexTest, AgreesWithBruteForceOnRoutesListedOutOfIdOrder) {
  for (unsigned seed : {1u}) {
    SCOPED_TRACE(seed);
    CheckAgainstBruteForce({.seed = seed, .shuffled = true});
  }
}

// Trie keys sharing their first 8 bytes, and methods outside the method bits.
TEST(RouterIndexTest, AgreesWithBruteForceWithLongPathsAndCustomMethods) {
  for (unsigned seed : {4u}) {
    SCOPED_TRACE(seed);
    CheckAgainstBruteForce({.seed = seed, .shuffled = true, .long_paths = true, .custom_methods = true});
  }
}

// Many routes without hosts: one prefix trie and one RE2::Set serve them all.
TEST(RouterIndexTest, ManyHostlessPrefixAndRegexRoutes) {
  std::vector<RouteSpec> specs;
  for (int i = 1; i <= 2000; ++i) {
    RouteSpec spec;
    spec.id = i;
    spec.paths = {i % 10 == 0 ? absl::StrCat("~/re", i, "/\\d+$") : absl::StrCat("/p", i, "/")};
    specs.push_back(spec);
  }
  auto router = Router::Build(MakeConfig(specs));
  ASSERT_TRUE(router.ok());
  for (int i = 1; i <= 2000; ++i) {
    Request request;
    request.path = i % 10 == 0 ? absl::StrCat("/re", i, "/77") : absl::StrCat("/p", i, "/x");
    auto match = FindRoute(**router, request);
    ASSERT_TRUE(match.has_value()) << request.path;
    EXPECT_EQ(match->route->id(), testing_util::Id(i));
  }
  Request miss;
  miss.path = "/re10/x";
  EXPECT_FALSE(FindRoute(**router, miss).has_value());
}

// Regex paths are indexed by the literal text their matches start with; quantifiers, escapes,
// alternation and flags must not make that literal wrong. Enough filler routes force the trie.
TEST(RouterIndexTest, RegexLiteralPrefixesKeepRegexSemantics) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> regexes = {
      // pattern, requests it must match
      {"~/ab?c$", {"/ac", "/abc"}},
      {"~/dx*y$", {"/dy", "/dxxy"}},
      {"~/e{0,2}f$", {"/f", "/eef"}},
      {"~/g\\.h$", {"/g.h"}},
      {"~/k+l$", {"/kkl"}},
      {"~/m\\d+$", {"/m12"}},
      {"~/caf\xc3\xa9?$", {"/caf\xc3\xa9", "/caf"}},
      {"~/nn|/zz$", {"/nn", "/qq/zz"}},
      {"~(?i)/UP$", {"/up"}},
      {"~/w(?i)X$", {"/wx"}},
      {"~\\/s\\/t$", {"/s/t"}},
      // The part after the literal runs alone on the rest of the path when nothing in it looks
      // back before it; these check both the split and the cases that must not be split.
      {"~/p/[^/]+/q$", {"/p/x/q"}},
      {"~/bb\\b", {"/bb", "/bb/x"}},
      {"~/cc(^x)?$", {"/cc"}},
      {"~/dd[]a]z$", {"/dd]z", "/ddaz"}},
      {"~/ee+f/\\d+$", {"/eef/1", "/eeeef/22"}},
      {"~/hh\\Ax", {}},
      // The rest runs on the whole path from the literal's end, so assertions at its start see
      // the literal (POSIX classes and \Q...\E included).
      {"~/q1[[:digit:][]*^]", {}},
      {"~/q2\\Q[\\E*\\b]", {"/q2]"}},
      {"~/q3[[:alpha:][]?\\b]", {"/q3]"}},
  };
  std::vector<RouteSpec> specs;
  int id = 1;
  for (int i = 0; i < 20; ++i) {
    RouteSpec filler;
    filler.id = id++;
    filler.paths = {absl::StrCat("/filler", i)};
    specs.push_back(filler);
  }
  const int first_regex_id = id;
  for (const auto& [pattern, requests] : regexes) {
    RouteSpec spec;
    spec.id = id++;
    spec.paths = {pattern};
    specs.push_back(spec);
  }
  auto router = Router::Build(MakeConfig(specs));
  ASSERT_TRUE(router.ok()) << router.status();
  for (size_t i = 0; i < regexes.size(); ++i) {
    for (const std::string& path : regexes[i].second) {
      Request request;
      request.path = path;
      auto match = FindRoute(**router, request);
      ASSERT_TRUE(match.has_value()) << regexes[i].first << " on " << path;
      EXPECT_EQ(match->route->id(), testing_util::Id(first_regex_id + static_cast<int>(i)))
          << regexes[i].first << " on " << path;
    }
  }
  for (const char* path : {"/abbc", "/dxz", "/eeef", "/gxh", "/l", "/m", "/UPx", "/wy", "/p//q", "/p/x/y/q",
                           "/bbx", "/ccx", "/ddbz", "/ef/1", "/eef/", "/hhx", "/q1]", "/q2[x]"}) {
    Request request;
    request.path = path;
    EXPECT_FALSE(FindRoute(**router, request).has_value()) << path;
  }
}

// A regex matched as literal + rest reports the same matched length (what strip_path removes) as
// the whole pattern: the literal's bytes plus the rest's match.
TEST(RouterIndexTest, SplitRegexKeepsMatchedLength) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      // pattern, request path, matched prefix
      {"~/api/v1/obj/\\d+", "/api/v1/obj/123/x", "/api/v1/obj/123"},
      {"~/k+l", "/kkkl/z", "/kkkl"},
      {"~/users/[^/]+", "/users/ann/orders", "/users/ann"},
      {"~/exact", "/exact/more", "/exact"},
      {"~/a\\.b(c|d)", "/a.bd/e", "/a.bd"},
  };
  for (const auto& [pattern, path, matched] : cases) {
    std::vector<RouteSpec> specs;
    int id = 1;
    for (int i = 0; i < 12; ++i) {  // enough plain paths for a real trie
      RouteSpec filler;
      filler.id = id++;
      filler.paths = {absl::StrCat("/filler", i)};
      specs.push_back(filler);
    }
    RouteSpec spec;
    spec.id = id;
    spec.paths = {pattern};
    specs.push_back(spec);
    auto router = Router::Build(MakeConfig(specs));
    ASSERT_TRUE(router.ok()) << router.status();
    Request request;
    request.path = path;
    auto match = FindRoute(**router, request);
    ASSERT_TRUE(match.has_value()) << pattern;
    EXPECT_EQ(match->route->id(), testing_util::Id(id)) << pattern;
    EXPECT_EQ(std::string(match->matched_path), matched) << pattern;
  }
}

// Wildcard hosts are looked up only for the suffixes/prefixes whose dot count some rule has; hosts
// with more dots than the filter handles still find every rule.
TEST(RouterIndexTest, WildcardHostsOfEveryDotCount) {
  std::vector<RouteSpec> specs;
  std::string seventy_labels = "m0";
  for (int i = 1; i < 70; ++i) absl::StrAppend(&seventy_labels, ".m", i);
  // The last rule has 70 dots: dot counts from 63 up share one bit of the filter.
  const std::vector<std::string> rules = {"*.b", "*.a.b", "*.x.y.z", "p.*", "p.q.*", "m.n.o.*",
                                          "*." + seventy_labels};
  for (size_t i = 0; i < rules.size(); ++i) {
    RouteSpec spec;
    spec.id = static_cast<int>(i) + 1;
    spec.hosts = {rules[i]};
    spec.paths = {absl::StrCat("/r", i)};
    specs.push_back(spec);
  }
  auto router = Router::Build(MakeConfig(specs));
  ASSERT_TRUE(router.ok()) << router.status();
  std::string many_labels;
  for (int i = 0; i < 40; ++i) absl::StrAppend(&many_labels, "l", i, ".");
  const std::vector<std::pair<std::string, int>> cases = {
      {"c.b", 0}, {"c.d.e.b", 0}, {"c.a.b", 1}, {"w.x.y.z", 2}, {"v.w.x.y.z", 2}, {"p.c", 3},
      {"p.q.r.s", 4}, {"m.n.o.p", 5}, {many_labels + "a.b", 1}, {"p.q." + many_labels + "t", 4},
      {many_labels + "x.y.z", 2}, {"x." + seventy_labels, 6}, {many_labels + seventy_labels, 6}};
  for (const auto& [host, rule] : cases) {
    Request request;
    request.host = host;
    request.path = absl::StrCat("/r", rule);
    auto match = FindRoute(**router, request);
    ASSERT_TRUE(match.has_value()) << host;
    EXPECT_EQ(match->route->id(), testing_util::Id(rule + 1)) << host;
  }
  for (const std::string host : {"b", "a.b.c", "x.y.z", "q.p.r"}) {
    Request request;
    request.host = host;
    request.path = "/r0";
    EXPECT_FALSE(FindRoute(**router, request).has_value()) << host;
  }
}

}  // namespace
}  // namespace portico::dp
