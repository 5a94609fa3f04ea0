// Request path normalisation (Kong's uri.normalize with merged slashes) and the escaping of the
// upstream path (Kong's uri.escape).
#include <string>

#include "data_plane/router/router.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

struct NormalizeCase {
  const char* name;
  const char* raw;
  const char* normalized;
};

void PrintTo(const NormalizeCase& c, std::ostream* os) { *os << c.name; }

class NormalizeTest : public testing::TestWithParam<NormalizeCase> {};

TEST_P(NormalizeTest, MatchesKong) {
  EXPECT_EQ(NormalizeRequestPath(GetParam().raw), GetParam().normalized) << GetParam().raw;
}

INSTANTIATE_TEST_SUITE_P(
    Table, NormalizeTest,
    testing::Values(
        NormalizeCase{"Empty", "", ""},
        NormalizeCase{"Root", "/", "/"},
        NormalizeCase{"AlreadyNormal", "/a/b/c/", "/a/b/c/"},
        NormalizeCase{"DecodeUnreserved", "/%61%62%2D%2e%5F%7E", "/ab-._~"},
        NormalizeCase{"DecodeOthers", "/a%20b%C3%A9", "/a b\xc3\xa9"},
        NormalizeCase{"ReservedStayEncoded", "/a%2fb%2Fc%3f%23", "/a%2Fb%2Fc%3F%23"},
        NormalizeCase{"PercentStaysEncoded", "/100%25", "/100%25"},
        NormalizeCase{"AllReserved", "/%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%2F%3F%25%23%5B%5D",
                      "/%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%2F%3F%25%23%5B%5D"},
        NormalizeCase{"StrayPercentEncoded", "/a%zz%4", "/a%25zz%254"},
        NormalizeCase{"StrayPercentAtEnd", "/100%", "/100%25"},
        // Found by tests/fuzz/path_normalize_fuzz: decoded bytes must not form a new triplet with
        // a bare '%' (was "/%2e", a dot segment once the upstream decodes it; not idempotent).
        NormalizeCase{"NoTripletFromDecodedBytes", "/%%32%65", "/%252e"},
        NormalizeCase{"NoDotSegmentFromDecodedBytes", "/a/%%32%65%%32%65/b", "/a/%252e%252e/b"},
        NormalizeCase{"DotSegment", "/a/./b", "/a/b"},
        NormalizeCase{"DotDotSegment", "/a/b/../c", "/a/c"},
        NormalizeCase{"DotDotAboveRoot", "/../../a", "/a"},
        NormalizeCase{"TrailingDot", "/a/b/.", "/a/b/"},
        NormalizeCase{"TrailingDotDot", "/a/b/..", "/a/"},
        NormalizeCase{"EncodedDots", "/a/%2e%2E/b", "/b"},
        NormalizeCase{"EncodedDotMixed", "/a/%2e./b", "/b"},
        NormalizeCase{"DotsInsideNames", "/a.b/..c/d..", "/a.b/..c/d.."},
        NormalizeCase{"MergeSlashes", "//a///b//", "/a/b/"},
        NormalizeCase{"SlashesAndDots", "/a//./b/../../c", "/c"},
        NormalizeCase{"PdkExample", "/t/Abc%20123%C3%B8/parent/../test/.", "/t/Abc 123\xc3\xb8/test/"}),
    [](const testing::TestParamInfo<NormalizeCase>& info) { return std::string(info.param.name); });

TEST(EscapeUpstreamPathTest, SafeBytesUnchanged) {
  EXPECT_EQ(EscapeUpstreamPath("/a-b_c.d~e/!$&'()*+,;=:@[]%2F"), "/a-b_c.d~e/!$&'()*+,;=:@[]%2F");
}

TEST(EscapeUpstreamPathTest, FragmentSignEncoded) {
  // Kong's escape keeps '#'; a request-target cannot carry it (tests/fuzz/path_normalize_fuzz).
  EXPECT_EQ(EscapeUpstreamPath("/a#b"), "/a%23b");
}

TEST(EscapeUpstreamPathTest, OtherBytesEncodedUppercase) {
  EXPECT_EQ(EscapeUpstreamPath("/a b\xc3\xa9\"<>\\^`{|}"), "/a%20b%C3%A9%22%3C%3E%5C%5E%60%7B%7C%7D");
}

TEST(EscapeUpstreamPathTest, NormalizeThenEscapeRoundTrip) {
  // What goes upstream for a request path: decoded unreserved, reserved kept, others re-encoded.
  EXPECT_EQ(EscapeUpstreamPath(NormalizeRequestPath("/x/%7euser/a%2fb/c%20d/../e")), "/x/~user/a%2Fb/e");
  EXPECT_EQ(EscapeUpstreamPath(NormalizeRequestPath("/c%20d")), "/c%20d");
}

}  // namespace
}  // namespace portico::dp
