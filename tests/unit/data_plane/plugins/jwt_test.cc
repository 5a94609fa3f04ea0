// The jwt plugin: Kong's token decoding (jwt_token.h) and the handler, with tokens signed in the
// test (HMAC secrets, RSA and EC keys made here) on a fake request context.
#include <ctime>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/snapshot/snapshot.h"
#include "data_plane/pipeline/pipeline.h"
#include "data_plane/plugins/chain.h"
#include "data_plane/plugins/jwt/jwt_token.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/jwt_signer.h"

namespace portico::dp::plugins {
namespace {

using nlohmann::json;
using test_support::Base64Url;
using test_support::SignJwt;

TEST(JwtTokenTest, Base64IsKongsDecoderBothAlphabetsStopAtPadding) {
  std::string out;
  EXPECT_TRUE(jwt::DecodeBase64("aGk", &out));
  EXPECT_EQ(out, "hi");
  out.clear();
  EXPECT_TRUE(jwt::DecodeBase64("-_8=garbage", &out)) << "stops at the first '='";
  EXPECT_EQ(out, "\xfb\xff");
  out.clear();
  EXPECT_TRUE(jwt::DecodeBase64("+/8", &out));
  EXPECT_EQ(out, "\xfb\xff");
  EXPECT_FALSE(jwt::DecodeBase64("abcde", &out)) << "4n+1 characters";
  EXPECT_FALSE(jwt::DecodeBase64("ab.c", &out));
  out.clear();
  EXPECT_TRUE(jwt::DecodeBase64("", &out));
  EXPECT_EQ(out, "");
}

TEST(JwtTokenTest, BearerFollowsKongsRegex) {
  EXPECT_EQ(jwt::BearerToken("Bearer abc.def"), "abc.def");
  EXPECT_EQ(jwt::BearerToken("bearer   abc"), "abc");
  EXPECT_EQ(jwt::BearerToken("Token x, Bearer y"), "y") << "unanchored";
  EXPECT_EQ(jwt::BearerToken("abc.def.ghi"), "") << "a raw token is not taken from a header";
  EXPECT_EQ(jwt::BearerToken("BEARER abc"), "");
  EXPECT_EQ(jwt::BearerToken("Bearer"), "");
  EXPECT_EQ(jwt::BearerToken("Bearerabc"), "");
}

TEST(JwtTokenTest, DecodeFindsTheMembersAndKongsErrors) {
  std::string scratch;
  jwt::DecodedToken t;
  const std::string good = SignJwt("HS256", R"({"iss":"k\u0031","exp":1.5e9,"x":[{"iss":"no"}]})", "s");
  ASSERT_EQ(jwt::DecodeToken(good, "iss", &scratch, &t), jwt::TokenError::kNone);
  std::string storage;
  EXPECT_EQ(jwt::JsonStringValue(t.claims_key, &storage), "k1") << "escapes decoded; nested members ignored";
  EXPECT_EQ(t.exp.type, jwt::JsonMember::kNumber);
  EXPECT_EQ(t.exp.number, 1.5e9);
  EXPECT_EQ(t.nbf.type, jwt::JsonMember::kMissing);
  EXPECT_TRUE(jwt::JsonStringEquals(t.alg, "HS256"));
  EXPECT_EQ(t.signing_input, good.substr(0, good.rfind('.')));
  EXPECT_EQ(t.signature.size(), 32u);

  auto error = [&scratch, &t](const std::string& token) { return jwt::DecodeToken(token, "iss", &scratch, &t); };
  const std::string h = Base64Url(R"({"alg":"HS256"})");
  const std::string c = Base64Url(R"({"iss":"a"})");
  EXPECT_EQ(error("abc"), jwt::TokenError::kInvalidJson);
  EXPECT_EQ(error(h + "." + c), jwt::TokenError::kInvalidJson) << "no signature segment";
  EXPECT_EQ(error(h + ".!!." + "sig"), jwt::TokenError::kInvalidJson);
  EXPECT_EQ(error(Base64Url(R"({"alg":"HS256",})") + "." + c + ".x"), jwt::TokenError::kInvalidJson);
  EXPECT_EQ(error(Base64Url(R"({"alg":"HS256"} x)") + "." + c + ".x"), jwt::TokenError::kInvalidJson);
  EXPECT_EQ(error(Base64Url("{\"alg\":\"\\ud800\"}") + "." + c + ".x"), jwt::TokenError::kInvalidJson)
      << "a lone surrogate";
  EXPECT_EQ(error(Base64Url(std::string(2000, '[') + std::string(2000, ']')) + "." + c + ".x"),
            jwt::TokenError::kInvalidJson)
      << "nesting deeper than cjson's limit";
  EXPECT_EQ(error(Base64Url(R"({"alg":"HS256","typ":"JOSE"})") + "." + c + ".x"), jwt::TokenError::kInvalidTyp);
  EXPECT_EQ(error(Base64Url(R"({"alg":"HS256","typ":"jwt"})") + "." + c + ".xx"), jwt::TokenError::kNone);
  EXPECT_EQ(error(Base64Url(R"({"alg":"none"})") + "." + c + ".x"), jwt::TokenError::kInvalidAlg);
  EXPECT_EQ(error(Base64Url(R"([1,2])") + "." + c + ".x"), jwt::TokenError::kInvalidAlg) << "an array has no alg";
  EXPECT_EQ(error(h + "." + c + ".a.b"), jwt::TokenError::kInvalidSignature) << "the rest is the signature";
  EXPECT_EQ(error(h + "." + Base64Url("\"iss\"") + ".xx"), jwt::TokenError::kNone);
  EXPECT_EQ(t.claims_key.type, jwt::JsonMember::kMissing) << "a scalar has no members";
}

// Records the answer with its headers.
class FakeContext final : public RequestContext {
 public:
  FakeContext() { head = &request_head; }
  void Respond(const LocalResponse& response) override {
    status = response.status;
    body = response.body.empty() ? json({{"message", std::string(response.message)}}).dump() : std::string(response.body);
    for (const auto& [name, value] : response.headers) {
      if (name == "WWW-Authenticate") www_authenticate = value;
    }
  }
  void Resume(StepStatus) override {}
  bool ReadRequestBody() override { return true; }
  std::string Upstream(absl::string_view name) const {
    for (const auto& [n, v] : upstream_headers) {
      if (n == name) return std::string(v);
    }
    return "<none>";
  }

