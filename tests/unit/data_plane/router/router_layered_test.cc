// Router::BuildOn: a router layered on an older whole table answers every request exactly as a
// router built whole from the same config, through random chains of route changes, and builds
// whole whenever the config is not the one it is told of.
#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "data_plane/router/router.h"
#include "gtest/gtest.h"
#include "re2/re2.h"
#include "tests/unit/data_plane/router/router_test_util.h"

namespace portico::dp {
namespace {

using testing_util::FindRoute;
using testing_util::Id;
using testing_util::MakeRoute;
using testing_util::MakeService;
using testing_util::Request;
using testing_util::RouteSpec;
using testing_util::ServiceId;

const std::string kDisabledServiceId = "bbbbbbbb-0000-4000-8000-000000000002";

class RouteGenerator {
 public:
  explicit RouteGenerator(unsigned seed) : random_(seed) {}

  int Pick(int n) { return static_cast<int>(random_() % static_cast<unsigned>(n)); }

  // A route of every kind the router compiles differently: hosts of each kind, plain and regex
  // paths, methods, headers, stream protocols (not routed), a disabled service, no service.
  config::v1::Route Route(int id) {
    static const std::vector<std::string> hosts = {"a.example.com", "b.example.com", "*.example.com",
                                                   "api.*",         "*.org",         "c.example.org"};
    RouteSpec spec;
    spec.id = id;
    if (Pick(3) != 0) spec.hosts.push_back(hosts[static_cast<size_t>(Pick(static_cast<int>(hosts.size())))]);
    const int kind = Pick(10);
    if (kind < 6) {
      spec.paths.push_back(absl::StrCat("/s", Pick(15), kind < 3 ? absl::StrCat("/r", Pick(8)) : ""));
    } else if (kind < 8) {
      spec.paths.push_back(absl::StrCat("~/s", Pick(15), "/r\\d+", Pick(2) == 0 ? "$" : ""));
      spec.regex_priority = Pick(3);
    }
    if (Pick(4) == 0) spec.methods = {Pick(2) == 0 ? "GET" : "POST"};
    if (Pick(6) == 0) spec.headers.push_back({"x-v", {absl::StrCat("v", Pick(3))}});
    if (Pick(12) == 0) spec.protocols = {"tcp"};
    const int service = Pick(10);
    if (service == 0) spec.service_id = kDisabledServiceId;
    if (service == 1) spec.service_id.reset();
    if (spec.paths.empty() && spec.hosts.empty() && spec.methods.empty() && spec.headers.empty()) {
      spec.paths.push_back("/");
    }
    return MakeRoute(spec);
  }

  Request RandomRequest() {
    static const std::vector<std::string> hosts = {"a.example.com", "b.example.com", "c.example.org",
                                                   "api.example.com", "x.example.com", "other.net", ""};
    Request request;
    request.host = hosts[static_cast<size_t>(Pick(static_cast<int>(hosts.size())))];
    request.method = Pick(2) == 0 ? "GET" : "POST";
    request.path = absl::StrCat("/s", Pick(17), "/r", Pick(10), Pick(3) == 0 ? "/tail" : "");
    if (Pick(3) == 0) request.headers.push_back({"x-v", absl::StrCat("v", Pick(4))});
    return request;
  }

