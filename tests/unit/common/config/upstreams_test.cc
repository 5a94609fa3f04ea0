// Kong's upstreams and targets: the address parser, the healthchecks record, the entity rules
// and their place in ValidateConfigSet.
#include "common/config/upstreams.h"

#include "common/base/uuid.h"
#include "common/config/entities.h"
#include "common/config/validate.h"
#include "gtest/gtest.h"

namespace portico {
namespace {

using config::v1::Target;
using config::v1::Upstream;
using nlohmann::json;

constexpr char kUpstreamId[] = "11111111-1111-4111-8111-111111111111";

TEST(KongAddressTest, FormatsTargetsAsKongStoresThem) {
  EXPECT_EQ(FormatTarget("10.0.0.1"), "10.0.0.1:8000");
  EXPECT_EQ(FormatTarget("010.000.0.1:80"), "10.0.0.1:80");
  EXPECT_EQ(FormatTarget("example.com"), "example.com:8000");
  EXPECT_EQ(FormatTarget("Example.COM:1"), "Example.COM:1");
  EXPECT_EQ(FormatTarget("my_host.internal.:0"), "my_host.internal.:0");
  EXPECT_EQ(FormatTarget("::1"), "[0000:0000:0000:0000:0000:0000:0000:0001]:8000");
  EXPECT_EQ(FormatTarget("[FE80::A:1]:81"), "[fe80:0000:0000:0000:0000:0000:000a:0001]:81");
  EXPECT_EQ(FormatTarget("10.0.0.1:8000"), "10.0.0.1:8000");  // idempotent
  for (const char* bad : {"", "a..b", ".a", "a-.b", "a b", "1.2.3", "256.0.0.1", "1.2.3.4:", "host:99999",
                          "[::1]x", "[::1]:", "1::2::3::4::5::6::7::8::9", "::g", "a:b", "é.com"}) {
    EXPECT_EQ(FormatTarget(bad), std::nullopt) << bad;
  }
  absl::StatusOr<KongAddress> parsed = ParseKongAddress("host:99999");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().message(), "invalid port number");
  EXPECT_EQ(ParseKongAddress("1.2.3").status().message(), "invalid ipv4 address: 1.2.3");
  EXPECT_EQ(ParseKongAddress("a b").status().message(), "invalid hostname: a b");
  EXPECT_EQ(ParseKongAddress("::g").status().message(), "invalid ipv6 address: ::g");
  EXPECT_EQ(ParseKongAddress("example.com:80")->port, 80);
  EXPECT_EQ(ParseKongAddress("1.2.3.4")->type, KongAddress::Type::kIpv4);
}

TEST(KongFieldCheckTest, PathSniAndNames) {
  EXPECT_EQ(KongPathError("/a/b%2F"), "");
  EXPECT_EQ(KongPathError("a"), "should start with: /");
  EXPECT_EQ(KongPathError("/a//b"), "must not have empty segments");
  EXPECT_EQ(KongPathError("/a b"), "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)");
  EXPECT_EQ(KongPathError("/a%zz"), "invalid url-encoded value: '%zz'");
  EXPECT_EQ(KongSniError("example.com"), "");
  EXPECT_EQ(KongSniError("10.0.0.1"), "must not be an IP");
  EXPECT_EQ(KongSniError("example.com:443"), "must not have a port");
  EXPECT_EQ(KongSniError("a b"), "invalid value: a b");
  EXPECT_EQ(KongHeaderNameError("X-Hash_1"), "");
  EXPECT_EQ(KongHeaderNameError("x y"), "bad header name 'x y', allowed characters are A-Z, a-z, 0-9, '_', and '-'");
  EXPECT_EQ(KongCookieNameError("c;"), "bad cookie name 'c;', allowed characters are A-Z, a-z, 0-9, '_', and '-'");
}

TEST(HealthchecksTest, EmptyRecordGetsEveryKongDefault) {
  FieldErrors errors;
  const json normalized = NormalizeUpstreamHealthchecks(json::object(), &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  const json expected = json::parse(R"j({
    "active": {"type": "http", "timeout": 1, "concurrency": 10, "http_path": "/", "https_sni": null,
               "https_verify_certificate": true, "headers": null,
               "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
               "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                             "tcp_failures": 0, "timeouts": 0, "http_failures": 0}},
    "passive": {"type": "http",
                "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                              300, 301, 302, 303, 304, 305, 306, 307, 308],
                            "successes": 0},
                "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0,
                              "http_failures": 0}},
    "threshold": 0})j");
  EXPECT_EQ(normalized, expected);
  EXPECT_EQ(json::parse(DefaultUpstreamHealthchecksJson()), expected);
  // Idempotent, and given values are kept.
  json custom = expected;
  custom["active"]["healthy"]["interval"] = 5;
  custom["active"]["headers"] = {{"x-probe", {"1"}}};
  custom["passive"]["unhealthy"]["tcp_failures"] = 3;
  custom["threshold"] = 25.5;
  EXPECT_EQ(NormalizeUpstreamHealthchecks(custom, &errors), custom);
  EXPECT_TRUE(errors.empty()) << errors.KongMessage();
}

