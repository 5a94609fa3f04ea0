#include "control_plane/admin/admin_auth.h"

#include <string>

#include "absl/strings/match.h"
#include "common/base/file.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico::cp {
namespace {

using test_support::TempDir;

AdminToken TokenOf(absl::string_view text) {
  absl::StatusOr<AdminToken> token = AdminToken::FromText(text, "test");
  EXPECT_TRUE(token.ok()) << token.status();
  return *token;
}

HttpRequest WithAuthorization(std::initializer_list<std::string> values) {
  HttpRequest request;
  request.method = "GET";
  request.path = request.target = "/services";
  for (const std::string& v : values) request.headers.emplace_back("Authorization", v);
  return request;
}

const std::string* HeaderOf(const HttpResponse& response, absl::string_view name) {
  for (const auto& [k, v] : response.headers) {
    if (absl::EqualsIgnoreCase(k, name)) return &v;
  }
  return nullptr;
}

TEST(AdminTokenTest, AcceptsOnlyTheExactBearerToken) {
  const AdminToken token = TokenOf("s3cret-Token_1");
  EXPECT_TRUE(token.Accepts("Bearer s3cret-Token_1"));
  EXPECT_TRUE(token.Accepts("bearer s3cret-Token_1"));  // the scheme is case-insensitive
  EXPECT_FALSE(token.Accepts("Bearer s3cret-token_1"));  // the token is not
  EXPECT_FALSE(token.Accepts("Bearer s3cret-Token_"));
  EXPECT_FALSE(token.Accepts("Bearer s3cret-Token_12"));
  EXPECT_FALSE(token.Accepts("Bearer  s3cret-Token_1"));
  EXPECT_FALSE(token.Accepts("Basic s3cret-Token_1"));
  EXPECT_FALSE(token.Accepts("s3cret-Token_1"));
  EXPECT_FALSE(token.Accepts("Bearer "));
  EXPECT_FALSE(token.Accepts(""));
}

TEST(AdminTokenTest, FileLosesOneTrailingNewlineOnly) {
  TempDir tmp;
  ASSERT_TRUE(WriteFileAtomically(tmp.File("lf"), "abc\n", 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(tmp.File("crlf"), "abc\r\n", 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(tmp.File("bare"), "abc", 0600).ok());
  for (const char* name : {"lf", "crlf", "bare"}) {
    absl::StatusOr<AdminToken> token = AdminToken::FromFile(tmp.File(name));
    ASSERT_TRUE(token.ok()) << name << ": " << token.status();
    EXPECT_TRUE(token->Accepts("Bearer abc")) << name;
    EXPECT_FALSE(token->Accepts("Bearer abc\n")) << name;
  }
}

TEST(AdminTokenTest, RefusesEmptyMissingAndMultiLineFilesWithoutShowingTheContent) {
  TempDir tmp;
  ASSERT_TRUE(WriteFileAtomically(tmp.File("empty"), "", 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(tmp.File("newline"), "\n", 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(tmp.File("two-lines"), "secretpart\nmore\n", 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(tmp.File("space"), "secret part", 0600).ok());
  for (const char* name : {"empty", "newline", "two-lines", "space"}) {
    absl::StatusOr<AdminToken> token = AdminToken::FromFile(tmp.File(name));
    ASSERT_FALSE(token.ok()) << name;
    EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_TRUE(absl::StrContains(token.status().message(), tmp.File(name))) << token.status();
    EXPECT_FALSE(absl::StrContains(token.status().message(), "secret")) << token.status();
  }
  absl::StatusOr<AdminToken> missing = AdminToken::FromFile(tmp.File("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "--admin-token-file")) << missing.status();
}

TEST(AdminTokenTest, CheckAnswersKongStyle401) {
  const AdminToken token = TokenOf("tok");
  EXPECT_FALSE(token.Check(WithAuthorization({"Bearer tok"})).has_value());

  std::optional<HttpResponse> missing = token.Check(WithAuthorization({}));
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->status, 401);
  EXPECT_EQ(missing->body, R"({"message":"Unauthorized"})");
  ASSERT_NE(HeaderOf(*missing, "WWW-Authenticate"), nullptr);
  EXPECT_EQ(*HeaderOf(*missing, "WWW-Authenticate"), "Bearer");

  std::optional<HttpResponse> wrong = token.Check(WithAuthorization({"Bearer nope"}));
  ASSERT_TRUE(wrong.has_value());
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(*HeaderOf(*wrong, "WWW-Authenticate"), R"(Bearer error="invalid_token")");

  std::optional<HttpResponse> basic = token.Check(WithAuthorization({"Basic dG9rOg=="}));
  ASSERT_TRUE(basic.has_value());
  EXPECT_EQ(*HeaderOf(*basic, "WWW-Authenticate"), "Bearer");

  // Two Authorization headers are refused even when one is right.
  EXPECT_TRUE(token.Check(WithAuthorization({"Bearer tok", "Bearer nope"})).has_value());
  EXPECT_TRUE(token.Check(WithAuthorization({"Bearer tok", "Bearer tok"})).has_value());
}

TEST(AdminListenRuleTest, LoopbackAddresses) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "[::]", "10.0.0.1", "192.168.1.1", "::ffff:10.0.0.1", "128.0.0.1",
                           "example.com", ""}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST(AdminListenRuleTest, LoopbackNeedsNothing) {
  EXPECT_TRUE(CheckAdminListenersSecured({{"admin-listen", "127.0.0.1", false}, {"admin-ssl-listen", "::1", true}},
                                         false, false)
                  .ok());
}

TEST(AdminListenRuleTest, OffLoopbackWithoutAuthenticationIsRefusedNamingTheFlag) {
  absl::Status s = CheckAdminListenersSecured({{"admin-listen", "0.0.0.0", false}}, false, false);
  ASSERT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "--admin-listen")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "--admin-token-file")) << s;

  s = CheckAdminListenersSecured({{"admin-listen", "127.0.0.1", false}, {"admin-ssl-listen", "0.0.0.0", true}},
                                 false, false);
  ASSERT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "--admin-ssl-listen")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "--admin-client-ca")) << s;
}

TEST(AdminListenRuleTest, TokenProtectsEveryListenerClientCaOnlyTheTlsOne) {
  const std::vector<AdminListener> both_public = {{"admin-listen", "0.0.0.0", false},
                                                  {"admin-ssl-listen", "::", true}};
  EXPECT_TRUE(CheckAdminListenersSecured(both_public, true, false).ok());
  EXPECT_TRUE(CheckAdminListenersSecured({{"admin-ssl-listen", "0.0.0.0", true}}, false, true).ok());
  // A client CA does not protect the cleartext listener.
  absl::Status s = CheckAdminListenersSecured(both_public, false, true);
  ASSERT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "--admin-listen ")) << s;
  EXPECT_TRUE(CheckAdminListenersSecured({{"admin-listen", "127.0.0.1", false}, {"admin-ssl-listen", "::", true}},
                                         false, true)
                  .ok());
}

}  // namespace
}  // namespace portico::cp
