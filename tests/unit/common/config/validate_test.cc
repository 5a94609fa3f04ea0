#include "common/config/validate.h"

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/config/entity_json.h"
#include "gtest/gtest.h"

namespace portico {
namespace {

using config::v1::Route;
using config::v1::Service;

constexpr char kServiceId[] = "11111111-1111-4111-8111-111111111111";
constexpr char kRouteId[] = "22222222-2222-4222-8222-222222222222";

Service ValidService() {
  Service s = DefaultService();
  s.set_id(kServiceId);
  s.set_host("example.com");
  return s;
}

Route ValidRoute() {
  Route r = DefaultRoute();
  r.set_id(kRouteId);
  r.mutable_paths()->add_values("/api");
  return r;
}

struct Case {
  std::string name;
  std::function<void(void*)> mutate;
  std::string path;     // "" = expect valid
  std::string message;  // exact message for `path`
};

std::string MessageFor(const FieldErrors& errors, const std::string& path) {
  std::string all;
  for (const auto& [p, m] : errors.errors()) {
    if (p == path) return m;
    all += p + "=" + m + "; ";
  }
  return "<none; got: " + all + ">";
}

#define S(body) [](void* p) { Service& s = *static_cast<Service*>(p); body; }
#define R(body) [](void* p) { Route& r = *static_cast<Route*>(p); body; }

TEST(ValidateServiceTest, Table) {
  const std::vector<Case> cases = {
      {"defaults are valid", S((void)s), "", ""},
      {"name ok", S(s.set_name("my-svc_1.v2~x")), "", ""},
      {"utf8 name ok", S(s.set_name("s\xc3\xa9rvice")), "", ""},
      {"name bad char", S(s.set_name("a b")), "name",
       "invalid value 'a b': it must only contain alphanumeric and '., -, _, ~' characters"},
      {"protocol unknown", S(s.set_protocol("ftp")), "protocol",
       "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss"},
      {"host missing", S(s.clear_host()), "host", "required field missing"},
      {"host with port", S(s.set_host("example.com:80")), "host", "must not have a port"},
      {"host ipv4", S(s.set_host("10.0.0.1")), "", ""},
      {"host ipv6", S(s.set_host("::1")), "", ""},
      {"host bad", S(s.set_host("exa mple")), "host", "invalid value: exa mple"},
      {"port too big", S(s.set_port(65536)), "port", "value should be between 0 and 65535"},
      {"port negative", S(s.set_port(-1)), "port", "value should be between 0 and 65535"},
      {"path ok", S(s.set_path("/a/b")), "", ""},
      {"path no slash", S(s.set_path("a")), "path", "should start with: /"},
      {"path double slash", S(s.set_path("/a//b")), "path", "must not have empty segments"},
      {"path for tcp", S(s.set_protocol("tcp"); s.set_path("/a")), "path", "value must be null"},
      {"timeout zero", S(s.set_connect_timeout(0)), "connect_timeout",
       "value should be between 1 and 2147483646"},
      {"timeout max ok", S(s.set_read_timeout(2147483646)), "", ""},
      {"timeout too big", S(s.set_write_timeout(2147483647)), "write_timeout",
       "value should be between 1 and 2147483646"},
      {"retries too big", S(s.set_retries(32768)), "retries", "value should be between 0 and 32767"},
      {"retries zero ok", S(s.set_retries(0)), "", ""},
      {"tls_verify on http", S(s.set_tls_verify(true)), "tls_verify", "value must be null"},
      {"tls_verify on https", S(s.set_protocol("https"); s.set_tls_verify(true)), "", ""},
      {"ws service", S(s.set_protocol("ws")), "", ""},
      {"wss service with tls_verify", S(s.set_protocol("wss"); s.set_tls_verify(true)), "", ""},
      {"tls_verify on ws", S(s.set_protocol("ws"); s.set_tls_verify(true)), "tls_verify", "value must be null"},
      {"tls_verify_depth range", S(s.set_protocol("https"); s.set_tls_verify_depth(65)), "tls_verify_depth",
       "value should be between 0 and 64"},
      {"bad tag", S(s.mutable_tags()->add_values("a,b")), "tags.1",
       "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"},
  };
  for (const Case& c : cases) {
    Service s = ValidService();
    c.mutate(&s);
    FieldErrors errors = ValidateServiceFields(s);
    if (c.path.empty()) {
      EXPECT_TRUE(errors.empty()) << c.name << ": " << errors.KongMessage();
    } else {
      EXPECT_EQ(MessageFor(errors, c.path), c.message) << c.name;
    }
  }
}

TEST(ValidateRouteTest, Table) {
  const std::string kHttpsRule =
      "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'";
  const std::vector<Case> cases = {
      {"paths only", R((void)r), "", ""},
      {"nothing to match (default protocols)", R(r.clear_paths()), "@entity",
       "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"},
      {"nothing to match (http)", R(r.clear_paths(); r.clear_protocols(); r.add_protocols("http")), "@entity",
       "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"},
      {"snis alone ok for https", R(r.clear_paths(); r.clear_protocols(); r.add_protocols("https");
                                    r.mutable_snis()->add_values("a.example.com")), "", ""},
      {"snis with http only", R(r.clear_protocols(); r.add_protocols("http");
                                r.mutable_snis()->add_values("a.example.com")), "@entity",
       "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', 'tls_passthrough' or 'wss'"},
      {"unknown protocol", R(r.clear_protocols(); r.add_protocols("ftp")), "protocols.1",
       "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss"},
      {"mixed groups", R(r.add_protocols("tcp")), "protocols",
       "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), ('tls_passthrough'), "
       "('grpc', 'grpcs'), ('ws', 'wss')"},
      {"ws with http", R(r.clear_protocols(); r.add_protocols("http"); r.add_protocols("ws")), "protocols",
       "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), ('tls_passthrough'), "
       "('grpc', 'grpcs'), ('ws', 'wss')"},
      {"ws and wss with paths ok", R(r.clear_protocols(); r.add_protocols("ws"); r.add_protocols("wss")), "", ""},
      {"nothing to match (ws)", R(r.clear_paths(); r.clear_protocols(); r.add_protocols("ws")), "@entity",
       "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'ws'"},
      {"nothing to match (wss)", R(r.clear_paths(); r.clear_protocols(); r.add_protocols("wss")), "@entity",
       "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'wss'"},
      {"snis alone ok for wss", R(r.clear_paths(); r.clear_protocols(); r.add_protocols("wss");
                                  r.mutable_snis()->add_values("a.example.com")), "", ""},
      {"snis with ws only", R(r.clear_protocols(); r.add_protocols("ws");
                              r.mutable_snis()->add_values("a.example.com")), "@entity",
       "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', 'tls_passthrough' or 'wss'"},
      {"methods uppercase", R(r.mutable_methods()->add_values("GET")), "", ""},
      {"methods lowercase", R(r.mutable_methods()->add_values("get")), "methods.1", "invalid value: get"},
      {"host wildcard left", R(r.mutable_hosts()->add_values("*.example.com")), "", ""},
      {"host wildcard right", R(r.mutable_hosts()->add_values("example.*")), "", ""},
      {"host with port", R(r.mutable_hosts()->add_values("example.com:8080")), "", ""},
      {"host ipv6 with port", R(r.mutable_hosts()->add_values("[::1]:8080")), "", ""},
      {"host port too large", R(r.mutable_hosts()->add_values("example.com:70000")), "hosts.1",
       "invalid port number: example.com:70000"},
      {"host ipv6 port too large", R(r.mutable_hosts()->add_values("[::1]:70000")), "hosts.1",
       "invalid port number: [::1]:70000"},
      {"host port not a number", R(r.mutable_hosts()->add_values("example.com:x")), "hosts.1",
       "invalid port number: example.com:x"},
      {"host two wildcards", R(r.mutable_hosts()->add_values("*.example.*")), "hosts.1",
       "invalid wildcard: must have at most one wildcard"},
      {"host wildcard middle", R(r.mutable_hosts()->add_values("a.*.com")), "hosts.1",
       "invalid wildcard: must be placed at leftmost or rightmost label"},
      {"host invalid", R(r.mutable_hosts()->add_values("bad host")), "hosts.1", "invalid value: bad host"},
      {"regex path accepted", R(r.mutable_paths()->add_values("~/v[0-9]+/users$")), "", ""},
      {"path no prefix", R(r.mutable_paths()->add_values("api")), "paths.2",
       "should start with: / (fixed path) or ~ (regex path)"},
      {"path double slash", R(r.mutable_paths()->add_values("/a//b")), "paths.2",
       "non-normalized path, consider use '/a/b' instead"},
      {"path dot segment", R(r.mutable_paths()->add_values("/a/../b")), "paths.2",
       "non-normalized path, consider use '/b' instead"},
      {"path encoded unreserved", R(r.mutable_paths()->add_values("/%7Euser")), "paths.2",
       "non-normalized path, consider use '/~user' instead"},
      {"path encoded reserved lowercase", R(r.mutable_paths()->add_values("/a%2fb")), "paths.2",
       "non-normalized path, consider use '/a%2Fb' instead"},
      {"path encoded reserved ok", R(r.mutable_paths()->add_values("/a%2Fb")), "", ""},
      {"path decodes to a byte that is not UTF-8", R(r.mutable_paths()->add_values("/%de")), "paths.2",
       "non-normalized path, consider use '/%DE' instead"},
      {"path bad char", R(r.mutable_paths()->add_values("/a b")), "paths.2",
       "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"},
      {"path bad percent", R(r.mutable_paths()->add_values("/a%zz")), "paths.2",
       "invalid url-encoded value: '/a%zz'"},
      {"regex path bad", R(r.mutable_paths()->add_values("~/a(b")), "paths.2",
       "invalid regex: '/a(b' (RE2 returned: missing ): ^/a(b)"},
      {"regex path lookahead unsupported", R(r.mutable_paths()->add_values("~/a(?=b)")), "paths.2",
       "invalid regex: '/a(?=b)' (RE2 returned: invalid perl operator: (?=)"},
      {"regex path kong named group", R(r.mutable_paths()->add_values("~/v(?<ver>\\d+)")), "", ""},
      {"regex path escaped slash ok", R(r.mutable_paths()->add_values("~\\/a\\/\\d+")), "", ""},
      {"regex path tilde only", R(r.mutable_paths()->add_values("~")), "paths.2", "length must be at least 2"},
      {"header regex ok", R((*r.mutable_headers()->mutable_values())["x-v"].add_values("~*^v[0-9]+$")), "", ""},
      {"header regex bad", R((*r.mutable_headers()->mutable_values())["x-v"].add_values("~*[a")), "headers.x-v",
       "invalid regex: '[a' (RE2 returned: missing ]: [a)"},
      {"host only wildcard", R(r.mutable_hosts()->add_values("*")), "hosts.1",
       "invalid wildcard: must be placed at leftmost or rightmost label"},
      {"host header case-insensitive", R((*r.mutable_headers()->mutable_values())["HoSt"].add_values("a")), "headers",
       "cannot contain 'host' header"},
      {"header ok", R((*r.mutable_headers()->mutable_values())["x-foo"].add_values("a")), "", ""},
      {"header host forbidden", R((*r.mutable_headers()->mutable_values())["host"].add_values("a")), "headers",
       "cannot contain 'host' header"},
      {"redirect code bad", R(r.set_https_redirect_status_code(303)), "https_redirect_status_code",
       "expected one of: 426, 301, 302, 307, 308"},
      {"redirect code 308 ok", R(r.set_https_redirect_status_code(308)), "", ""},
      {"path_handling bad", R(r.set_path_handling("v2")), "path_handling", "expected one of: v0, v1"},
      {"regex_priority negative ok", R(r.set_regex_priority(-5)), "", ""},
      {"grpc strip_path", R(r.clear_protocols(); r.add_protocols("grpc")), "strip_path",
       "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"},
      {"grpc ok", R(r.clear_protocols(); r.add_protocols("grpc"); r.set_strip_path(false)), "", ""},
      {"tcp needs sources", R(r.clear_paths(); r.clear_protocols(); r.add_protocols("tcp")), "@entity",
       "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'"},
      {"tcp with source", R(r.clear_paths(); r.clear_protocols(); r.add_protocols("tcp");
                            r.mutable_sources()->add_values()->set_ip("10.0.0.0/8")), "", ""},
      {"bad cidr", R(r.clear_paths(); r.clear_protocols(); r.add_protocols("tcp");
                     r.mutable_sources()->add_values()->set_ip("10.0.0.0/33")), "sources.1.ip",
       "invalid ip or cidr range: '10.0.0.0/33'"},
      {"service id not uuid", R(r.set_service_id("nope")), "service.id", "expected a valid UUID"},
  };
  (void)kHttpsRule;
  for (const Case& c : cases) {
    Route r = ValidRoute();
    c.mutate(&r);
    FieldErrors errors = ValidateRouteFields(r);
    if (c.path.empty()) {
      EXPECT_TRUE(errors.empty()) << c.name << ": " << errors.KongMessage();
    } else {
      EXPECT_EQ(MessageFor(errors, c.path), c.message) << c.name;
    }
  }
}

TEST(FieldErrorsTest, KongMessageCountsAndSorts) {
  FieldErrors one;
  one.Add("host", "required field missing");
  EXPECT_EQ(one.KongMessage(), "schema violation (host: required field missing)");
  FieldErrors two;
  two.Add("port", "value should be between 0 and 65535");
  two.Add("host", "required field missing");
  EXPECT_EQ(two.KongMessage(),
            "2 schema violations (host: required field missing; port: value should be between 0 and 65535)");
  EXPECT_EQ(two.ToStatus("service x: ").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateConfigSetTest, AcceptsConsistentSet) {
  ConfigSet set;
  set.services.push_back(ValidService());
  Route r = ValidRoute();
  r.set_service_id(kServiceId);
  set.routes.push_back(r);
  EXPECT_TRUE(ValidateConfigSet(set).ok()) << ValidateConfigSet(set);
}

TEST(ValidateConfigSetTest, RejectsDanglingReferenceNamingTheRoute) {
  ConfigSet set;
  Route r = ValidRoute();
  r.set_service_id(kServiceId);  // no such service in the set
  set.routes.push_back(r);
  absl::Status status = ValidateConfigSet(set);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(status.message()).find(std::string("route ") + kRouteId), std::string::npos) << status;
}

TEST(ValidateConfigSetTest, RejectsDuplicatesBadIdsAndInvalidEntities) {
  {
    ConfigSet set;
    set.services = {ValidService(), ValidService()};
    EXPECT_NE(std::string(ValidateConfigSet(set).message()).find("duplicate id"), std::string::npos);
  }
  {
    ConfigSet set;
    Service a = ValidService(), b = ValidService();
    b.set_id("33333333-3333-4333-8333-333333333333");
    a.set_name("same");
    b.set_name("same");
    set.services = {a, b};
    EXPECT_NE(std::string(ValidateConfigSet(set).message()).find("duplicate name 'same'"), std::string::npos);
  }
  {
    ConfigSet set;
    Service a = ValidService();
    a.set_id("not-a-uuid");
    set.services = {a};
    EXPECT_NE(std::string(ValidateConfigSet(set).message()).find("not-a-uuid"), std::string::npos);
  }
  {
    ConfigSet set;
    Service a = ValidService();
    a.set_port(70000);
    set.services = {a};
    absl::Status status = ValidateConfigSet(set);
    EXPECT_EQ(std::string(status.message()),
              std::string("service ") + kServiceId + ": schema violation (port: value should be between 0 and 65535)");
  }
  {
    ConfigSet set;
    Route r = ValidRoute();
    r.clear_paths();
    set.routes = {r};
    EXPECT_NE(std::string(ValidateConfigSet(set).message()).find(std::string("route ") + kRouteId),
              std::string::npos);
  }
}

// With the entities a delta upserted listed, only their own rules run again; ids, uniqueness and
// references are still checked over the whole set.
TEST(ValidateConfigSetTest, OnlyChangedEntitiesHaveTheirOwnRulesCheckedAgain) {
  ConfigSet set;
  Service bad_port = ValidService();
  bad_port.set_port(70000);  // breaks the service's own rules
  set.services.push_back(bad_port);
  Route r = ValidRoute();
  r.set_service_id(kServiceId);
  set.routes.push_back(r);

  ChangedEntities only_route;
  only_route.Add("routes", kRouteId);
  EXPECT_TRUE(ValidateConfigSet(set, &only_route).ok()) << "the unchanged service's own rules ran again";
  ChangedEntities service_too = only_route;
  service_too.Add("services", kServiceId);
  EXPECT_NE(std::string(ValidateConfigSet(set, &service_too).message()).find("port: value should be between"),
            std::string::npos);
  EXPECT_FALSE(ValidateConfigSet(set).ok());  // no list: everything is checked

  // Cross-entity checks do not depend on the list.
  ConfigSet dangling;
  dangling.routes.push_back(r);  // its service is not in the set
  ChangedEntities nothing;
  EXPECT_NE(std::string(ValidateConfigSet(dangling, &nothing).message()).find("does not exist"), std::string::npos);
  ConfigSet duplicate;
  duplicate.services = {ValidService(), ValidService()};
  EXPECT_NE(std::string(ValidateConfigSet(duplicate, &nothing).message()).find("duplicate id"), std::string::npos);
  ConfigSet bad_id;
  Service not_uuid = ValidService();
  not_uuid.set_id("not-a-uuid");
  bad_id.services = {not_uuid};
  EXPECT_NE(std::string(ValidateConfigSet(bad_id, &nothing).message()).find("not-a-uuid"), std::string::npos);
}

// A change list that lists every upsert and delete (a DP's delta) lets services and routes be
// checked by their changes alone. For random changes to a valid config, that check accepts
// exactly what the check of the whole set accepts, and refuses with a message naming the same
// kind of fault.
TEST(ValidateConfigSetTest, ChangesAloneGiveTheWholeSetsVerdict) {
  std::mt19937 rng(17);
  auto pick = [&rng](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  auto uuid = [](int n) { return absl::StrFormat("%08x-0000-4000-8000-%012x", n, n); };
  auto by_id = [](const auto& a, const auto& b) { return a.id() < b.id(); };
  int next_id = 1;
  ConfigSet base;
  for (int i = 0; i < 5; ++i) {
    Service s = ValidService();
    s.set_id(uuid(next_id++));
    s.set_name(absl::StrCat("svc", i));
    base.services.push_back(s);
  }
  for (int i = 0; i < 40; ++i) {
    Route r = ValidRoute();
    r.set_id(uuid(next_id++));
    r.set_name(absl::StrCat("route", i));
    r.set_service_id(base.services[static_cast<size_t>(i % 5)].id());
    base.routes.push_back(r);
  }
  std::sort(base.services.begin(), base.services.end(), by_id);
  std::sort(base.routes.begin(), base.routes.end(), by_id);
  ASSERT_TRUE(ValidateConfigSet(base).ok());

  int accepted = 0, refused = 0, with_deletes = 0;
  std::map<std::string, int> faults;
  for (int step = 0; step < 3000; ++step) {
    ConfigSet next = base;
    ChangedEntities changed;
    changed.MarkListsDeletes();
    const int ops = 1 + pick(3);
    for (int op = 0; op < ops; ++op) {
      const int what = pick(100);
      if (what < 30 || next.routes.empty()) {  // a new route: its name and service may clash or dangle
        Route r = ValidRoute();
        r.set_id(pick(40) == 0 ? "not-a-uuid" : uuid(next_id++));
        if (pick(3) != 0) r.set_name(absl::StrCat("route", pick(400)));
        r.set_service_id(pick(10) == 0 || next.services.empty() ? uuid(999999)
                                                                 : next.services[static_cast<size_t>(pick(static_cast<int>(next.services.size())))].id());
        if (pick(30) == 0) r.clear_paths();  // breaks its own rules
        changed.Add("routes", r.id());
        next.routes.push_back(r);
      } else if (what < 55) {  // an update of a route
        Route& r = next.routes[static_cast<size_t>(pick(static_cast<int>(next.routes.size())))];
        if (pick(2) == 0) r.set_name(absl::StrCat("route", pick(400)));
        if (pick(3) == 0 && !next.services.empty()) {
          r.set_service_id(next.services[static_cast<size_t>(pick(static_cast<int>(next.services.size())))].id());
        }
        changed.Add("routes", r.id());
      } else if (what < 75) {  // a route deleted
        const auto gone = next.routes.begin() + pick(static_cast<int>(next.routes.size()));
        changed.AddDeleted("routes", gone->id());
        next.routes.erase(gone);
      } else if (what < 85 && !next.services.empty()) {  // a service deleted: its routes dangle
        const auto gone = next.services.begin() + pick(static_cast<int>(next.services.size()));
        changed.AddDeleted("services", gone->id());
        next.services.erase(gone);
      } else {  // a service added or renamed: its name may clash
        Service s = ValidService();
        if (pick(2) == 0 && !next.services.empty()) {
          s = next.services[static_cast<size_t>(pick(static_cast<int>(next.services.size())))];
        } else {
          s.set_id(uuid(next_id++));
          next.services.push_back(s);
        }
        s.set_name(absl::StrCat("svc", pick(12)));
        for (Service& held : next.services) {
          if (held.id() == s.id()) held = s;
        }
        changed.Add("services", s.id());
      }
    }
    std::sort(next.services.begin(), next.services.end(), by_id);
    std::sort(next.routes.begin(), next.routes.end(), by_id);
    // A duplicate id cannot come out of a delta (ids are keys); skip the rare generated one.
    if (std::adjacent_find(next.routes.begin(), next.routes.end(),
                           [](const Route& a, const Route& b) { return a.id() == b.id(); }) != next.routes.end()) {
      continue;
    }
    const absl::Status whole = ValidateConfigSet(next);
    const absl::Status alone = ValidateConfigSet(next, &changed);
    ASSERT_EQ(whole.ok(), alone.ok()) << "step " << step << ": whole: " << whole << " / changes alone: " << alone;
    with_deletes += changed.AnyDeleted("routes") || changed.AnyDeleted("services") ? 1 : 0;
    if (whole.ok()) {
      ++accepted;
      base = std::move(next);
      continue;
    }
    ++refused;
    // (With several faults, each check may name a different one first.)
    for (const char* fault : {"duplicate name", "does not exist", "not a UUID", "schema violation"}) {
      if (absl::StrContains(whole.message(), fault)) {
        ++faults[fault];
        if (ops == 1) {
          EXPECT_TRUE(absl::StrContains(alone.message(), fault)) << "step " << step << ": " << whole << " / " << alone;
        }
      }
    }
  }
  EXPECT_GT(accepted, 500);
  EXPECT_GT(refused, 500);
  EXPECT_GT(with_deletes, 500);
  EXPECT_GT(faults["duplicate name"], 50);
  EXPECT_GT(faults["does not exist"], 50);
  EXPECT_GT(faults["not a UUID"], 10);
  EXPECT_GT(faults["schema violation"], 10);
}

}  // namespace
}  // namespace portico