TEST(HealthchecksTest, EveryFieldIsChecked) {
  const std::vector<std::pair<std::string, std::pair<std::string, std::string>>> cases = {
      {R"({"nope":1})", {"nope", "unknown field"}},
      {R"({"active":5})", {"active", "expected a record"}},
      {R"({"active":{"type":"udp"}})", {"active.type", "expected one of: tcp, http, https, grpc, grpcs"}},
      {R"({"active":{"timeout":70000}})", {"active.timeout", "value should be between 0 and 65535"}},
      {R"({"active":{"timeout":"x"}})", {"active.timeout", "expected a number"}},
      {R"({"active":{"concurrency":0}})", {"active.concurrency", "value should be between 1 and 2147483648"}},
      {R"({"active":{"http_path":"status"}})", {"active.http_path", "should start with: /"}},
      {R"({"active":{"https_sni":"10.0.0.1"}})", {"active.https_sni", "must not be an IP"}},
      {R"({"active":{"https_verify_certificate":"maybe"}})",
       {"active.https_verify_certificate", "expected a boolean"}},
      {R"({"active":{"headers":["a"]}})", {"active.headers", "expected a map"}},
      {R"({"active":{"headers":{"bad name":["1"]}}})",
       {"active.headers", "bad header name 'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'"}},
      {R"({"active":{"headers":{"x":[1]}}})", {"active.headers.x.1", "expected a string"}},
      {R"({"active":{"healthy":{"interval":-1}}})", {"active.healthy.interval", "value should be between 0 and 65535"}},
      {R"({"active":{"healthy":{"http_statuses":[200,99]}}})",
       {"active.healthy.http_statuses.2", "value should be between 100 and 999"}},
      {R"({"active":{"healthy":{"http_statuses":{"a":1}}}})", {"active.healthy.http_statuses", "expected an array"}},
      {R"({"active":{"healthy":{"successes":256}}})", {"active.healthy.successes", "value should be between 0 and 255"}},
      {R"({"active":{"unhealthy":{"interval":65536}}})",
       {"active.unhealthy.interval", "value should be between 0 and 65535"}},
      {R"({"active":{"unhealthy":{"http_statuses":["x"]}}})",
       {"active.unhealthy.http_statuses.1", "expected an integer"}},
      {R"({"active":{"unhealthy":{"tcp_failures":300}}})",
       {"active.unhealthy.tcp_failures", "value should be between 0 and 255"}},
      {R"({"active":{"unhealthy":{"timeouts":-1}}})", {"active.unhealthy.timeouts", "value should be between 0 and 255"}},
      {R"({"active":{"unhealthy":{"http_failures":1.5}}})", {"active.unhealthy.http_failures", "expected an integer"}},
      {R"({"active":{"unhealthy":{"other":1}}})", {"active.unhealthy.other", "unknown field"}},
      {R"({"passive":{"type":"icmp"}})", {"passive.type", "expected one of: tcp, http, https, grpc, grpcs"}},
      {R"({"passive":{"interval":1}})", {"passive.interval", "unknown field"}},
      {R"({"passive":{"healthy":{"http_statuses":[1000]}}})",
       {"passive.healthy.http_statuses.1", "value should be between 100 and 999"}},
      {R"({"passive":{"healthy":{"successes":-1}}})", {"passive.healthy.successes", "value should be between 0 and 255"}},
      {R"({"passive":{"unhealthy":{"http_statuses":[5000]}}})",
       {"passive.unhealthy.http_statuses.1", "value should be between 100 and 999"}},
      {R"({"passive":{"unhealthy":{"tcp_failures":256}}})",
       {"passive.unhealthy.tcp_failures", "value should be between 0 and 255"}},
      {R"({"passive":{"unhealthy":{"timeouts":256}}})",
       {"passive.unhealthy.timeouts", "value should be between 0 and 255"}},
      {R"({"passive":{"unhealthy":{"http_failures":256}}})",
       {"passive.unhealthy.http_failures", "value should be between 0 and 255"}},
      {R"({"threshold":101})", {"threshold", "value should be between 0 and 100"}},
  };
  for (const auto& [record, expected] : cases) {
    FieldErrors errors;
    NormalizeUpstreamHealthchecks(json::parse(record), &errors);
    ASSERT_EQ(errors.size(), 1u) << record << ": " << errors.KongMessage();
    EXPECT_EQ(errors.errors()[0].first, expected.first) << record;
    EXPECT_EQ(errors.errors()[0].second, expected.second) << record;
  }
}

