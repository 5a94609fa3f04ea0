#include "data_plane/router/router.h"

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/data_plane/router/router_test_util.h"

namespace portico::dp {
namespace {

using testing_util::FindRoute;
using testing_util::Id;
using testing_util::MakeConfig;
using testing_util::MakeService;
using testing_util::Request;
using testing_util::RouteSpec;
using testing_util::ServiceId;

// One routing scenario: a route set, one request, the expected winner (0 = no match).
struct MatchCase {
  const char* name;
  std::vector<RouteSpec> routes;
  Request request;
  int expected_route = 0;
  std::string expected_matched_path;

  MatchCase(const char* name, std::vector<RouteSpec> routes, Request request, int expected_route = 0,
            std::string expected_matched_path = "")
      : name(name), routes(std::move(routes)), request(std::move(request)),
        expected_route(expected_route), expected_matched_path(std::move(expected_matched_path)) {}
};

RouteSpec R(int id) {
  RouteSpec spec;
  spec.id = id;
  return spec;
}


// Small fluent helpers keep the table readable.
struct B {
  RouteSpec spec;
  explicit B(int id) { spec.id = id; }
  B& methods(std::vector<std::string> v) { spec.methods = std::move(v); return *this; }
  B& hosts(std::vector<std::string> v) { spec.hosts = std::move(v); return *this; }
  B& paths(std::vector<std::string> v) { spec.paths = std::move(v); return *this; }
  B& header(std::string name, std::vector<std::string> values) {
    spec.headers.emplace_back(std::move(name), std::move(values));
    return *this;
  }
  B& protocols(std::vector<std::string> v) { spec.protocols = std::move(v); return *this; }
  B& regex_priority(int p) { spec.regex_priority = p; return *this; }
  B& snis(std::vector<std::string> v) { spec.snis = std::move(v); return *this; }
  operator RouteSpec() const { return spec; }  // NOLINT: implicit on purpose
};

struct Q {
  Request req;
  Q& method(std::string m) { req.method = std::move(m); return *this; }
  Q& host(std::string h) { req.host = std::move(h); return *this; }
  Q& port(uint16_t p) { req.port = p; return *this; }
  Q& path(std::string p) { req.path = std::move(p); return *this; }
  Q& header(std::string k, std::string v) { req.headers.emplace_back(std::move(k), std::move(v)); return *this; }
  Q& tls(std::string sni) {
    req.tls = true;
    req.sni = std::move(sni);
    return *this;
  }
  operator Request() const { return req; }  // NOLINT
};

void PrintTo(const MatchCase& c, std::ostream* os) { *os << c.name; }

class RouterMatchTest : public testing::TestWithParam<MatchCase> {};

TEST_P(RouterMatchTest, PicksExpectedRoute) {
  const MatchCase& c = GetParam();
  auto router = Router::Build(MakeConfig(c.routes));
  ASSERT_TRUE(router.ok()) << router.status();
  const std::optional<Match> match = FindRoute(**router, c.request);
  if (c.expected_route == 0) {
    EXPECT_FALSE(match.has_value()) << "unexpected match: " << match->route->id();
    return;
  }
  ASSERT_TRUE(match.has_value()) << "expected route " << Id(c.expected_route);
  EXPECT_EQ(match->route->id(), Id(c.expected_route));
  EXPECT_EQ(std::string(match->matched_path), c.expected_matched_path);
  ASSERT_NE(match->service, nullptr);
  EXPECT_EQ(match->service->id(), ServiceId());
}

std::string CaseName(const testing::TestParamInfo<MatchCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(
    Fields, RouterMatchTest,
    testing::Values(
        // methods
        MatchCase{"MethodInList", {B(1).methods({"GET", "POST"})}, Q().method("POST"), 1},
        MatchCase{"MethodNotInList", {B(1).methods({"GET", "POST"})}, Q().method("DELETE"), 0},
        MatchCase{"MethodIsExactUppercase", {B(1).methods({"GET"})}, Q().method("get"), 0},
        // exact hosts
        MatchCase{"ExactHost", {B(1).hosts({"example.com"})}, Q().host("example.com"), 1},
        MatchCase{"ExactHostCaseInsensitive", {B(1).hosts({"Example.COM"})}, Q().host("eXample.com"), 1},
        MatchCase{"HostHeaderPortStripped", {B(1).hosts({"example.com"})}, Q().host("example.com:8080"), 1},
        MatchCase{"OtherHost", {B(1).hosts({"example.com"})}, Q().host("example.org"), 0},
        MatchCase{"NoHostHeader", {B(1).hosts({"example.com"})}, Q(), 0},
        MatchCase{"AnyOfSeveralHosts", {B(1).hosts({"a.com", "b.com"})}, Q().host("b.com"), 1},
        // leftmost wildcard
        MatchCase{"SuffixWildcardOneLabel", {B(1).hosts({"*.example.com"})}, Q().host("a.example.com"), 1},
        MatchCase{"SuffixWildcardTwoLabels", {B(1).hosts({"*.example.com"})}, Q().host("x.y.example.com"), 1},
        MatchCase{"SuffixWildcardNeedsExtraLabel", {B(1).hosts({"*.example.com"})}, Q().host("example.com"), 0},
        MatchCase{"SuffixWildcardLabelBoundary", {B(1).hosts({"*.example.com"})}, Q().host("badexample.com"), 0},
        MatchCase{"SuffixWildcardCaseAndPort", {B(1).hosts({"*.Example.com"})}, Q().host("A.EXAMPLE.COM:81"), 1},
        // rightmost wildcard
        MatchCase{"PrefixWildcard", {B(1).hosts({"example.*"})}, Q().host("example.org"), 1},
        MatchCase{"PrefixWildcardManyLabels", {B(1).hosts({"example.*"})}, Q().host("example.co.uk"), 1},
        MatchCase{"PrefixWildcardLabelBoundary", {B(1).hosts({"example.*"})}, Q().host("examples.org"), 0},
        MatchCase{"PrefixWildcardAnchored", {B(1).hosts({"example.*"})}, Q().host("www.example.org"), 0},
        // host:port
        MatchCase{"HostPortViaHostHeader", {B(1).hosts({"example.com:9000"})}, Q().host("example.com:9000").port(8000), 1},
        MatchCase{"HostPortViaLocalPort", {B(1).hosts({"example.com:9000"})}, Q().host("example.com").port(9000), 1},
        MatchCase{"HostPortNeitherPort", {B(1).hosts({"example.com:9000"})}, Q().host("example.com:8000").port(8000), 0},
        MatchCase{"HostPortWrongName", {B(1).hosts({"example.com:9000"})}, Q().host("other.com:9000").port(9000), 0},
        MatchCase{"HostPortIpv6", {B(1).hosts({"[::1]:9000"})}, Q().host("[::1]:9000").port(8000), 1},
        MatchCase{"WildcardWithPort", {B(1).hosts({"*.example.com:9000"})}, Q().host("a.example.com").port(9000), 1},
        // paths
        MatchCase{"PathPrefix", {B(1).paths({"/foo"})}, Q().path("/foo/bar"), 1, "/foo"},
        MatchCase{"PathExact", {B(1).paths({"/foo"})}, Q().path("/foo"), 1, "/foo"},
        MatchCase{"PathPrefixNotSegmentAware", {B(1).paths({"/foo"})}, Q().path("/foobar"), 1, "/foo"},
        MatchCase{"PathShorterThanPrefix", {B(1).paths({"/foo"})}, Q().path("/fo"), 0},
        MatchCase{"PathCaseSensitive", {B(1).paths({"/Foo"})}, Q().path("/foo"), 0},
        MatchCase{"AnyOfSeveralPaths", {B(1).paths({"/a", "/b"})}, Q().path("/b/1"), 1, "/b"},
        MatchCase{"PlainPathBesideRegexPath", {B(1).paths({"~/x$", "/y"})}, Q().path("/y/z"), 1, "/y"},
        // regex paths: "^" + regex, anchored at the start only
        MatchCase{"RegexPathMatches", {B(1).paths({"~/users/\\d+$"})}, Q().path("/users/42"), 1, "/users/42"},
        MatchCase{"RegexPathEndAnchorHolds", {B(1).paths({"~/users/\\d+$"})}, Q().path("/users/42/x"), 0},
        MatchCase{"RegexPathAnchoredAtStart", {B(1).paths({"~/users"})}, Q().path("/api/users"), 0},
        MatchCase{"RegexPathNotAnchoredAtEnd", {B(1).paths({"~/users/\\d+"})}, Q().path("/users/42abc"), 1, "/users/42"},
        MatchCase{"RegexPathCaseSensitive", {B(1).paths({"~/Users"})}, Q().path("/users"), 0},
        MatchCase{"RegexPathCaseFlag", {B(1).paths({"~(?i)/users"})}, Q().path("/USERS/1"), 1, "/USERS"},
        MatchCase{"RegexNamedGroupKongSyntax", {B(1).paths({"~/v(?<ver>\\d)/"})}, Q().path("/v2/x"), 1, "/v2/"},
        // Kong prepends "^" textually: only the first alternative is anchored.
        MatchCase{"RegexTopLevelAlternationQuirk", {B(1).paths({"~/a|/b"})}, Q().path("/x/b"), 1, "/x"},
        MatchCase{"RegexBesidePlainPath", {B(1).paths({"/p", "~/r/\\d+"})}, Q().path("/r/7"), 1, "/r/7"},
        MatchCase{"NoPathsMatchesAnyPath", {B(1).hosts({"a.com"})}, Q().host("a.com").path("/x/y"), 1, ""},
        // headers
        MatchCase{"HeaderValueCaseInsensitive", {B(1).header("x-version", {"v1", "v2"})}, Q().header("X-Version", "V2"), 1},
        MatchCase{"HeaderNameCaseInsensitive", {B(1).header("X-Version", {"v1"})}, Q().header("x-version", "v1"), 1},
        MatchCase{"HeaderValueMismatch", {B(1).header("x-version", {"v1"})}, Q().header("x-version", "v3"), 0},
        MatchCase{"HeaderMissing", {B(1).header("x-version", {"v1"})}, Q().header("x-other", "v1"), 0},
        MatchCase{"AllHeaderNamesRequired", {B(1).header("x-a", {"1"}).header("x-b", {"2"})}, Q().header("x-a", "1"), 0},
        MatchCase{"AllHeaderNamesPresent", {B(1).header("x-a", {"1"}).header("x-b", {"2"})}, Q().header("x-b", "2").header("x-a", "1"), 1},
        MatchCase{"RepeatedRequestHeader", {B(1).header("x-a", {"2"})}, Q().header("x-a", "1").header("X-A", "2"), 1},
        MatchCase{"RegexHeaderValue", {B(1).header("x-a", {"~*^ab"})}, Q().header("x-a", "abc"), 1},
        MatchCase{"RegexHeaderValueUnanchored", {B(1).header("x-a", {"~*b+c"})}, Q().header("x-a", "abbbc-d"), 1},
        MatchCase{"RegexHeaderValueNoMatch", {B(1).header("x-a", {"~*^ab$"})}, Q().header("x-a", "abc"), 0},
        MatchCase{"RegexHeaderValueCaseInsensitive", {B(1).header("x-a", {"~*^AB"})}, Q().header("x-a", "aBc"), 1},
        MatchCase{"RegexOrPlainHeaderValue", {B(1).header("x-a", {"v1", "~*^v[23]$"})}, Q().header("x-a", "V3"), 1},
        MatchCase{"RegexHeaderOnAnyRepeatedValue", {B(1).header("x-a", {"~*^z"})}, Q().header("x-a", "a").header("x-a", "zz"), 1},
        // all fields together
        MatchCase{"AllFieldsMatch", {B(1).methods({"GET"}).hosts({"a.com"}).paths({"/p"}).header("x-a", {"1"})},
                  Q().host("a.com").path("/p/q").header("x-a", "1"), 1, "/p"},
        MatchCase{"OneFieldFails", {B(1).methods({"GET"}).hosts({"a.com"}).paths({"/p"})},
                  Q().method("POST").host("a.com").path("/p"), 0},
        // protocols
        MatchCase{"HttpsOnlyRouteStillMatches", {B(1).paths({"/"}).protocols({"https"})}, Q().path("/"), 1, "/"},
        MatchCase{"GrpcRouteMatches", {B(1).paths({"/"}).protocols({"grpc"})}, Q().path("/"), 1, "/"},
        MatchCase{"StreamRouteNotMatched", {B(1).paths({"/"}).protocols({"tcp"})}, Q().path("/"), 0},
        MatchCase{"HttpProtocolListed", {B(1).paths({"/"}).protocols({"http"})}, Q().path("/"), 1, "/"},
        MatchCase{"ProtocolsUnsetMeansDefault", {B(1).paths({"/"})}, Q().path("/"), 1, "/"}),
    CaseName);

INSTANTIATE_TEST_SUITE_P(
    Priority, RouterMatchTest,
    testing::Values(
        MatchCase{"MoreFieldKindsBeatLongerPath",
                  {B(1).methods({"GET"}).paths({"/a"}), B(2).paths({"/a/b/c/d"})},
                  Q().path("/a/b/c/d"), 1, "/a"},
        MatchCase{"PlainHostBeatsWildcard",
                  {B(1).hosts({"api.example.com"}), B(2).hosts({"*.example.com"})},
                  Q().host("api.example.com"), 1},
        MatchCase{"PlainHostBeatsPrefixWildcard",
                  {B(1).hosts({"api.example.com"}), B(2).hosts({"api.example.*"})},
                  Q().host("api.example.com"), 1},
        MatchCase{"OneWildcardClearsPlainHostBit",
                  {B(1).hosts({"api.example.com"}), B(2).hosts({"api.example.com", "*.other.com"})},
                  Q().host("api.example.com"), 1},
        MatchCase{"PlainHostBitBeatsHeaderCount",
                  {B(1).hosts({"b.a.com"}).header("x", {"1"}), B(2).hosts({"*.a.com"}).header("x", {"1"}).header("y", {"2"})},
                  Q().host("b.a.com").header("x", "1").header("y", "2"), 1},
        MatchCase{"MoreHeadersWin",
                  {B(1).header("x", {"1"}).header("y", {"2"}), B(2).header("x", {"1"})},
                  Q().header("x", "1").header("y", "2"), 1},
        MatchCase{"HeaderCountBeatsPathLength",
                  {B(1).header("x", {"1"}).header("y", {"2"}).paths({"/l"}), B(2).header("x", {"1"}).paths({"/long/path"})},
                  Q().path("/long/path").header("x", "1").header("y", "2"), 1, "/l"},
        MatchCase{"LongerPrefixWins", {B(1).paths({"/a/b"}), B(2).paths({"/a"})}, Q().path("/a/b/c"), 1, "/a/b"},
        MatchCase{"ShorterPrefixWhenLongerDoesNotMatch", {B(1).paths({"/a/b"}), B(2).paths({"/a"})}, Q().path("/a/c"), 2, "/a"},
        MatchCase{"TieBrokenByHigherId", {B(1).paths({"/a"}), B(2).paths({"/a"})}, Q().path("/a"), 2, "/a"},
        MatchCase{"TieBrokenByHigherIdHosts", {B(3).hosts({"a.com"}), B(2).hosts({"a.com"})}, Q().host("a.com"), 3},
        MatchCase{"RouteRankedByLongestMatchingPath",
                  {B(1).paths({"/a", "/a/b/c"}), B(2).paths({"/a/b"})},
                  Q().path("/a/b/c/d"), 1, "/a/b/c"},
        MatchCase{"RouteRankedByItsShortPathWhenLongDoesNotMatch",
                  {B(1).paths({"/a", "/a/b/c"}), B(2).paths({"/a/b"})},
                  Q().path("/a/b/x"), 2, "/a/b"},
        MatchCase{"FallsThroughToLowerPriority",
                  {B(1).methods({"POST"}).paths({"/a"}), B(2).paths({"/a"})}, Q().path("/a"), 2, "/a"},
        MatchCase{"WildcardWithMoreFieldsBeatsExactHost",
                  {B(1).hosts({"*.example.com"}).methods({"GET"}), B(2).hosts({"api.example.com"})},
                  Q().host("api.example.com"), 1},
        MatchCase{"HostlessWithMoreFieldsBeatsHostRoute",
                  {B(1).methods({"GET"}).paths({"/x"}), B(2).hosts({"a.com"})},
                  Q().host("a.com").path("/x"), 1, "/x"},
        MatchCase{"RegexBeatsLongerPlainPathWithSameFields",
                  {B(1).paths({"/users/123/profile"}), B(2).paths({"~/users/\\d+"})},
                  Q().path("/users/123/profile"), 2, "/users/123"},
        MatchCase{"HigherRegexPriorityWins",
                  {B(1).paths({"~/a/\\w+"}).regex_priority(1), B(2).paths({"~/a/b"}).regex_priority(5)},
                  Q().path("/a/b"), 2, "/a/b"},
        MatchCase{"RegexPriorityTieBrokenById",
                  {B(1).paths({"~/a/b"}), B(2).paths({"~/a/\\w"})},
                  Q().path("/a/b"), 2, "/a/b"},
        MatchCase{"RegexPriorityDoesNotLiftOverMoreFields",
                  {B(1).paths({"~/a"}).regex_priority(100), B(2).paths({"/a"}).methods({"GET"})},
                  Q().path("/a"), 2, "/a"},
        MatchCase{"HostRouteBeatsHostlessWithSameKinds",
                  {B(1).hosts({"a.com"}), B(2).paths({"/x"})},
                  Q().host("a.com").path("/x"), 1}),
    CaseName);

TEST(RouterTest, RouteWithUnknownServiceMatchesWithNullService) {
  RouteSpec spec = R(1);
  spec.paths = {"/x"};
  spec.service_id = "bbbbbbbb-0000-4000-8000-000000000009";
  auto router = Router::Build(MakeConfig({spec}));
  ASSERT_TRUE(router.ok());
  auto match = FindRoute(**router, Q().path("/x"));
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->route->id(), Id(1));
  EXPECT_EQ(match->service, nullptr);
}

TEST(RouterTest, RouteWithoutServiceIdMatchesWithNullService) {
  RouteSpec spec = R(1);
  spec.paths = {"/x"};
  spec.service_id.reset();
  auto router = Router::Build(MakeConfig({spec}));
  ASSERT_TRUE(router.ok());
  auto match = FindRoute(**router, Q().path("/x"));
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->service, nullptr);
}

TEST(RouterTest, DisabledServiceRoutesAreNotRoutable) {
  const std::string disabled_id = "cccccccc-0000-4000-8000-000000000001";
  RouteSpec on_disabled = R(2);
  on_disabled.paths = {"/x/y"};
  on_disabled.service_id = disabled_id;
  RouteSpec fallback = R(1);
  fallback.paths = {"/x"};
  auto router = Router::Build(
      MakeConfig({on_disabled, fallback}, {MakeService(ServiceId()), MakeService(disabled_id, false)}));
  ASSERT_TRUE(router.ok());
  EXPECT_EQ((*router)->route_count(), 1u);
  auto match = FindRoute(**router, Q().path("/x/y"));
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->route->id(), Id(1));
  EXPECT_EQ(match->service->id(), ServiceId());
}