  MessageHead request_head;
  int status = 0;
  std::string body, www_authenticate;
};

std::string Id(int n) { return absl::StrCat("00000000-0000-4000-8000-", absl::Dec(n, absl::kZeroPad12)); }

class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = std::make_shared<ConfigSet>();
    config::v1::Service service;
    service.set_id(Id(1));
    service.set_enabled(true);
    config->services.push_back(service);
    config::v1::Route route;
    route.set_id(Id(11));
    route.set_service_id(Id(1));
    config->routes.push_back(route);
    config::v1::Consumer alice, guest;
    alice.set_id(Id(501));
    alice.set_username("alice");
    guest.set_id(Id(502));
    guest.set_custom_id("guest");
    config->consumers = {alice, guest};
    auto add = [&](int n, const std::string& key, const std::string& algorithm, const std::string& secret,
                   const std::string& pem) {
      config::v1::JwtSecret j;
      j.set_id(Id(n));
      j.set_consumer_id(Id(501));
      j.set_key(key);
      j.set_secret(secret);
      j.set_algorithm(algorithm);
      if (!pem.empty()) j.set_rsa_public_key(pem);
      config->jwt_secrets.push_back(j);
    };
    add(601, "hs256", "HS256", "s3cret", "");
    add(602, "hs384", "HS384", "s3cret-384", "");
    add(603, "hs512", "HS512", std::string(200, 'k'), "");  // longer than a block
    add(604, "rs256", "RS256", "unused", rsa_.public_pem);
    add(605, "rs384", "RS384", "unused", rsa_.public_pem);
    add(606, "rs512", "RS512", "unused", rsa_.public_pem);
    add(607, "es256", "ES256", "unused", ec256_.public_pem);
    add(608, "es384", "ES384", "unused", ec384_.public_pem);
    add(614, "es512", "ES512", "unused", ec521_.public_pem);
    add(609, "ps256", "PS256", "unused", rsa_.public_pem);
    add(610, "ps384", "PS384", "unused", rsa_.public_pem);
    add(611, "ps512", "PS512", "unused", rsa_.public_pem);
    add(612, "eddsa", "EdDSA", "unused", ed25519_.public_pem);
    add(613, "ed448", "EdDSA", "unused", ed448_.public_pem);
    add(609, "b64", "HS256", Base64Url("raw secret bytes\x01"), "");
    add(610, "bang", "HS256", "not base64!", "");
    base_ = config;
  }