TEST(HealthchecksTest, MergeIsRecursiveButReplacesHeaders) {
  json current = json::parse(DefaultUpstreamHealthchecksJson());
  current["active"]["headers"] = {{"a", {"1"}}, {"b", {"2"}}};
  MergeUpstreamHealthchecks(&current, json::parse(R"({"active":{"healthy":{"interval":5},"headers":{"c":["3"]}},
                                                      "threshold":null})"));
  EXPECT_EQ(current["active"]["healthy"]["interval"], 5);
  EXPECT_EQ(current["active"]["healthy"]["http_statuses"], json::parse("[200, 302]"));  // kept
  EXPECT_EQ(current["active"]["headers"], json::parse(R"({"c":["3"]})"));
  EXPECT_FALSE(current.contains("threshold"));  // null: back to the default when normalized
}

TEST(UpstreamBodyTest, AlgorithmAndHashOnAdjustEachOtherAsKongsShorthands) {
  auto rewritten = [](const char* body) {
    json j = json::parse(body);
    RewriteUpstreamBody(&j);
    return j;
  };
  EXPECT_EQ(rewritten(R"({"hash_on":"ip"})"), json::parse(R"({"hash_on":"ip","algorithm":"consistent-hashing"})"));
  EXPECT_EQ(rewritten(R"({"hash_on":"ip","algorithm":"round-robin"})")["algorithm"], "consistent-hashing");
  EXPECT_EQ(rewritten(R"({"hash_on":"none","algorithm":"consistent-hashing"})")["algorithm"], "round-robin");
  EXPECT_EQ(rewritten(R"({"algorithm":"least-connections","hash_on":"header"})"),
            json::parse(R"({"algorithm":"least-connections","hash_on":null})"));
  EXPECT_EQ(rewritten(R"({"algorithm":"latency"})"), json::parse(R"({"algorithm":"latency","hash_on":null})"));
  EXPECT_EQ(rewritten(R"({"algorithm":"consistent-hashing"})"), json::parse(R"({"algorithm":"consistent-hashing"})"));
  EXPECT_EQ(rewritten(R"({"hash_on":5})"), json::parse(R"({"hash_on":5})"));  // left for the reader to refuse
}

Upstream ValidUpstream() {
  Upstream u = static_cast<const Upstream&>(UpstreamsKind().defaults());
  u.set_id(kUpstreamId);
  u.set_name("backend.internal");
  return u;
}

// The single error `mutate` causes on a valid upstream (the first, when several).
std::pair<std::string, std::string> UpstreamError(void (*mutate)(Upstream*)) {
  Upstream u = ValidUpstream();
  mutate(&u);
  FieldErrors errors = ValidateUpstreamFields(u);
  if (errors.empty()) return {"", ""};
  return errors.errors()[0];
}

