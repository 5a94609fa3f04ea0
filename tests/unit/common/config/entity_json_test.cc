#include "common/config/entity_json.h"

#include "gtest/gtest.h"

namespace portico {
namespace {

using nlohmann::json;

TEST(EntityJsonTest, ServiceDefaultsInKongShape) {
  config::v1::Service s = DefaultService();
  s.set_id("11111111-1111-4111-8111-111111111111");
  s.set_host("example.com");
  s.set_created_at(10);
  s.set_updated_at(11);
  json expected = json::parse(R"({
    "id":"11111111-1111-4111-8111-111111111111","created_at":10,"updated_at":11,"name":null,
    "retries":5,"protocol":"http","host":"example.com","port":80,"path":null,
    "connect_timeout":60000,"write_timeout":60000,"read_timeout":60000,"tags":null,
    "client_certificate":null,"tls_verify":null,"tls_verify_depth":null,"ca_certificates":null,
    "enabled":true})");
  EXPECT_EQ(ServiceToJson(s), expected);
}

TEST(EntityJsonTest, RouteRoundTripsThroughApply) {
  json body = json::parse(R"({
    "name":"r1","protocols":["https"],"methods":["GET"],"hosts":["a.com"],"paths":["/x"],
    "headers":{"X-Foo":["a","b"]},"snis":["a.com"],"regex_priority":3,"strip_path":false,
    "service":{"id":"11111111-1111-4111-8111-111111111111"},"tags":["t1"]})");
  config::v1::Route r = DefaultRoute();
  FieldErrors errors;
  ApplyRouteJson(body, &r, &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  r.set_id("22222222-2222-4222-8222-222222222222");
  json out = RouteToJson(r);
  EXPECT_EQ(out["headers"], json::parse(R"({"x-foo":["a","b"]})"));
  EXPECT_EQ(out["service"], json::parse(R"({"id":"11111111-1111-4111-8111-111111111111"})"));
  EXPECT_EQ(out["protocols"], json::parse(R"(["https"])"));
  EXPECT_EQ(out["sources"], nullptr);
  EXPECT_EQ(out["https_redirect_status_code"], 426);
  EXPECT_EQ(out["path_handling"], "v0");
  EXPECT_EQ(out["strip_path"], false);
  EXPECT_EQ(out["regex_priority"], 3);
  // Applying the output again changes nothing.
  config::v1::Route again = DefaultRoute();
  ApplyRouteJson(out, &again, &errors);
  EXPECT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(RouteToJson(again), out);
}

TEST(EntityJsonTest, TypeErrorsAndUnknownFields) {
  config::v1::Service s = DefaultService();
  FieldErrors errors;
  ApplyServiceJson(json::parse(R"({"port":"x","retries":1.5,"enabled":"yes","bogus":1,"tags":[1]})"), &s, &errors);
  json fields = FieldErrorsToJson(errors);
  EXPECT_EQ(fields, json::parse(R"({"port":"expected an integer","retries":"expected an integer",
      "enabled":"expected a boolean","bogus":"unknown field","tags":["expected a string"]})"));
}

TEST(EntityJsonTest, UrlShorthand) {
  struct Case { const char* url; const char* protocol; const char* host; int port; const char* path; };
  for (const Case& c : {Case{"https://api.example.com/v1", "https", "api.example.com", 443, "/v1"},
                        Case{"http://10.0.0.1:8080", "http", "10.0.0.1", 8080, nullptr},
                        Case{"http://[::1]:81/a", "http", "::1", 81, "/a"},
                        Case{"http://example.com", "http", "example.com", 80, nullptr}}) {
    config::v1::Service s = DefaultService();
    FieldErrors errors;
    ApplyServiceJson(json{{"url", c.url}}, &s, &errors);
    ASSERT_TRUE(errors.empty()) << c.url << ": " << errors.KongMessage();
    EXPECT_EQ(s.protocol(), c.protocol) << c.url;
    EXPECT_EQ(s.host(), c.host) << c.url;
    EXPECT_EQ(s.port(), c.port) << c.url;
    EXPECT_EQ(s.has_path(), c.path != nullptr) << c.url;
    if (c.path) {
      EXPECT_EQ(s.path(), c.path);
    }
  }
  config::v1::Service s = DefaultService();
  FieldErrors errors;
  ApplyServiceJson(json{{"url", "http://a.com"}, {"port", 1}}, &s, &errors);
  EXPECT_TRUE(errors.Has("url"));
}

TEST(EntityJsonTest, NestedFieldErrorsBecomeArraysWithNulls) {
  FieldErrors errors;
  errors.Add("paths.3", "bad");
  errors.Add("service.id", "expected a valid UUID");
  errors.AddEntity("one");
  errors.AddEntity("two");
  EXPECT_EQ(FieldErrorsToJson(errors), json::parse(R"({"paths":[null,null,"bad"],
      "service":{"id":"expected a valid UUID"},"@entity":["one","two"]})"));
}

// A client picks the indices (an unknown key "a.2000000000"), so padding with nulls has a budget;
// past it the numbers stay object keys instead of allocating gigabytes.
TEST(EntityJsonTest, HugeIndicesInErrorPathsStayObjectKeys) {
  FieldErrors errors;
  errors.Add("a.2000000000", "unknown field");
  errors.Add("b.99999", "unknown field");
  errors.Add("c.2", "bad");
  json fields = FieldErrorsToJson(errors);
  EXPECT_EQ(fields["a"], json::parse(R"({"2000000000":"unknown field"})"));
  EXPECT_EQ(fields["b"], json::parse(R"({"99999":"unknown field"})"));
  EXPECT_EQ(fields["c"], json::parse(R"([null,"bad"])"));
}

}  // namespace
}  // namespace portico