  // Compiles the chain with one jwt instance on the route.
  void Use(const json& plugin_config) {
    config_ = std::make_shared<ConfigSet>(ExportableConfig(*base_));
    config::v1::Plugin p;
    p.set_id(Id(101));
    p.set_name("jwt");
    p.set_config(plugin_config.dump());
    p.set_route_id(Id(11));
    p.add_protocols("http");
    p.set_enabled(true);
    config_->plugins = {p};
    pipeline_ = std::make_unique<Pipeline>();
    ASSERT_TRUE(AddPluginChain(*config_, pipeline_.get()).ok());
  }

  // The status of the local answer (0: the request goes on).
  int Run(FakeContext& context) {
    context.match = Match{&config_->routes[0], nullptr, {}, false};
    for (const RequestStep* step : pipeline_->request_steps()) {
      if (step->OnRequest(context) == StepStatus::kStop) return context.status;
    }
    return 0;
  }
  int WithHeader(const std::string& value, FakeContext* context) {
    context->request_head.headers.emplace_back("Authorization", value);
    return Run(*context);
  }

  static std::string Claims(const std::string& iss, const std::string& more = "") {
    return absl::StrCat(R"({"iss":")", iss, R"(")", more.empty() ? "" : ",", more, "}");
  }

  test_support::TestKeyPair rsa_ = test_support::NewRsaKeyPair();
  test_support::TestKeyPair ec256_ = test_support::NewEcKeyPair("P-256");
  test_support::TestKeyPair ec384_ = test_support::NewEcKeyPair("P-384");
  test_support::TestKeyPair ec521_ = test_support::NewEcKeyPair("P-521");
  test_support::TestKeyPair ed25519_ = test_support::NewEdKeyPair("ED25519");
  test_support::TestKeyPair ed448_ = test_support::NewEdKeyPair("ED448");
  std::shared_ptr<ConfigSet> base_, config_;
  std::unique_ptr<Pipeline> pipeline_;
  const int64_t now_ = static_cast<int64_t>(std::time(nullptr));
};

TEST_F(JwtTest, EveryAlgorithmIdentifiesTheConsumerWithKongsHeaders) {
  Use(json::object());
  struct Case {
    const char* alg;
    std::string secret;
    EVP_PKEY* key;
  };
  const Case cases[] = {{"HS256", "s3cret", nullptr},        {"HS384", "s3cret-384", nullptr},
                        {"HS512", std::string(200, 'k'), nullptr}, {"RS256", "", rsa_.key.get()},
                        {"RS384", "", rsa_.key.get()},        {"RS512", "", rsa_.key.get()},
                        {"ES256", "", ec256_.key.get()},      {"ES384", "", ec384_.key.get()},
                        {"ES512", "", ec521_.key.get()},
                        {"PS256", "", rsa_.key.get()},        {"PS384", "", rsa_.key.get()},
                        {"PS512", "", rsa_.key.get()},        {"EdDSA", "", ed25519_.key.get()},
                        {"EdDSA", "ed448", ed448_.key.get()}};
  for (const Case& c : cases) {
    // (the EdDSA Ed448 case names its credential key in `secret`, which EdDSA does not use)
    std::string key = c.key != nullptr && !c.secret.empty() ? c.secret : absl::AsciiStrToLower(c.alg);
    FakeContext ok;
    ok.request_head.headers.emplace_back("X-Consumer-ID", "spoofed");
    EXPECT_EQ(WithHeader("Bearer " + SignJwt(c.alg, Claims(key), c.secret, c.key), &ok), 0) << c.alg << ok.body;
    ASSERT_NE(ok.consumer, nullptr) << c.alg;
    EXPECT_EQ(ok.consumer->username(), "alice");
    EXPECT_EQ(ok.Upstream("X-Consumer-ID"), Id(501));
    EXPECT_EQ(ok.Upstream("X-Consumer-Username"), "alice");
    EXPECT_EQ(ok.Upstream("X-Credential-Identifier"), key) << "Kong sends the jwt credential's key";
    EXPECT_NE(ok.credential_id, "") << "the credential's id, for limit_by credential";

    // The same token with one signature bit flipped.
    std::string token = SignJwt(c.alg, Claims(key), c.secret, c.key);
    std::string signature;
    ASSERT_TRUE(jwt::DecodeBase64(token.substr(token.rfind('.') + 1), &signature));
    signature[signature.size() / 2] ^= 0x01;
    FakeContext bad;
    EXPECT_EQ(WithHeader("Bearer " + token.substr(0, token.rfind('.') + 1) + Base64Url(signature), &bad), 401)
        << c.alg;
    EXPECT_EQ(bad.body, R"({"message":"Invalid signature"})") << c.alg;
    EXPECT_EQ(bad.www_authenticate, "Bearer error=\"invalid_token\"");
  }
}