TEST(UpstreamRulesTest, DefaultsWithANameAreValid) {
  const Upstream u = ValidUpstream();
  EXPECT_TRUE(ValidateUpstreamFields(u).empty()) << ValidateUpstreamFields(u).KongMessage();
  EXPECT_EQ(u.algorithm(), "round-robin");
  EXPECT_EQ(u.hash_on(), "none");
  EXPECT_EQ(u.hash_fallback(), "none");
  EXPECT_EQ(u.hash_on_cookie_path(), "/");
  EXPECT_EQ(u.slots(), 10000);
  EXPECT_FALSE(u.use_srv_name());
  EXPECT_EQ(json::parse(u.healthchecks()), json::parse(DefaultUpstreamHealthchecksJson()));
}

TEST(UpstreamRulesTest, EveryFieldRuleCanFail) {
  using Error = std::pair<std::string, std::string>;
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_id("x"); }), Error("id", "expected a valid UUID"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->clear_name(); }), Error("name", "required field missing"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_name("a b"); }),
            Error("name", "Invalid name ('a b'); must be a valid hostname"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_name("10.0.0.1"); }),
            Error("name", "Invalid name ('10.0.0.1'); no ip addresses allowed"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_name("::1"); }),
            Error("name", "Invalid name ('::1'); no ip addresses allowed"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_name("backend:80"); }),
            Error("name", "Invalid name ('backend:80'); no port allowed"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_algorithm("random"); }),
            Error("algorithm", "expected one of: consistent-hashing, least-connections, round-robin, latency"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_on("body"); }),
            Error("hash_on", "expected one of: none, consumer, ip, header, cookie, path, query_arg, uri_capture"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_fallback(""); }),
            Error("hash_fallback", "expected one of: none, consumer, ip, header, cookie, path, query_arg, uri_capture"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_on_header("x y"); }),
            Error("hash_on_header", "bad header name 'x y', allowed characters are A-Z, a-z, 0-9, '_', and '-'"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_fallback_header(""); }),
            Error("hash_fallback_header", "length must be at least 1"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_on_cookie("a=b"); }),
            Error("hash_on_cookie", "bad cookie name 'a=b', allowed characters are A-Z, a-z, 0-9, '_', and '-'"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_on_cookie_path("x"); }),
            Error("hash_on_cookie_path", "should start with: /"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_on_cookie_path(""); }),
            Error("hash_on_cookie_path", "length must be at least 1"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_on_query_arg(""); }),
            Error("hash_on_query_arg", "length must be at least 1"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_fallback_query_arg(""); }),
            Error("hash_fallback_query_arg", "length must be at least 1"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_on_uri_capture(""); }),
            Error("hash_on_uri_capture", "length must be at least 1"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_hash_fallback_uri_capture(""); }),
            Error("hash_fallback_uri_capture", "length must be at least 1"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_slots(9); }), Error("slots", "value should be between 10 and 65536"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_slots(65537); }),
            Error("slots", "value should be between 10 and 65536"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_healthchecks("[1]"); }), Error("healthchecks", "expected a record"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_healthchecks(R"({"active":{"timeout":-1}})"); }),
            Error("healthchecks.active.timeout", "value should be between 0 and 65535"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_host_header("a b"); }), Error("host_header", "invalid hostname: a b"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_host_header("h:70000"); }),
            Error("host_header", "invalid port number"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_client_certificate_id("nope"); }),
            Error("client_certificate.id", "expected a valid UUID"));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->mutable_tags()->add_values("a,b"); }),
            Error("tags.1", "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"));
  // Accepted values.
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_host_header("example.com:8080"); }), Error("", ""));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_name("my_upstream"); }), Error("", ""));
  EXPECT_EQ(UpstreamError([](Upstream* u) { u->set_algorithm("latency"); }), Error("", ""));
}