TEST(RouterTest, PointersReferToTheConfigAndOutliveCallerCopy) {
  auto config = MakeConfig({B(1).paths({"/x"})});
  const config::v1::Route* route_in_config = &config->routes[0];
  const config::v1::Service* service_in_config = &config->services[0];
  auto router = Router::Build(std::move(config));
  ASSERT_TRUE(router.ok());
  config.reset();  // the router keeps its own reference
  auto match = FindRoute(**router, Q().path("/x"));
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->route, route_in_config);
  EXPECT_EQ(match->service, service_in_config);
  EXPECT_EQ(match->route->paths().values(0), "/x");
}

TEST(RouterTest, MatchedPathPointsIntoRequestPath) {
  auto router = Router::Build(MakeConfig({B(1).paths({"/abc"})}));
  ASSERT_TRUE(router.ok());
  Request request = Q().path("/abc/def");
  auto match = FindRoute(**router, request);
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->matched_path.data(), request.path.data());
  EXPECT_EQ(match->matched_path.size(), 4u);
}

TEST(RouterTest, NullConfigIsRejected) {
  auto router = Router::Build(nullptr);
  EXPECT_FALSE(router.ok());
  EXPECT_EQ(router.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RouterTest, EmptyConfigMatchesNothing) {
  auto router = Router::Build(std::make_shared<ConfigSet>());
  ASSERT_TRUE(router.ok());
  EXPECT_EQ((*router)->route_count(), 0u);
  EXPECT_FALSE(FindRoute(**router, Q().host("a.com").path("/")).has_value());
}

TEST(RouterTest, RouteCountExcludesUnroutableRoutes) {
  auto router = Router::Build(MakeConfig({B(1).paths({"/a"}), B(2).paths({"/b"}).protocols({"https"}),
                                          B(3).hosts({"x.com"}), B(4).paths({"/g"}).protocols({"grpc"}),
                                          B(5).paths({"/t"}).protocols({"tcp"})}));
  ASSERT_TRUE(router.ok());
  EXPECT_EQ((*router)->route_count(), 4u);  // the tcp route is not an HTTP route
}

// gRPC routes match like HTTP ones (Kong); GrpcRouteStep applies the gRPC rules from the flags.
TEST(RouterTest, GrpcFlagsFollowProtocols) {
  auto router = Router::Build(MakeConfig({B(1).paths({"/g"}).protocols({"grpc"}),
                                          B(2).paths({"/s"}).protocols({"grpcs"}),
                                          B(3).paths({"/b"}).protocols({"grpc", "grpcs"}),
                                          B(4).paths({"/h"}).protocols({"http"})}));
  ASSERT_TRUE(router.ok());
  auto grpc = FindRoute(**router, Q().path("/g"));
  ASSERT_TRUE(grpc.has_value());
  EXPECT_TRUE(grpc->grpc);
  EXPECT_FALSE(grpc->https_only);
  auto grpcs = FindRoute(**router, Q().path("/s"));
  ASSERT_TRUE(grpcs.has_value());
  EXPECT_TRUE(grpcs->grpc);
  EXPECT_TRUE(grpcs->https_only);
  auto both = FindRoute(**router, Q().path("/b"));
  ASSERT_TRUE(both.has_value());
  EXPECT_TRUE(both->grpc);
  EXPECT_FALSE(both->https_only);
  auto http = FindRoute(**router, Q().path("/h"));
  ASSERT_TRUE(http.has_value());
  EXPECT_FALSE(http->grpc);
}

TEST(RouterTest, WebSocketRoutesAreRoutedAndFlagged) {
  auto router = Router::Build(MakeConfig({B(1).paths({"/ws"}).protocols({"ws", "wss"}),
                                          B(2).paths({"/secure"}).protocols({"wss"}),
                                          B(3).paths({"/plain"}).protocols({"http", "https"})}));
  ASSERT_TRUE(router.ok());
  EXPECT_EQ((*router)->route_count(), 3u);
  auto both = FindRoute(**router, Q().path("/ws"));
  ASSERT_TRUE(both.has_value());
  EXPECT_EQ(both->route->id(), Id(1));
  EXPECT_TRUE(both->websocket_only);
  EXPECT_FALSE(both->https_only);
  auto secure = FindRoute(**router, Q().path("/secure"));
  ASSERT_TRUE(secure.has_value());
  EXPECT_TRUE(secure->websocket_only);
  EXPECT_TRUE(secure->https_only);
  auto plain = FindRoute(**router, Q().path("/plain"));
  ASSERT_TRUE(plain.has_value());
  EXPECT_FALSE(plain->websocket_only);  // http routes take WebSocket upgrades too
}

TEST(RouterTest, HttpsOnlyFlagFollowsProtocols) {
  auto router = Router::Build(MakeConfig({B(1).paths({"/s"}).protocols({"https"}),
                                          B(2).paths({"/b"}).protocols({"http", "https"}),
                                          B(3).paths({"/d"})}));
  ASSERT_TRUE(router.ok());
  auto secure = FindRoute(**router, Q().path("/s"));
  ASSERT_TRUE(secure.has_value());
  EXPECT_TRUE(secure->https_only);
  auto both = FindRoute(**router, Q().path("/b"));
  ASSERT_TRUE(both.has_value());
  EXPECT_FALSE(both->https_only);
  auto defaults = FindRoute(**router, Q().path("/d"));
  ASSERT_TRUE(defaults.has_value());
  EXPECT_FALSE(defaults->https_only);
}

// Kong traditional_compatible: (net.protocol != "https" || tls.sni == ...).
TEST(RouterTest, SnisMatchOnlyTlsRequestsWithThatSniAndAreIgnoredOnPlainHttp) {
  auto router = Router::Build(MakeConfig({B(1).paths({"/a"}).protocols({"https"}).snis({"API.example.com."}),
                                          B(2).paths({"/a"}).protocols({"http", "https"})}));
  ASSERT_TRUE(router.ok()) << router.status();
  auto with_sni = FindRoute(**router, Q().path("/a").tls("api.example.com"));
  ASSERT_TRUE(with_sni.has_value());
  EXPECT_EQ(with_sni->route->id(), Id(1));  // more field kinds: tried first
  auto other_sni = FindRoute(**router, Q().path("/a").tls("www.example.com"));
  ASSERT_TRUE(other_sni.has_value());
  EXPECT_EQ(other_sni->route->id(), Id(2));
  auto no_sni = FindRoute(**router, Q().path("/a").tls(""));
  ASSERT_TRUE(no_sni.has_value());
  EXPECT_EQ(no_sni->route->id(), Id(2));
  auto plain = FindRoute(**router, Q().path("/a"));  // snis ignored on plain HTTP
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->route->id(), Id(1));
  EXPECT_TRUE(plain->https_only);  // then redirected by the pipeline

  auto only = Router::Build(MakeConfig({B(3).protocols({"https"}).snis({"a.test", "b.test"})}));
  ASSERT_TRUE(only.ok()) << only.status();
  EXPECT_TRUE(FindRoute(**only, Q().path("/x").tls("b.test")).has_value());
  EXPECT_FALSE(FindRoute(**only, Q().path("/x").tls("c.test")).has_value());
}