TEST_F(JwtTest, TokenFromQueryCookieOrConfiguredHeaderAndMultipleTokens) {
  Use({{"cookie_names", {"session"}}, {"header_names", {"authorization", "x-token"}}});
  const std::string token = SignJwt("HS256", Claims("hs256"), "s3cret");
  const std::string in_query = "a=1&jwt=" + token, alone = "jwt=" + token;
  FakeContext query;
  query.target.query = in_query;
  query.target.has_query = true;
  EXPECT_EQ(Run(query), 0) << query.body;
  FakeContext cookie;
  cookie.request_head.headers.emplace_back("Cookie", "a=b; SESSION=" + token + "; c=d");
  EXPECT_EQ(Run(cookie), 0) << cookie.body;
  FakeContext header;
  header.request_head.headers.emplace_back("X-Token", "bearer " + token);
  EXPECT_EQ(Run(header), 0) << header.body;
  FakeContext same;
  same.target.query = alone;
  same.target.has_query = true;
  EXPECT_EQ(WithHeader("Bearer " + token, &same), 0) << "the same token twice is one token";
  FakeContext two;
  two.target.query = alone;
  two.target.has_query = true;
  EXPECT_EQ(WithHeader("Bearer " + SignJwt("HS256", Claims("hs256", R"("x":1)"), "s3cret"), &two), 401);
  EXPECT_EQ(two.body, R"({"message":"Multiple tokens provided"})");
}

TEST_F(JwtTest, RefusalsAreKongs401Bodies) {
  Use({{"realm", "api"}, {"claims_to_verify", {"exp", "nbf"}}});
  auto refused = [this](const std::string& authorization) {
    FakeContext c;
    EXPECT_EQ(WithHeader(authorization, &c), 401) << authorization;
    EXPECT_EQ(c.consumer, nullptr);
    return std::pair(json::parse(c.body), c.www_authenticate);
  };
  FakeContext none;
  EXPECT_EQ(Run(none), 401);
  EXPECT_EQ(none.body, R"({"message":"Unauthorized"})");
  EXPECT_EQ(none.www_authenticate, "Bearer realm=\"api\"");
  const std::string valid = absl::StrCat(R"("exp":)", now_ + 600, R"(,"nbf":)", now_ - 600);
  EXPECT_EQ(refused("Bearer x").first, json({{"message", "Bad token; invalid JSON"}}));
  EXPECT_EQ(refused("Bearer x").second, "Bearer realm=\"api\" error=\"invalid_token\"");
  EXPECT_EQ(refused("Bearer " + Base64Url("{\"alg\":\"HS256\"}") + "." + Base64Url("{") + ".x").first,
            json({{"message", "Bad token; invalid JSON"}}));
  EXPECT_EQ(refused("Bearer " + SignJwt("HS256", "{}", "s3cret")).first,
            json({{"message", "No mandatory 'iss' in claims"}}));
  EXPECT_EQ(refused("Bearer " + SignJwt("HS256", R"({"iss":""})", "s3cret")).first,
            json({{"message", "Invalid 'iss' in claims"}}));
  EXPECT_EQ(refused("Bearer " + SignJwt("HS256", Claims("nobody", valid), "s3cret")).first,
            json({{"message", "No credentials found for given 'iss'"}}));
  EXPECT_EQ(refused("Bearer " + SignJwt("HS256", R"({"iss":7})", "s3cret")).first,
            json({{"message", "No credentials found for given 'iss'"}}));
  EXPECT_EQ(refused("Bearer " + SignJwt("HS384", Claims("hs256", valid), "s3cret")).first,
            json({{"message", "Invalid algorithm"}}));
  EXPECT_EQ(refused("Bearer " + SignJwt("HS256", Claims("hs256", valid), "wrong")).first,
            json({{"message", "Invalid signature"}}));
  EXPECT_EQ(refused("Bearer " + SignJwt("HS256", Claims("hs256"), "s3cret")).first,
            json({{"exp", "must be a number"}, {"nbf", "must be a number"}}));
  EXPECT_EQ(refused("Bearer " + SignJwt("HS256", Claims("hs256", absl::StrCat(R"("exp":)", now_ - 1, R"(,"nbf":)",
                                                                          now_ + 600)),
                                        "s3cret"))
                .first,
            json({{"exp", "token expired"}, {"nbf", "token not valid yet"}}));
  EXPECT_EQ(refused("Bearer " + SignJwt("HS256", Claims("hs256", R"("exp":"soon","nbf":0)"), "s3cret")).first,
            json({{"exp", "must be a number"}}));
  // The key may be a header member instead (e.g. kid).
  Use({{"key_claim_name", "kid"}});
  FakeContext kid;
  EXPECT_EQ(WithHeader("Bearer " + SignJwt("HS256", "{}", "s3cret", nullptr, R"({"alg":"HS256","kid":"hs256"})"),
                       &kid),
            0)
      << kid.body;
}