TEST(UpstreamRulesTest, KongsHashEntityChecks) {
  struct Case {
    void (*mutate)(Upstream*);
    std::string field, message, condition;  // condition: the field named in the @entity error ("" = none)
  };
  const std::vector<Case> cases = {
      {[](Upstream* u) { u->set_hash_on("header"); }, "hash_on_header", "required field missing", "hash_on"},
      {[](Upstream* u) {
         u->set_hash_on("ip");
         u->set_hash_fallback("header");
       },
       "hash_fallback_header", "required field missing", "hash_fallback"},
      {[](Upstream* u) { u->set_hash_on("cookie"); }, "hash_on_cookie", "required field missing", "hash_on"},
      {[](Upstream* u) {
         u->set_hash_on("ip");
         u->set_hash_fallback("cookie");
       },
       "hash_on_cookie", "required field missing", "hash_fallback"},
      {[](Upstream* u) { u->set_hash_fallback("ip"); }, "hash_fallback", "expected one of: none", "hash_on"},
      {[](Upstream* u) {
         u->set_hash_on("cookie");
         u->set_hash_on_cookie("c");
         u->set_hash_fallback("ip");
       },
       "hash_fallback", "expected one of: none", "hash_on"},
      {[](Upstream* u) {
         u->set_hash_on("consumer");
         u->set_hash_fallback("consumer");
       },
       "hash_fallback", "expected one of: none, ip, header, cookie, path, query_arg, uri_capture", "hash_on"},
      {[](Upstream* u) {
         u->set_hash_on("ip");
         u->set_hash_fallback("ip");
       },
       "hash_fallback", "expected one of: none, consumer, header, cookie, path, query_arg, uri_capture", "hash_on"},
      {[](Upstream* u) {
         u->set_hash_on("path");
         u->set_hash_fallback("path");
       },
       "hash_fallback", "expected one of: none, consumer, header, cookie, query_arg, ip, uri_capture", "hash_on"},
      {[](Upstream* u) {
         u->set_hash_on("header");
         u->set_hash_on_header("x-a");
         u->set_hash_fallback("header");
         u->set_hash_fallback_header("x-a");
       },
       "@entity", "values of these fields must be distinct: 'hash_on_header', 'hash_fallback_header'", ""},
      {[](Upstream* u) { u->set_hash_on("query_arg"); }, "hash_on_query_arg", "required field missing", "hash_on"},
      {[](Upstream* u) {
         u->set_hash_on("ip");
         u->set_hash_fallback("query_arg");
       },
       "hash_fallback_query_arg", "required field missing", "hash_fallback"},
      {[](Upstream* u) {
         u->set_hash_on("query_arg");
         u->set_hash_on_query_arg("q");
         u->set_hash_fallback("query_arg");
         u->set_hash_fallback_query_arg("q");
       },
       "@entity", "values of these fields must be distinct: 'hash_on_query_arg', 'hash_fallback_query_arg'", ""},
      {[](Upstream* u) { u->set_hash_on("uri_capture"); }, "hash_on_uri_capture", "required field missing", "hash_on"},
      {[](Upstream* u) {
         u->set_hash_on("ip");
         u->set_hash_fallback("uri_capture");
       },
       "hash_fallback_uri_capture", "required field missing", "hash_fallback"},
      {[](Upstream* u) {
         u->set_hash_on("uri_capture");
         u->set_hash_on_uri_capture("c");
         u->set_hash_fallback("uri_capture");
         u->set_hash_fallback_uri_capture("c");
       },
       "@entity", "values of these fields must be distinct: 'hash_on_uri_capture', 'hash_fallback_uri_capture'", ""},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    Upstream u = ValidUpstream();
    u.set_algorithm("consistent-hashing");
    cases[i].mutate(&u);
    const FieldErrors errors = ValidateUpstreamFields(u);
    bool found = false;
    for (const auto& [path, message] : errors.errors()) {
      if (path == cases[i].field && message == cases[i].message) found = true;
    }
    EXPECT_TRUE(found) << "case " << i << ": " << errors.KongMessage();
    if (!cases[i].condition.empty()) {
      EXPECT_TRUE(errors.Has("@entity")) << "case " << i;
      EXPECT_NE(errors.KongMessage().find("failed conditional validation given value of field '" +
                                          cases[i].condition + "'"),
                std::string::npos)
          << "case " << i << ": " << errors.KongMessage();
    }
  }
  // A consistent configuration passes.
  Upstream u = ValidUpstream();
  u.set_algorithm("consistent-hashing");
  u.set_hash_on("header");
  u.set_hash_on_header("x-user");
  u.set_hash_fallback("cookie");
  u.set_hash_on_cookie("session");
  EXPECT_TRUE(ValidateUpstreamFields(u).empty()) << ValidateUpstreamFields(u).KongMessage();
}

Target ValidTarget() {
  Target t = static_cast<const Target&>(TargetsKind().defaults());
  t.set_id("22222222-2222-4222-8222-222222222222");
  t.set_upstream_id(kUpstreamId);
  t.set_target("10.0.0.1:8000");
  return t;
}