TEST(RouterTest, InvalidRegexFailsTheBuild) {
  auto path = Router::Build(MakeConfig({B(1).paths({"~/a(b"})}));
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(path.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(path.status().message().find(Id(1)), std::string::npos);
  // The error names the whole pattern, although only the part after "/a" would be matched.
  EXPECT_NE(path.status().message().find("'^/a(b'"), std::string::npos) << path.status();
  auto header = Router::Build(MakeConfig({B(2).header("x-a", {"~*[z"})}));
  EXPECT_FALSE(header.ok());
}

TEST(RouterTest, RegexMatchedPathIsTheMatchLength) {
  auto router = Router::Build(MakeConfig({B(1).paths({"~/v\\d+/"})}));
  ASSERT_TRUE(router.ok());
  Request request = Q().path("/v12/items");
  auto match = FindRoute(**router, request);
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->matched_path, "/v12/");
  EXPECT_EQ(BuildUpstreamPath("/s", request.path, match->matched_path, true), "/s/items");
}

// Many hosts: every route reachable by its own host, none by a foreign one.
TEST(RouterTest, ManyHostRoutesEachReachable) {
  std::vector<RouteSpec> specs;
  for (int i = 1; i <= 200; ++i) specs.push_back(B(i).hosts({"h" + std::to_string(i) + ".example.com"}));
  specs.push_back(B(1000).hosts({"*.example.com"}));
  auto router = Router::Build(MakeConfig(specs));
  ASSERT_TRUE(router.ok());
  for (int i = 1; i <= 200; ++i) {
    auto match = FindRoute(**router, Q().host("h" + std::to_string(i) + ".example.com"));
    ASSERT_TRUE(match.has_value());
    EXPECT_EQ(match->route->id(), Id(i));
  }
  auto wildcard = FindRoute(**router, Q().host("zzz.example.com"));
  ASSERT_TRUE(wildcard.has_value());
  EXPECT_EQ(wildcard->route->id(), Id(1000));
}

TEST(RouterTest, ConcurrentFindsAgree) {
  auto router = Router::Build(MakeConfig({B(1).paths({"/a"}), B(2).paths({"/a/b"}).hosts({"x.com"})}));
  ASSERT_TRUE(router.ok());
  const Router& shared = **router;
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto m = FindRoute(shared, Q().host("x.com").path("/a/b/c"));
        if (!m.has_value() || m->route->id() != Id(2)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace portico::dp