TEST_F(JwtTest, MaximumExpirationSecretIsBase64AnonymousAndPreflight) {
  Use({{"claims_to_verify", {"exp"}}, {"maximum_expiration", 60}});
  FakeContext far;
  EXPECT_EQ(WithHeader("Bearer " + SignJwt("HS256", Claims("hs256", absl::StrCat(R"("exp":)", now_ + 3600)), "s3cret"),
                       &far),
            401);
  EXPECT_EQ(json::parse(far.body), json({{"exp", "exceeds maximum allowed expiration"}}));
  FakeContext near;
  EXPECT_EQ(WithHeader("Bearer " + SignJwt("HS256", Claims("hs256", absl::StrCat(R"("exp":)", now_ + 30)), "s3cret"),
                       &near),
            0);

  Use({{"secret_is_base64", true}});
  FakeContext b64;
  EXPECT_EQ(WithHeader("Bearer " + SignJwt("HS256", Claims("b64"), "raw secret bytes\x01"), &b64), 0) << b64.body;
  FakeContext not_b64;
  EXPECT_EQ(WithHeader("Bearer " + SignJwt("HS256", Claims("bang"), "not base64!"), &not_b64), 401);
  EXPECT_EQ(not_b64.body, R"({"message":"Invalid key/secret"})");

  Use({{"anonymous", "guest-by-id-or-name"}});
  FakeContext missing_anonymous;
  EXPECT_EQ(Run(missing_anonymous), 500);
  Use({{"anonymous", Id(502)}, {"run_on_preflight", false}});
  FakeContext anonymous;
  EXPECT_EQ(WithHeader("Bearer nonsense", &anonymous), 0);
  ASSERT_NE(anonymous.consumer, nullptr);
  EXPECT_EQ(anonymous.consumer->custom_id(), "guest");
  EXPECT_EQ(anonymous.Upstream("X-Anonymous-Consumer"), "true");
  FakeContext preflight;
  preflight.request_head.method = "OPTIONS";
  EXPECT_EQ(Run(preflight), 0);
  EXPECT_EQ(preflight.consumer, nullptr) << "run_on_preflight false: not even anonymous";
}

TEST_F(JwtTest, SecretsReachTheDataPlaneAndABadKeyFailsTheCompileNamingIt) {
  ConfigSet exported = ExportableConfig(*base_, std::string(16, 'e'));
  ASSERT_EQ(exported.jwt_secrets.size(), base_->jwt_secrets.size());
  EXPECT_EQ(exported.jwt_secrets[0].secret(), "s3cret");
  base_->jwt_secrets[3].set_rsa_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
  config_ = std::make_shared<ConfigSet>(*base_);
  config::v1::Plugin p;
  p.set_id(Id(101));
  p.set_name("jwt");
  p.set_config("{}");
  p.add_protocols("http");
  p.set_enabled(true);
  config_->plugins = {p};
  Pipeline pipeline;
  const absl::Status status = AddPluginChain(*config_, &pipeline);
  EXPECT_EQ(status.message(), absl::StrCat("plugin ", Id(101), " (jwt): jwt credential ", Id(604),
                                           ": rsa_public_key: invalid key"));
}

}  // namespace
}  // namespace portico::dp::plugins