TEST(TargetRulesTest, EveryRuleCanFail) {
  EXPECT_EQ(ValidTarget().weight(), 100);
  EXPECT_TRUE(ValidateTargetFields(ValidTarget()).empty()) << ValidateTargetFields(ValidTarget()).KongMessage();
  auto error = [](void (*mutate)(Target*)) {
    Target t = ValidTarget();
    mutate(&t);
    FieldErrors errors = ValidateTargetFields(t);
    return errors.empty() ? std::pair<std::string, std::string>() : errors.errors()[0];
  };
  using Error = std::pair<std::string, std::string>;
  EXPECT_EQ(error([](Target* t) { t->set_id("x"); }), Error("id", "expected a valid UUID"));
  EXPECT_EQ(error([](Target* t) { t->clear_upstream_id(); }), Error("upstream", "required field missing"));
  EXPECT_EQ(error([](Target* t) { t->set_upstream_id("u"); }), Error("upstream.id", "expected a valid UUID"));
  EXPECT_EQ(error([](Target* t) { t->clear_target(); }), Error("target", "required field missing"));
  EXPECT_EQ(error([](Target* t) { t->set_target("a b"); }),
            Error("target", "Invalid target ('a b'); not a valid hostname or ip address"));
  EXPECT_EQ(error([](Target* t) { t->set_target("10.0.0.1"); }),
            Error("target", "not in its normalized form '10.0.0.1:8000'"));
  EXPECT_EQ(error([](Target* t) { t->set_weight(65536); }), Error("weight", "value should be between 0 and 65535"));
  EXPECT_EQ(error([](Target* t) { t->set_weight(-1); }), Error("weight", "value should be between 0 and 65535"));
  EXPECT_EQ(error([](Target* t) { t->mutable_tags()->add_values(""); }).first, "tags.1");
  EXPECT_EQ(error([](Target* t) { t->set_weight(0); }), Error());  // 0: takes no traffic, valid

  Target t = ValidTarget();
  t.set_target("::1");
  NormalizeTarget(&t);
  EXPECT_EQ(t.target(), "[0000:0000:0000:0000:0000:0000:0000:0001]:8000");
  t.set_target("a b");
  NormalizeTarget(&t);
  EXPECT_EQ(t.target(), "a b");  // left for the rules to report
}

TEST(UpstreamConfigSetTest, TargetsNeedTheirUpstreamOnceEach) {
  ConfigSet config;
  config.upstreams.push_back(ValidUpstream());
  config.targets.push_back(ValidTarget());
  ASSERT_TRUE(ValidateConfigSet(config).ok()) << ValidateConfigSet(config);

  ConfigSet orphan = config;
  orphan.targets[0].set_upstream_id("33333333-3333-4333-8333-333333333333");
  EXPECT_NE(ValidateConfigSet(orphan).message().find("upstream 33333333-3333-4333-8333-333333333333 does not exist"),
            std::string::npos)
      << ValidateConfigSet(orphan);

  ConfigSet twice = config;
  twice.targets.push_back(ValidTarget());
  twice.targets[1].set_id("44444444-4444-4444-8444-444444444444");
  EXPECT_NE(ValidateConfigSet(twice).message().find("a second '10.0.0.1:8000' target of its upstream"),
            std::string::npos)
      << ValidateConfigSet(twice);

  ConfigSet same_name = config;
  same_name.upstreams.push_back(ValidUpstream());
  same_name.upstreams[1].set_id("55555555-5555-4555-8555-555555555555");
  EXPECT_NE(ValidateConfigSet(same_name).message().find("duplicate name 'backend.internal'"), std::string::npos)
      << ValidateConfigSet(same_name);

  ConfigSet invalid = config;
  invalid.upstreams[0].set_slots(1);
  EXPECT_NE(ValidateConfigSet(invalid).message().find("slots: value should be between 10 and 65536"),
            std::string::npos)
      << ValidateConfigSet(invalid);

  ConfigSet bad_target = config;
  bad_target.targets[0].set_weight(70000);
  EXPECT_NE(ValidateConfigSet(bad_target).message().find("target 22222222"), std::string::npos);
}

}  // namespace
}  // namespace portico
