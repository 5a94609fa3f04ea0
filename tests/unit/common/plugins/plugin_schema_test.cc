// The bundled plugins' config schemas: Kong's defaults, errors by field, idempotence, lenience.
#include "common/plugins/plugin_schema.h"

#include "gtest/gtest.h"

namespace portico::plugins {
namespace {

using nlohmann::json;

json Normalize(const char* plugin, const json& config, FieldErrors* errors) {
  const PluginSchema* schema = FindPluginSchema(plugin);
  EXPECT_NE(schema, nullptr) << plugin;
  return schema == nullptr ? json() : schema->normalize(config, errors);
}

TEST(PluginSchemaTest, BundledPluginsAreSortedWithKongPriorities) {
  std::vector<std::string> names;
  for (const PluginSchema* s : BundledPluginSchemas()) names.push_back(s->name);
  EXPECT_EQ(names, (std::vector<std::string>{"acl", "basic-auth", "correlation-id", "cors", "file-log", "http-log",
                                            "ip-restriction", "jwt", "key-auth", "opentelemetry", "prometheus", "rate-limiting",
                                            "request-size-limiting", "request-termination",
                                            "request-transformer", "response-transformer"}));
  EXPECT_EQ(FindPluginSchema("jwt")->priority, 1450);
  EXPECT_TRUE(FindPluginSchema("jwt")->no_consumer);
  EXPECT_EQ(FindPluginSchema("cors")->priority, 2000);
  EXPECT_TRUE(FindPluginSchema("cors")->no_consumer);
  EXPECT_EQ(FindPluginSchema("request-transformer")->priority, 801);
  EXPECT_EQ(FindPluginSchema("key-auth")->priority, 1250);
  EXPECT_EQ(FindPluginSchema("basic-auth")->priority, 1100);
  EXPECT_EQ(FindPluginSchema("acl")->priority, 950);
  EXPECT_EQ(FindPluginSchema("prometheus")->priority, 13);
  EXPECT_EQ(FindPluginSchema("ip-restriction")->priority, 990);
  EXPECT_EQ(FindPluginSchema("request-size-limiting")->priority, 951);
  EXPECT_EQ(FindPluginSchema("request-termination")->priority, 2);
  EXPECT_EQ(FindPluginSchema("opentelemetry")->priority, 14);
  EXPECT_EQ(FindPluginSchema("http-log")->priority, 12);
  EXPECT_EQ(FindPluginSchema("file-log")->priority, 9);
  EXPECT_EQ(FindPluginSchema("no-such-plugin"), nullptr);
  EXPECT_EQ(PluginNotEnabledMessage("x"), "plugin 'x' not enabled; add it to the 'plugins' configuration property");
}

TEST(PluginSchemaTest, DefaultsAreKongsAndNormalizingTwiceChangesNothing) {
  for (const PluginSchema* schema : BundledPluginSchemas()) {
    json config = std::string(schema->name) == "ip-restriction"  ? json{{"allow", {"10.0.0.1"}}}
                  : std::string(schema->name) == "acl"           ? json{{"deny", {"blocked"}}}
                  : std::string(schema->name) == "rate-limiting" ? json{{"minute", 10}}
                  : std::string(schema->name) == "opentelemetry" ? json{{"traces_endpoint", "http://c:4318/v1/traces"}}
                  : std::string(schema->name) == "file-log"      ? json{{"path", "/var/log/x.log"}}
                  : std::string(schema->name) == "http-log"      ? json{{"http_endpoint", "http://c:9/logs"}}
                                                                 : json::object();
    FieldErrors errors;
    json once = schema->normalize(config, &errors);
    ASSERT_TRUE(errors.empty()) << schema->name << ": " << errors.KongMessage();
    FieldErrors again_errors;
    EXPECT_EQ(schema->normalize(once, &again_errors), once) << schema->name;
    EXPECT_TRUE(again_errors.empty());
  }
  FieldErrors errors;
  EXPECT_EQ(Normalize("request-size-limiting", nullptr, &errors),
            json::parse(R"({"allowed_payload_size":128,"size_unit":"megabytes","require_content_length":false})"));
  EXPECT_EQ(Normalize("request-termination", json::object(), &errors)["status_code"], 503);
  EXPECT_TRUE(errors.empty());
}

TEST(PluginSchemaTest, ErrorsNameTheFieldAndTheRule) {
  FieldErrors errors;
  Normalize("request-size-limiting", {{"allowed_payload_size", -1}, {"size_unit", "gigabytes"}, {"extra", 1}},
            &errors);
  EXPECT_EQ(errors.KongMessage(),
            "3 schema violations (allowed_payload_size: value should be between 0 and 8796093022207; "
            "extra: unknown field; size_unit: expected one of: megabytes, kilobytes, bytes)");
  FieldErrors types;
  Normalize("request-termination", {{"status_code", "x"}, {"message", 5}, {"echo", "maybe"}}, &types);
  EXPECT_TRUE(types.Has("status_code") && types.Has("message") && types.Has("echo")) << types.KongMessage();
  FieldErrors not_object;
  Normalize("request-termination", json::array(), &not_object);
  EXPECT_TRUE(not_object.Has("")) << not_object.KongMessage();
  FieldErrors bad_utf8;
  Normalize("request-termination", {{"message", std::string("\xff")}}, &bad_utf8);
  EXPECT_TRUE(bad_utf8.Has("message"));
  FieldErrors echo;
  EXPECT_EQ(Normalize("request-termination", {{"echo", true}}, &echo)["echo"], true);
  EXPECT_TRUE(echo.empty()) << echo.KongMessage();
}

TEST(PluginSchemaTest, FormStringsAreCoercedToTheWantedTypes) {
  FieldErrors errors;
  json out = Normalize("request-size-limiting", {{"allowed_payload_size", "12"}, {"require_content_length", "true"}},
                       &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(out["allowed_payload_size"], 12);
  EXPECT_EQ(out["require_content_length"], true);
  json ips = Normalize("ip-restriction", {{"deny", "10.0.0.0/8"}}, &errors);
  EXPECT_EQ(ips["deny"], json({"10.0.0.0/8"}));
  EXPECT_TRUE(errors.empty());
}

}  // namespace
}  // namespace portico::plugins

namespace portico::plugins {
namespace {

TEST(RateLimitingSchemaTest, KongDefaultsOrderingAndConditionalFields) {
  FieldErrors errors;
  json out = Normalize("rate-limiting", {{"minute", 5}, {"hour", "100"}}, &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(out.dump(), json::parse(R"({"second":null,"minute":5,"hour":100,"day":null,"month":null,"year":null,
      "limit_by":"consumer","header_name":null,"path":null,"policy":"local","fault_tolerant":true,
      "hide_client_headers":false,"error_code":429,"error_message":"API rate limit exceeded","sync_rate":-1,
      "redis":{"host":null,"port":6379,"timeout":2000,"username":null,"password":null,"database":0,"ssl":false,
               "ssl_verify":false,"server_name":null}})").dump());

  FieldErrors order;
  Normalize("rate-limiting", {{"second", 10}, {"hour", 5}}, &order);
  EXPECT_EQ(order.KongMessage(), "schema violation (The limit for hour(5) cannot be lower than the limit for second(10))");
  FieldErrors none;
  Normalize("rate-limiting", json::object(), &none);
  EXPECT_TRUE(none.Has("@entity")) << none.KongMessage();
  FieldErrors zero;
  Normalize("rate-limiting", {{"minute", 0}}, &zero);
  EXPECT_EQ(zero.KongMessage(), "schema violation (minute: value must be greater than 0)");
  FieldErrors header;
  Normalize("rate-limiting", {{"minute", 1}, {"limit_by", "header"}}, &header);
  EXPECT_EQ(header.KongMessage(), "schema violation (header_name: required field missing)");
  FieldErrors cluster;
  Normalize("rate-limiting", {{"minute", 1}, {"policy", "cluster"}}, &cluster);
  EXPECT_EQ(cluster.KongMessage(), "schema violation (policy: expected one of: local, redis)");
}

TEST(RateLimitingSchemaTest, RedisRecordDefaultsRequiredFieldsAndRefusals) {
  FieldErrors errors;
  json out = Normalize("rate-limiting",
                       {{"minute", 5}, {"policy", "redis"}, {"fault_tolerant", false},
                        {"redis", {{"host", "redis.internal"}, {"password", "s3cret"}, {"database", 2}}}},
                       &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(out["redis"].dump(), json::parse(R"({"host":"redis.internal","port":6379,"timeout":2000,"username":null,
      "password":"s3cret","database":2,"ssl":false,"ssl_verify":false,"server_name":null})").dump());
  EXPECT_EQ(out["fault_tolerant"], false);
  FieldErrors again;
  EXPECT_EQ(Normalize("rate-limiting", out, &again), out) << "idempotent";
  EXPECT_TRUE(again.empty()) << again.KongMessage();

  // policy redis needs redis.host (port and timeout have defaults), as Kong's conditional checks.
  FieldErrors no_host;
  Normalize("rate-limiting", {{"minute", 5}, {"policy", "redis"}}, &no_host);
  EXPECT_EQ(no_host.KongMessage(), "schema violation (redis.host: required field missing)");
  FieldErrors local_without_host;
  Normalize("rate-limiting", {{"minute", 5}}, &local_without_host);
  EXPECT_TRUE(local_without_host.empty()) << local_without_host.KongMessage();

  // Field errors are reported under redis.<field>.
  FieldErrors bad;
  Normalize("rate-limiting",
            {{"minute", 5}, {"policy", "redis"},
             {"redis", {{"host", "bad host"}, {"port", 70000}, {"timeout", -1}, {"server_name", "10.0.0.1"},
                        {"nope", 1}}}},
            &bad);
  EXPECT_TRUE(bad.Has("redis.host")) << bad.KongMessage();
  EXPECT_TRUE(bad.Has("redis.port")) << bad.KongMessage();
  EXPECT_TRUE(bad.Has("redis.timeout")) << bad.KongMessage();
  EXPECT_TRUE(bad.Has("redis.server_name")) << bad.KongMessage();
  EXPECT_TRUE(bad.Has("redis.nope")) << bad.KongMessage();
  FieldErrors not_record;
  Normalize("rate-limiting", {{"minute", 5}, {"redis", "localhost"}}, &not_record);
  EXPECT_EQ(not_record.KongMessage(), "schema violation (redis: expected a record)");

  // TLS to Redis is not implemented: refused with policy redis, not when the record is unused.
  FieldErrors tls;
  Normalize("rate-limiting", {{"minute", 5}, {"policy", "redis"}, {"redis", {{"host", "r"}, {"ssl", true}}}}, &tls);
  EXPECT_EQ(tls.KongMessage(), "schema violation (redis.ssl: TLS to Redis is not supported by Portico yet)");
  FieldErrors tls_unused;
  Normalize("rate-limiting", {{"minute", 5}, {"redis", {{"ssl", true}}}}, &tls_unused);
  EXPECT_TRUE(tls_unused.empty()) << tls_unused.KongMessage();

  // Kong's deprecated flat fields fold into the record; an empty password means none.
  FieldErrors flat;
  json folded = Normalize("rate-limiting",
                          {{"minute", 5}, {"policy", "redis"}, {"redis_host", "127.0.0.1"}, {"redis_port", 6380},
                           {"redis_password", ""}, {"redis_timeout", 500}},
                          &flat);
  ASSERT_TRUE(flat.empty()) << flat.KongMessage();
  EXPECT_EQ(folded["redis"]["host"], "127.0.0.1");
  EXPECT_EQ(folded["redis"]["port"], 6380);
  EXPECT_EQ(folded["redis"]["timeout"], 500);
  EXPECT_TRUE(folded["redis"]["password"].is_null());
  EXPECT_FALSE(folded.contains("redis_host"));

  // sync_rate: Kong's rules (only with redis; -1 or at least 0.02).
  FieldErrors sync_local;
  Normalize("rate-limiting", {{"minute", 5}, {"sync_rate", 1}}, &sync_local);
  EXPECT_EQ(sync_local.KongMessage(), "schema violation (sync_rate can only be used with the redis policy)");
  FieldErrors sync_small;
  Normalize("rate-limiting", {{"minute", 5}, {"policy", "redis"}, {"redis", {{"host", "r"}}}, {"sync_rate", 0.01}},
            &sync_small);
  EXPECT_EQ(sync_small.KongMessage(), "schema violation (sync_rate must be greater than 0.02, or -1 to disable)");
}

TEST(PluginSchemaTest, AclNeedsExactlyOneListAndBasicAuthHasKongsDefaults) {
  FieldErrors none, both, unsupported;
  Normalize("acl", json::object(), &none);
  EXPECT_EQ(none.KongMessage(),
            "schema violation (at least one of these fields must be non-empty: 'config.allow', 'config.deny')");
  Normalize("acl", {{"allow", {"a"}}, {"deny", {"b"}}}, &both);
  EXPECT_EQ(both.KongMessage(),
            "schema violation (only one of these fields must be non-empty: 'config.allow', 'config.deny')");
  Normalize("acl", {{"allow", {"a"}}, {"include_consumer_groups", true}}, &unsupported);
  EXPECT_TRUE(unsupported.Has("include_consumer_groups")) << unsupported.KongMessage();
  FieldErrors ok;
  EXPECT_EQ(Normalize("acl", {{"allow", "admins"}}, &ok),
            json::parse(R"({"allow":["admins"],"deny":null,"hide_groups_header":false,
                            "always_use_authenticated_groups":false,"include_consumer_groups":false})"));
  EXPECT_EQ(Normalize("basic-auth", json::object(), &ok),
            json::parse(R"({"anonymous":null,"hide_credentials":false,"realm":"service"})"));
  EXPECT_TRUE(ok.empty()) << ok.KongMessage();
  EXPECT_TRUE(FindPluginSchema("basic-auth")->no_consumer);
}

TEST(JwtSchemaTest, KongDefaultsClaimsAndMaximumExpiration) {
  FieldErrors errors;
  EXPECT_EQ(Normalize("jwt", json::object(), &errors), json::parse(R"({
      "uri_param_names":["jwt"],"cookie_names":[],"key_claim_name":"iss","secret_is_base64":false,
      "claims_to_verify":null,"anonymous":null,"run_on_preflight":true,"maximum_expiration":0,
      "header_names":["authorization"],"realm":null})"));
  EXPECT_TRUE(errors.empty()) << errors.KongMessage();

  FieldErrors claims;
  Normalize("jwt", {{"claims_to_verify", {"exp", "iat"}}}, &claims);
  EXPECT_EQ(claims.KongMessage(), "schema violation (claims_to_verify.2: expected one of: exp, nbf)");
  FieldErrors range;
  Normalize("jwt", {{"maximum_expiration", 31536001}, {"key_claim_name", ""}}, &range);
  EXPECT_EQ(range.KongMessage(),
            "2 schema violations (key_claim_name: length must be at least 1; "
            "maximum_expiration: value should be between 0 and 31536000)");
  FieldErrors needs_exp;
  Normalize("jwt", {{"maximum_expiration", 60}, {"claims_to_verify", {"nbf"}}}, &needs_exp);
  EXPECT_EQ(needs_exp.KongMessage(),
            "2 schema violations (claims_to_verify: expected to contain: exp; "
            "failed conditional validation given value of field 'config.maximum_expiration')");
  FieldErrors ok;
  json with_exp = Normalize("jwt", {{"maximum_expiration", "60"}, {"claims_to_verify", "exp"}}, &ok);
  EXPECT_TRUE(ok.empty()) << ok.KongMessage();
  EXPECT_EQ(with_exp["maximum_expiration"], 60);
  EXPECT_EQ(with_exp["claims_to_verify"], json({"exp"})) << "form values become one-element arrays";
}

}  // namespace
}  // namespace portico::plugins

namespace portico::plugins {
namespace {

TEST(CorsSchemaTest, KongDefaultsAndOriginAndMethodErrors) {
  FieldErrors errors;
  json out = Normalize("cors", json::object(), &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(out, json::parse(R"({"origins":null,"headers":null,"exposed_headers":null,
      "methods":["GET","HEAD","PUT","PATCH","POST","DELETE","OPTIONS","TRACE","CONNECT"],"max_age":null,
      "credentials":false,"private_network":false,"preflight_continue":false,"allow_origin_absent":true})"));
  json set = Normalize("cors", {{"origins", {"*", "https://a.example", "(.*\\.)?b\\.example"}}, {"max_age", 3600},
                                {"methods", {"GET"}}, {"credentials", "true"}},
                       &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(set["max_age"], 3600);
  EXPECT_EQ(set["credentials"], true);

  FieldErrors bad;
  Normalize("cors", {{"origins", {"https://ok.example", "(unclosed"}}, {"methods", {"GET", "FETCH"}}}, &bad);
  EXPECT_EQ(bad.KongMessage(),
            "2 schema violations (methods.2: expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, "
            "CONNECT; origins.2: '(unclosed' is not a valid regex)");
  FieldErrors split;
  Normalize("cors", {{"exposed_headers", {"X-Ok", "X-A\r\nSet-Cookie: a=b"}}}, &split);
  EXPECT_EQ(split.KongMessage(), "schema violation (exposed_headers.2: invalid header value)");
  FieldErrors types;
  Normalize("cors", {{"max_age", "soon"}, {"preflight_continue", 1}}, &types);
  EXPECT_TRUE(types.Has("max_age") && types.Has("preflight_continue")) << types.KongMessage();
}

TEST(RequestTransformerSchemaTest, KongDefaultsAndColonRules) {
  FieldErrors errors;
  json out = Normalize("request-transformer", json::object(), &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  const json lists = {{"body", json::array()}, {"headers", json::array()}, {"querystring", json::array()}};
  json replace = lists;
  replace["uri"] = nullptr;
  EXPECT_EQ(out, json({{"http_method", nullptr}, {"remove", lists}, {"rename", lists}, {"replace", replace},
                       {"add", lists}, {"append", lists}}));

  json set = Normalize("request-transformer",
                       {{"http_method", "POST"},
                        {"remove", {{"headers", {"X-Drop"}}, {"querystring", "token"}}},
                        {"rename", {{"headers", {"X-Old:X-New"}}}},
                        {"replace", {{"uri", "/v2/items"}, {"headers", {"Host:api.internal"}}}},
                        {"add", {{"headers", {"X-Empty:", "X-Colons::a:b"}}, {"querystring", {"q:1"}}}}},
                       &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(set["remove"]["querystring"], json({"token"})) << "a form's single string becomes a list";
  EXPECT_EQ(set["replace"]["uri"], "/v2/items");
}

TEST(RequestTransformerSchemaTest, RefusalsNameTheEntry) {
  auto message = [](const json& config) {
    FieldErrors errors;
    Normalize("request-transformer", config, &errors);
    return errors.KongMessage();
  };
  EXPECT_EQ(message({{"add", {{"headers", {"X-Foo"}}}}}), "schema violation (add.headers.1: invalid value: X-Foo)");
  EXPECT_EQ(message({{"append", {{"headers", {"ok:1", "bad name:1"}}}}}),
            "schema violation (append.headers.2: 'bad name' is not a valid header)");
  EXPECT_EQ(message({{"replace", {{"headers", {std::string("X-A:a\nb")}}}}}),
            "schema violation (replace.headers.1: 'a\nb' is not a valid header)");
  EXPECT_EQ(message({{"rename", {{"headers", {"X-A:B C"}}}}}),
            "schema violation (rename.headers.1: 'B C' is not a valid header)");
  EXPECT_EQ(message({{"remove", {{"headers", {"X A"}}}}}),
            "schema violation (remove.headers.1: 'X A' is not a valid header)");
  EXPECT_EQ(message({{"add", {{"querystring", {"q", "r:"}}}}}),
            "2 schema violations (add.querystring.1: key 'q' has no value; add.querystring.2: key 'r' has no value)");
  EXPECT_EQ(message({{"http_method", "get"}}), "schema violation (http_method: invalid value: get)");
  EXPECT_EQ(message({{"http_method", "BREW"}}), "schema violation (http_method: invalid method: BREW)");
  EXPECT_EQ(message({{"http_method", "HEAD"}}),
            "schema violation (http_method: 'HEAD' is not supported by Portico yet)");
  EXPECT_EQ(message({{"replace", {{"uri", "v2"}}}}), "schema violation (replace.uri: should start with: /)");
  EXPECT_EQ(message({{"add", "x"}}), "schema violation (add: expected a record)");
  EXPECT_EQ(message({{"add", {{"cookies", json::array()}}}}), "schema violation (add.cookies: unknown field)");
  // body entries are checked as querystring entries: remove takes names, the others "name:value".
  EXPECT_EQ(message({{"add", {{"body", {"a:1", "b"}}}}}), "schema violation (add.body.2: key 'b' has no value)");
  EXPECT_EQ(message({{"append", {{"body", {"c:$(x)"}}}}}),
            "schema violation (append.body.1: templates ($(...)) are not supported by Portico yet)");
  FieldErrors body_errors;
  const json with_body = Normalize(
      "request-transformer",
      {{"remove", {{"body", {"a", "b:c"}}}}, {"rename", {{"body", {"x:y"}}}}, {"add", {{"body", {"k:v:w"}}}}},
      &body_errors);
  EXPECT_TRUE(body_errors.empty()) << body_errors.KongMessage();
  EXPECT_EQ(with_body["remove"]["body"], json({"a", "b:c"}));
  EXPECT_EQ(with_body["add"]["body"], json({"k:v:w"}));
  // What Portico cannot do is refused, never silently ignored.
  EXPECT_EQ(message({{"add", {{"headers", {"X-Id:$(headers.host)"}}}}}),
            "schema violation (add.headers.1: templates ($(...)) are not supported by Portico yet)");
  EXPECT_EQ(message({{"replace", {{"uri", "/$(uri_captures.id)"}}}}),
            "schema violation (replace.uri: templates ($(...)) are not supported by Portico yet)");
}

TEST(LogPluginSchemaTest, FileLogDefaultsAndRefusals) {
  FieldErrors errors;
  EXPECT_EQ(Normalize("file-log", json{{"path", "/var/log/a.log"}}, &errors),
            json::parse(R"({"path":"/var/log/a.log","reopen":false,"custom_fields_by_lua":null})"));
  EXPECT_TRUE(errors.empty()) << errors.KongMessage();
  for (const json& config : {json::object(), json{{"path", "relative.log"}}, json{{"path", "/a*b"}},
                             json{{"path", "/a.log"}, {"custom_fields_by_lua", {{"x", "return 1"}}}}}) {
    FieldErrors e;
    Normalize("file-log", config, &e);
    EXPECT_FALSE(e.empty()) << config.dump();
  }
  FieldErrors empty_lua;
  Normalize("file-log", json{{"path", "/a.log"}, {"custom_fields_by_lua", json::object()}}, &empty_lua);
  EXPECT_TRUE(empty_lua.empty()) << empty_lua.KongMessage();
}

TEST(LogPluginSchemaTest, HttpLogKongDefaultsQueueAndRefusals) {
  FieldErrors errors;
  json out = Normalize("http-log", json{{"http_endpoint", "http://collector:8080/logs"}}, &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(out["method"], "POST");
  EXPECT_EQ(out["content_type"], "application/json");
  EXPECT_EQ(out["timeout"], 10000);
  EXPECT_EQ(out["keepalive"], 60000);
  EXPECT_EQ(out["queue"], json::parse(R"({"max_batch_size":1,"max_coalescing_delay":1.0,"max_entries":10000,
      "max_bytes":null,"max_retry_time":60.0,"initial_retry_delay":0.01,"max_retry_delay":60.0,"concurrency_limit":1})"));
  out = Normalize("http-log", json{{"http_endpoint", "http://c/"}, {"headers", {{"X-Token", "t"}}},
                                   {"queue", {{"max_batch_size", 50}, {"max_coalescing_delay", 0.5}}}}, &errors);
  EXPECT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(out["headers"], json({{"X-Token", "t"}}));
  EXPECT_EQ(out["queue"]["max_batch_size"], 50);
  for (const json& config :
       {json::object(), json{{"http_endpoint", "https://c/"}}, json{{"http_endpoint", "ftp://c/"}},
        json{{"http_endpoint", "http://c/"}, {"method", "GET"}},
        json{{"http_endpoint", "http://c/"}, {"headers", {{"Bad Name", "x"}}}},
        json{{"http_endpoint", "http://c/"}, {"headers", {{"X", "a\r\nInjected: 1"}}}},
        json{{"http_endpoint", "http://c/"}, {"queue", {{"max_batch_size", 0}}}},
        json{{"http_endpoint", "http://c/"}, {"queue", {{"concurrency_limit", 0}}}},
        json{{"http_endpoint", "http://c/"}, {"custom_fields_by_lua", {{"a", "return 1"}}}}}) {
    FieldErrors e;
    Normalize("http-log", config, &e);
    EXPECT_FALSE(e.empty()) << config.dump();
  }
}

// Whatever the DP's sender would refuse, the Admin API refuses (no config that every DP NACKs).
TEST(LogPluginSchemaTest, HttpLogRefusesTheUrlsTheDataPlaneCannotSendTo) {
  for (const char* url : {"http://user:pw@c/", "http://c:0/", "http://c:65536/", "http://c/logs#frag",
                          "http://c\x01/", "http://c/a\tb", "http://:80/", "http://[::1/"}) {
    FieldErrors e;
    Normalize("http-log", json{{"http_endpoint", url}}, &e);
    EXPECT_TRUE(e.Has("http_endpoint")) << url << ": " << e.KongMessage();
  }
  FieldErrors user_info;
  Normalize("http-log", json{{"http_endpoint", "http://user:pw@c/"}}, &user_info);
  EXPECT_NE(user_info.KongMessage().find("user info"), std::string::npos) << user_info.KongMessage();
  FieldErrors zero_timeout;
  Normalize("http-log", json{{"http_endpoint", "http://c/"}, {"timeout", 0}}, &zero_timeout);
  EXPECT_TRUE(zero_timeout.Has("timeout")) << zero_timeout.KongMessage();
}

}  // namespace
}  // namespace portico::plugins
