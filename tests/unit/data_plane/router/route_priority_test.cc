#include "data_plane/router/route_priority.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/unit/data_plane/router/router_test_util.h"

namespace portico::dp {
namespace {

using testing_util::MakeRoute;
using testing_util::RouteSpec;

constexpr uint64_t Kinds(uint64_t n) { return n << 61; }
constexpr uint64_t Headers(uint64_t n) { return n << 52; }

TEST(RoutePriorityTest, PathOnlyIsOneKindPlusLength) {
  RouteSpec spec;
  spec.paths = {"/abc"};
  EXPECT_EQ(RoutePriority(MakeRoute(spec), "/abc"), Kinds(1) | 4);
}

TEST(RoutePriorityTest, AllBitsForPlainRoute) {
  RouteSpec spec;
  spec.methods = {"GET"};
  spec.hosts = {"a.com", "b.com:8080"};
  spec.headers = {{"x-a", {"1"}}, {"x-b", {"2", "3"}}};
  spec.paths = {"/ab"};
  EXPECT_EQ(RoutePriority(MakeRoute(spec), "/ab"),
            Kinds(4) | kPlainHostOnlyBit | Headers(2) | 3);
}

TEST(RoutePriorityTest, WildcardHostClearsPlainHostBit) {
  RouteSpec spec;
  spec.hosts = {"a.com", "*.b.com"};
  EXPECT_EQ(RoutePriority(MakeRoute(spec), ""), Kinds(1));
  spec.hosts = {"b.*"};
  EXPECT_EQ(RoutePriority(MakeRoute(spec), ""), Kinds(1));
}

TEST(RoutePriorityTest, NoHostsMeansNoPlainHostBit) {
  RouteSpec spec;
  spec.methods = {"GET"};
  EXPECT_EQ(RoutePriority(MakeRoute(spec), ""), Kinds(1));
}

TEST(RoutePriorityTest, RegexPathUsesRegexBitAndRegexPriorityNotLength) {
  RouteSpec spec;
  spec.paths = {"~/users/\\d+$"};
  spec.regex_priority = 7;
  EXPECT_EQ(RoutePriority(MakeRoute(spec), "~/users/\\d+$"),
            Kinds(1) | kRegexPathBit | (uint64_t{7} << 19));
}

TEST(RoutePriorityTest, RegexPriorityIgnoredForPlainPath) {
  RouteSpec spec;
  spec.paths = {"/users"};
  spec.regex_priority = 7;
  EXPECT_EQ(RoutePriority(MakeRoute(spec), "/users"), Kinds(1) | 6);
}

TEST(RoutePriorityTest, EachPathGroupRankedByItsOwnLength) {
  RouteSpec spec;
  spec.paths = {"/a", "/abcd"};
  const auto route = MakeRoute(spec);
  EXPECT_EQ(RoutePriority(route, "/a"), Kinds(1) | 2);
  EXPECT_EQ(RoutePriority(route, "/abcd"), Kinds(1) | 5);
}

TEST(RoutePriorityTest, HeaderCountCappedAt255) {
  RouteSpec spec;
  for (int i = 0; i < 300; ++i) spec.headers.push_back({"x-h" + std::to_string(i), {"v"}});
  EXPECT_EQ(RoutePriority(MakeRoute(spec), ""), Kinds(1) | Headers(255));
}

TEST(RoutePriorityTest, AllSevenKindsCounted) {
  RouteSpec spec;
  spec.methods = {"GET"};
  spec.hosts = {"a.com"};
  spec.paths = {"/"};
  spec.headers = {{"x", {"1"}}};
  spec.snis = {"a.com"};
  spec.source_count = 1;
  spec.destination_count = 1;
  EXPECT_EQ(RoutePriority(MakeRoute(spec), "/"), Kinds(7) | kPlainHostOnlyBit | Headers(1) | 1);
}

TEST(RoutePriorityTest, EmptyListsAreNotConfiguredFields) {
  config::v1::Route route;
  route.mutable_methods();  // set, but []
  route.mutable_hosts();
  route.mutable_paths()->add_values("/x");
  EXPECT_EQ(RoutePriority(route, "/x"), Kinds(1) | 2);
}

}  // namespace
}  // namespace portico::dp