 private:
  std::mt19937 random_;
};

std::shared_ptr<ConfigSet> ConfigOf(std::vector<config::v1::Route> routes) {
  auto set = std::make_shared<ConfigSet>();
  set->services = {MakeService(ServiceId()), MakeService(kDisabledServiceId, /*enabled=*/false)};
  set->routes = std::move(routes);
  std::sort(set->routes.begin(), set->routes.end(), [](const auto& a, const auto& b) { return a.id() < b.id(); });
  return set;
}

// Both routers resolve into `config`: the same route and service objects, the same matched path
// and flags. Returns how many requests matched.
int ExpectSameAnswers(const Router& layered, const Router& whole, RouteGenerator& generator, int requests) {
  int matched = 0;
  for (int i = 0; i < requests; ++i) {
    const Request request = generator.RandomRequest();
    const std::optional<Match> got = FindRoute(layered, request);
    const std::optional<Match> want = FindRoute(whole, request);
    const std::string where = absl::StrCat("host=", request.host, " ", request.method, " ", request.path);
    EXPECT_EQ(got.has_value(), want.has_value()) << where;
    if (!got.has_value() || !want.has_value()) continue;
    ++matched;
    EXPECT_EQ(got->route, want->route) << where << " got " << got->route->id() << " want " << want->route->id();
    EXPECT_EQ(got->service, want->service) << where;
    EXPECT_EQ(got->matched_path, want->matched_path) << where;
    EXPECT_EQ(got->https_only, want->https_only) << where;
    EXPECT_EQ(got->path_regex == nullptr, want->path_regex == nullptr) << where;
    if (got->path_regex != nullptr && want->path_regex != nullptr) {
      EXPECT_EQ(got->path_regex->pattern(), want->path_regex->pattern()) << where;
      EXPECT_EQ(got->path_regex_offset, want->path_regex_offset) << where;
    }
  }
  return matched;
}

TEST(RouterLayeredTest, AnswersAsAWholeBuildThroughRandomChangeChains) {
  int layered_steps = 0, whole_steps = 0, matched = 0;
  for (unsigned seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE(seed);
    RouteGenerator generator(seed);
    std::vector<config::v1::Route> routes;
    int next_id = 1;
    for (int i = 0; i < 400; ++i) {
      routes.push_back(generator.Route(next_id));
      next_id += 1 + generator.Pick(3);  // gaps, so that new routes land in between
    }
    std::shared_ptr<const ConfigSet> config = ConfigOf(routes);
    absl::StatusOr<std::unique_ptr<const Router>> router = Router::Build(config);
    ASSERT_TRUE(router.ok()) << router.status();
    for (int step = 0; step < 30; ++step) {
      RouteChanges changes;
      std::vector<std::string> ids;  // owns what changes.route_ids views
      const int count = generator.Pick(8) == 0 ? 20 : 1 + generator.Pick(3);
      for (int c = 0; c < count; ++c) {
        const int what = generator.Pick(4);
        if (what == 0 && !routes.empty()) {  // delete
          const size_t at = static_cast<size_t>(generator.Pick(static_cast<int>(routes.size())));
          ids.push_back(routes[at].id());
          routes.erase(routes.begin() + static_cast<std::ptrdiff_t>(at));
        } else if (what == 1 && !routes.empty()) {  // update in place (same id, new rules)
          const size_t at = static_cast<size_t>(generator.Pick(static_cast<int>(routes.size())));
          const int id = std::stoi(routes[at].id().substr(24));
          routes[at] = generator.Route(id);
          ids.push_back(routes[at].id());
        } else {  // insert, in between existing ids or at the end
          int id = 1 + generator.Pick(next_id + 5);
          const bool taken = std::any_of(routes.begin(), routes.end(), [&](const auto& r) { return r.id() == Id(id); });
          if (taken) id = next_id++;
          routes.push_back(generator.Route(id));
          ids.push_back(routes.back().id());
        }
      }
      for (const std::string& id : ids) changes.route_ids.push_back(id);
      std::shared_ptr<const ConfigSet> next = ConfigOf(routes);
      absl::StatusOr<std::unique_ptr<const Router>> layered = Router::BuildOn(**router, next, changes);
      ASSERT_TRUE(layered.ok()) << layered.status();
      absl::StatusOr<std::unique_ptr<const Router>> whole = Router::Build(next);
      ASSERT_TRUE(whole.ok()) << whole.status();
      ((*layered)->layered() ? layered_steps : whole_steps) += 1;
      EXPECT_EQ((*layered)->route_count(), (*whole)->route_count());
      // The layered router holds neither the previous router's config nor the previous router.
      std::weak_ptr<const ConfigSet> previous_config = config;
      router->reset();
      config.reset();
      EXPECT_TRUE(previous_config.expired());
      matched += ExpectSameAnswers(**layered, **whole, generator, 300);
      if (::testing::Test::HasFailure()) return;
      router = std::move(layered);
      config = next;
    }
  }
  // Chains stay layered until 64 routes changed since the whole build, then build whole again.
  EXPECT_GT(layered_steps, 200);
  EXPECT_GT(whole_steps, 10);
  EXPECT_GT(matched, 50000);
}

TEST(RouterLayeredTest, BuildsWholeWhenTheConfigIsNotThePreviousOneWithTheChanges) {
  RouteGenerator generator(7);
  std::vector<config::v1::Route> routes;
  for (int i = 1; i <= 100; ++i) routes.push_back(generator.Route(i * 2));
  std::shared_ptr<const ConfigSet> config = ConfigOf(routes);
  absl::StatusOr<std::unique_ptr<const Router>> router = Router::Build(config);
  ASSERT_TRUE(router.ok());

  // A route added that the changes do not list.
  std::vector<config::v1::Route> added = routes;
  added.push_back(generator.Route(51));
  auto built = Router::BuildOn(**router, ConfigOf(added), RouteChanges{});
  ASSERT_TRUE(built.ok());
  EXPECT_FALSE((*built)->layered());
  // A route deleted that the changes do not list.
  std::vector<config::v1::Route> removed = routes;
  removed.erase(removed.begin() + 10);
  built = Router::BuildOn(**router, ConfigOf(removed), RouteChanges{});
  ASSERT_TRUE(built.ok());
  EXPECT_FALSE((*built)->layered());
  // Another id in place of an unchanged one (same count), while a listed route changed.
  std::vector<config::v1::Route> swapped = routes;
  swapped[20] = generator.Route(41);
  swapped[30] = generator.Route(62);  // Id(62) is route 31's own id: listed below
  RouteChanges listed;
  const std::string listed_id = Id(62);
  listed.route_ids.push_back(listed_id);
  built = Router::BuildOn(**router, ConfigOf(swapped), listed);
  ASSERT_TRUE(built.ok());
  EXPECT_FALSE((*built)->layered());
  // Any service change.
  std::vector<config::v1::Route> one_more = routes;
  one_more.push_back(generator.Route(1001));
  RouteChanges with_service;
  const std::string new_id = Id(1001);
  with_service.route_ids.push_back(new_id);
  with_service.services_changed = true;
  built = Router::BuildOn(**router, ConfigOf(one_more), with_service);
  ASSERT_TRUE(built.ok());
  EXPECT_FALSE((*built)->layered());
  // The same change, told right: layered.
  with_service.services_changed = false;
  built = Router::BuildOn(**router, ConfigOf(one_more), with_service);
  ASSERT_TRUE(built.ok());
  EXPECT_TRUE((*built)->layered());
  EXPECT_EQ((*built)->route_count(), (*Router::Build(ConfigOf(one_more)))->route_count());
  // Routes listed out of id order cannot be mapped: whole.
  std::vector<config::v1::Route> unsorted_routes = routes;
  auto unsorted = std::make_shared<ConfigSet>(*ConfigOf(unsorted_routes));
  std::swap(unsorted->routes[3], unsorted->routes[4]);
  built = Router::BuildOn(**router, unsorted, RouteChanges{});
  ASSERT_TRUE(built.ok());
  EXPECT_FALSE((*built)->layered());
}

// The mask's filter has 4,096 bits: routes whose index shares a changed route's bit (every
// 4,096th) are still matched from the base.
TEST(RouterLayeredTest, RoutesSharingAChangedRoutesFilterBitStillMatch) {
  std::vector<config::v1::Route> routes;
  for (int i = 0; i < 9000; ++i) {
    RouteSpec spec;
    spec.id = i + 1;
    spec.paths = {absl::StrCat("/p", i, "/")};
    routes.push_back(MakeRoute(spec));
  }
  auto router = Router::Build(ConfigOf(routes));
  ASSERT_TRUE(router.ok());
  RouteSpec changed;
  changed.id = 6;  // index 5
  changed.paths = {"/changed/"};
  routes[5] = MakeRoute(changed);
  RouteChanges changes;
  const std::string id = Id(6);
  changes.route_ids.push_back(id);
  std::shared_ptr<const ConfigSet> next = ConfigOf(routes);
  auto layered = Router::BuildOn(**router, next, changes);
  ASSERT_TRUE(layered.ok());
  ASSERT_TRUE((*layered)->layered());
  for (int index : {5 + 4096, 5 + 8192, 4, 6}) {
    Request request;
    request.path = absl::StrCat("/p", index, "/x");
    const std::optional<Match> match = FindRoute(**layered, request);
    ASSERT_TRUE(match.has_value()) << request.path;
    EXPECT_EQ(match->route, &next->routes[static_cast<size_t>(index)]) << request.path;
  }
  Request old_path;
  old_path.path = "/p5/x";
  EXPECT_FALSE(FindRoute(**layered, old_path).has_value());
  Request new_path;
  new_path.path = "/changed/x";
  const std::optional<Match> match = FindRoute(**layered, new_path);
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->route, &next->routes[5]);
}

TEST(RouterLayeredTest, AnInvalidChangedRouteFailsAsAWholeBuildWould) {
  RouteGenerator generator(3);
  std::vector<config::v1::Route> routes;
  for (int i = 1; i <= 50; ++i) routes.push_back(generator.Route(i));
  auto router = Router::Build(ConfigOf(routes));
  ASSERT_TRUE(router.ok());
  RouteSpec bad;
  bad.id = 77;
  bad.paths = {"~/x(["};
  routes.push_back(MakeRoute(bad));
  RouteChanges changes;
  const std::string id = Id(77);
  changes.route_ids.push_back(id);
  auto next = ConfigOf(routes);
  auto layered = Router::BuildOn(**router, next, changes);
  auto whole = Router::Build(next);
  ASSERT_FALSE(whole.ok());
  ASSERT_FALSE(layered.ok());
  EXPECT_EQ(layered.status(), whole.status());
}

}  // namespace
}  // namespace portico::dp
