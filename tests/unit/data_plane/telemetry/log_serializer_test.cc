#include "data_plane/telemetry/log_serializer.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace portico::dp {
namespace {

using nlohmann::json;

class FakeRequest final : public RequestContext {
 public:
  void Respond(const LocalResponse&) override {}
  void Resume(StepStatus) override {}
  bool ReadRequestBody() override { return true; }
};

struct Fixture {
  MessageHead head;
  config::v1::Route route;
  config::v1::Service service;
  config::v1::Consumer consumer;
  Target target;
  FakeRequest request;

  Fixture() {
    head.method = "POST";
    head.url = "/orders/7?apikey=s3cret&x=a%20b&flag&x=2";
    head.headers = {{"Host", "api.example:8000"}, {"Authorization", "Bearer top-secret"},
                    {"X-Multi", "1"}, {"x-multi", "2"}, {"Cookie", "session=abc"}, {"Content-Length", "5"}};
    request.head = &head;
    request.target.path = "/orders/7";
    request.target.query = "apikey=s3cret&x=a%20b&flag&x=2";
    request.target.has_query = true;
    request.host = "api.example:8000";
    request.local_port = 8000;
    request.client_ip = "127.0.0.9";
    route.set_id("r-1");
    route.set_name("orders-route");
    route.add_protocols("http");
    route.mutable_paths()->add_values("/orders");
    route.set_strip_path(true);
    route.set_service_id("s-1");
    service.set_id("s-1");
    service.set_name("orders");
    service.set_protocol("http");
    service.set_host("127.0.0.1");
    service.set_port(9000);
    service.set_retries(5);
    consumer.set_id("c-1");
    consumer.set_username("alice");
    Match match;
    match.route = &route;
    match.service = &service;
    request.match = match;
    request.consumer = &consumer;
    request.credential_id = "cred-1";
    target.ip = "127.0.0.1";
    target.port = 9000;
    request.upstream_target = &target;
    request.attempt = 1;  // one retry: two tries
    request.upstream_head = "POST /7?apikey=s3cret HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n";
    request.upstream_status = 201;
    request.received_ns = 1'000'000'000;
    request.upstream_started_ns = 1'002'000'000;
    request.upstream_head_ns = 1'007'000'000;
    request.finished_ns = 1'010'000'000;
    request.request_body_received = 5;
    request.response_bytes = 321;
    request.response_headers.Add("X-Added", "yes");
    request.response_headers.Add("Set-Cookie", "id=1");
  }
};

json Serialize(const RequestContext& request, int status, int64_t now_ms, uint64_t now_ns) {
  std::string out;
  AppendLogEntry(request, status, now_ms, now_ns, &out);
  json parsed = json::parse(out, nullptr, false);
  EXPECT_FALSE(parsed.is_discarded()) << out;
  return parsed;
}

TEST(LogSerializerTest, KongFieldsFromTheRequestContext) {
  Fixture f;
  // Now is 20 ms after the request began: started_at is now - 20.
  const json entry = Serialize(f.request, 201, 1'700'000'000'000, 1'020'000'000);
  ASSERT_TRUE(entry.is_object());
  EXPECT_EQ(entry["request"]["method"], "POST");
  EXPECT_EQ(entry["request"]["uri"], "/orders/7?apikey=[REDACTED]&x=a%20b&flag&x=2");
  EXPECT_EQ(entry["request"]["url"], "http://api.example:8000/orders/7?apikey=[REDACTED]&x=a%20b&flag&x=2");
  EXPECT_EQ(entry["request"]["querystring"]["apikey"], "[REDACTED]");
  EXPECT_EQ(entry["request"]["querystring"]["x"], json::array({"a b", "2"}));
  EXPECT_EQ(entry["request"]["querystring"]["flag"], true);
  EXPECT_EQ(entry["request"]["headers"]["host"], "api.example:8000");
  EXPECT_EQ(entry["request"]["headers"]["authorization"], "[REDACTED]");
  EXPECT_EQ(entry["request"]["headers"]["cookie"], "[REDACTED]");
  EXPECT_EQ(entry["request"]["headers"]["x-multi"], json::array({"1", "2"}));
  EXPECT_EQ(entry["request"]["size"], RequestSizeBytes(f.request));
  EXPECT_EQ(entry["response"]["status"], 201);
  EXPECT_EQ(entry["response"]["size"], 321);
  EXPECT_EQ(entry["response"]["headers"]["x-added"], "yes");
  EXPECT_EQ(entry["response"]["headers"]["set-cookie"], "[REDACTED]");
  EXPECT_DOUBLE_EQ(entry["latencies"]["request"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(entry["latencies"]["proxy"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(entry["latencies"]["kong"].get<double>(), 5.0);
  EXPECT_EQ(entry["upstream_uri"], "/7?apikey=[REDACTED]");
  EXPECT_EQ(entry["upstream_status"], 201);
  ASSERT_EQ(entry["tries"].size(), 2u);
  EXPECT_EQ(entry["tries"][0]["state"], "next");
  EXPECT_EQ(entry["tries"][1]["ip"], "127.0.0.1");
  EXPECT_EQ(entry["tries"][1]["port"], 9000);
  EXPECT_EQ(entry["route"]["id"], "r-1");
  EXPECT_EQ(entry["route"]["name"], "orders-route");
  EXPECT_EQ(entry["route"]["paths"], json::array({"/orders"}));
  EXPECT_EQ(entry["route"]["hosts"], nullptr);
  EXPECT_EQ(entry["route"]["service"]["id"], "s-1");
  EXPECT_EQ(entry["service"]["name"], "orders");
  EXPECT_EQ(entry["service"]["port"], 9000);
  EXPECT_EQ(entry["consumer"]["username"], "alice");
  EXPECT_EQ(entry["authenticated_entity"]["id"], "cred-1");
  EXPECT_EQ(entry["client_ip"], "127.0.0.9");
  EXPECT_EQ(entry["started_at"], 1'700'000'000'000 - 20);
  EXPECT_EQ(entry["source"], "upstream");
  EXPECT_EQ(entry["workspace_name"], "default");
}

TEST(LogSerializerTest, ALocalAnswerWithoutRouteHasNullsAndSourceKong) {
  FakeRequest request;
  MessageHead head;
  head.method = "GET";
  head.url = "/nowhere";
  request.head = &head;
  request.target.path = "/nowhere";
  request.client_ip = "::1";
  json entry = Serialize(request, 404, 1000, 0);
  EXPECT_EQ(entry["route"], nullptr);
  EXPECT_EQ(entry["service"], nullptr);
  EXPECT_EQ(entry["consumer"], nullptr);
  EXPECT_EQ(entry["upstream_status"], nullptr);
  EXPECT_EQ(entry["tries"], json::array());
  EXPECT_EQ(entry["source"], "kong");
  EXPECT_EQ(entry["request"]["uri"], "/nowhere");
  EXPECT_EQ(entry["request"]["querystring"], json::object());
}

TEST(LogSerializerTest, HostileBytesStayValidJson) {
  Fixture f;
  f.head.headers.push_back({"X-Evil", std::string("a\"b\\c\n\x01\xff\xc3\x28 end")});
  f.request.target.query = "q=%22%5C%00%ff";
  json entry = Serialize(f.request, 200, 0, 0);
  EXPECT_EQ(entry["request"]["headers"]["x-evil"], "a\"b\\c\n\x01\xEF\xBF\xBD\xEF\xBF\xBD( end");
  EXPECT_EQ(entry["request"]["querystring"]["q"], std::string("\"\\\0\xEF\xBF\xBD", 6));
}

TEST(LogSerializerTest, ExtraRedactedHeaderNames) {
  Fixture f;
  f.head.headers.push_back({"X-My-Key", "k"});
  std::string out;
  const std::string extra[] = {"x-my-key"};
  AppendLogEntry(f.request, 200, 0, 0, &out, extra);
  EXPECT_EQ(json::parse(out)["request"]["headers"]["x-my-key"], "[REDACTED]");
}

TEST(LogSerializerTest, PercentEncodedSecretQueryNamesAreRedacted) {
  Fixture f;
  f.request.target.query = "ap%69key=SECRET1&access%5Ftoken=SECRET2&x=1";
  f.head.url = "/orders/7?ap%69key=SECRET1&access%5Ftoken=SECRET2&x=1";
  f.request.upstream_head = "GET /7?ap%69key=SECRET1&access%5Ftoken=SECRET2 HTTP/1.1\r\n\r\n";
  std::string out;
  AppendLogEntry(f.request, 200, 0, 0, &out);
  EXPECT_EQ(out.find("SECRET"), std::string::npos) << out;
  json entry = json::parse(out);
  EXPECT_EQ(entry["request"]["querystring"]["apikey"], "[REDACTED]");
  EXPECT_EQ(entry["request"]["querystring"]["access_token"], "[REDACTED]");
  EXPECT_EQ(entry["request"]["uri"], "/orders/7?ap%69key=[REDACTED]&access%5Ftoken=[REDACTED]&x=1");
  EXPECT_EQ(entry["upstream_uri"], "/7?ap%69key=[REDACTED]&access%5Ftoken=[REDACTED]");
}

TEST(LogSerializerTest, ExtraRedactedNamesCoverQueryArguments) {
  Fixture f;
  f.request.target.query = "my_key=SECRET1&My%5FKey=SECRET2&x=1";
  std::string out;
  const std::string extra[] = {"my_key"};
  AppendLogEntry(f.request, 200, 0, 0, &out, extra);
  EXPECT_EQ(out.find("SECRET"), std::string::npos) << out;
  EXPECT_EQ(json::parse(out)["request"]["querystring"]["x"], "1");
}

TEST(LogSerializerTest, ConfiguredCredentialNamesOfKeyAuthAndJwt) {
  ConfigSet snapshot;
  config::v1::Plugin key_auth;
  key_auth.set_name("key-auth");
  key_auth.set_config(R"({"key_names":["X-Token-A","apikey"]})");
  config::v1::Plugin jwt;
  jwt.set_name("jwt");
  jwt.set_config(R"({"header_names":["x-jwt"],"uri_param_names":["tok"],"cookie_names":["c"]})");
  config::v1::Plugin other;
  other.set_name("cors");
  other.set_config(R"({"key_names":["nope"]})");
  config::v1::Plugin broken;
  broken.set_name("key-auth");
  broken.set_config("{not json");
  snapshot.plugins = {key_auth, jwt, other, broken};
  EXPECT_EQ(ConfiguredCredentialNames(snapshot),
            (std::vector<std::string>{"x-token-a", "apikey", "x-jwt", "tok", "c"}));
}

TEST(LogSerializerTest, LongNonAsciiQueryValuesStayIntact) {
  Fixture f;
  std::string encoded;
  std::string decoded;
  for (int i = 0; i < 300; ++i) {
    encoded += "%C3%A9";  // é
    decoded += "\xC3\xA9";
  }
  for (int shift = 0; shift < 4; ++shift) {
    const std::string query = "q=" + std::string(shift, 'a') + encoded;  // target.query is a view
    f.request.target.query = query;
    json entry = Serialize(f.request, 200, 0, 0);
    EXPECT_EQ(entry["request"]["querystring"]["q"], std::string(shift, 'a') + decoded) << shift;
  }
}

TEST(LogSerializerTest, AtMostAHundredHeadersAndQueryArguments) {
  Fixture f;
  std::string query;
  for (int i = 0; i < 3000; ++i) {
    f.head.headers.push_back({"X-H" + std::to_string(i), "v"});
    query += (i == 0 ? "" : "&") + std::string("a") + std::to_string(i) + "=1";
  }
  f.request.target.query = query;
  json entry = Serialize(f.request, 200, 0, 0);
  EXPECT_EQ(entry["request"]["headers"].size(), 100u - 1u);  // 6 headers, "x-multi" twice: 99 names
  EXPECT_EQ(entry["request"]["querystring"].size(), 100u);
}

}  // namespace
}  // namespace portico::dp
