// Every row of KONG-REFERENCE.md §3.5 (v0) plus edge cases.
#include <string>

#include "data_plane/router/router.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

struct PathCase {
  const char* name;
  const char* service_path;  // "" = null
  const char* route_path;    // the matched path ("" = route matched without a path)
  const char* request;
  bool strip_path;
  const char* expected;
};

void PrintTo(const PathCase& c, std::ostream* os) { *os << c.name; }

class UpstreamPathTest : public testing::TestWithParam<PathCase> {};

TEST_P(UpstreamPathTest, MatchesKongV0) {
  const PathCase& c = GetParam();
  EXPECT_EQ(BuildUpstreamPath(c.service_path, c.request, c.route_path, c.strip_path), c.expected)
      << "service=" << c.service_path << " route=" << c.route_path << " request=" << c.request
      << " strip=" << c.strip_path;
}

INSTANTIATE_TEST_SUITE_P(
    KongReferenceTable, UpstreamPathTest,
    testing::Values(
        PathCase{"NullBaseStripExact", "", "/r", "/r", true, "/"},
        PathCase{"SlashBaseStripSubpath", "/", "/r", "/r/x", true, "/x"},
        PathCase{"SlashBaseStripNotSegmentAware", "/", "/r", "/rx", true, "/x"},
        PathCase{"SlashBaseNoStrip", "/", "/r", "/r/x", false, "/r/x"},
        PathCase{"BaseStripExact", "/s", "/r", "/r", true, "/s"},
        PathCase{"BaseStripTrailingSlashKept", "/s", "/r", "/r/", true, "/s/"},
        PathCase{"BaseStripSubpath", "/s", "/r", "/r/x", true, "/s/x"},
        PathCase{"BaseStripGlued", "/s", "/r", "/rx", true, "/s/x"},
        PathCase{"BaseNoStrip", "/s", "/r", "/r", false, "/s/r"},
        PathCase{"BaseNoStripTrailingSlash", "/s", "/r", "/r/x/", false, "/s/r/x/"},
        PathCase{"BaseStripRouteWithSlash", "/s", "/r/", "/r/", true, "/s/"},
        PathCase{"SlashEndedBaseStripDropsSlash", "/s/", "/r", "/r", true, "/s"},
        PathCase{"SlashEndedBaseStripKeepsSlash", "/s/", "/r", "/r/", true, "/s/"},
        PathCase{"SlashEndedBaseStripSubpath", "/s/", "/r", "/r/x", true, "/s/x"},
        PathCase{"SlashEndedBaseNoStrip", "/s/", "/r", "/r", false, "/s/r"},
        PathCase{"SlashEndedBaseNoStripRouteSlash", "/s/", "/r/", "/r/x", false, "/s/r/x"}),
    [](const testing::TestParamInfo<PathCase>& info) { return std::string(info.param.name); });

INSTANTIATE_TEST_SUITE_P(
    EdgeCases, UpstreamPathTest,
    testing::Values(
        // Service path null behaves as "/".
        PathCase{"NullBaseNoStrip", "", "/r", "/r/x", false, "/r/x"},
        PathCase{"NullBaseStripSubpath", "", "/r", "/r/x", true, "/x"},
        // Request "/".
        PathCase{"RootRequestRootRouteNullBase", "", "/", "/", true, "/"},
        PathCase{"RootRequestRootRouteBase", "/s", "/", "/", true, "/s"},
        PathCase{"RootRequestRootRouteSlashBase", "/s/", "/", "/", true, "/s/"},
        PathCase{"RootRequestNoStripBase", "/s", "/", "/", false, "/s"},
        PathCase{"RootRequestNoStripSlashBase", "/s/", "/", "/", false, "/s/"},
        PathCase{"RootRouteStripSubpath", "/s", "/", "/x", true, "/s/x"},
        // Double slashes are collapsed where base and postfix meet.
        PathCase{"CollapseAtJoinSlashBase", "/s/", "/r", "/r/x", true, "/s/x"},
        PathCase{"CollapseAtJoinRootBase", "/", "/r", "/r/", true, "/"},
        PathCase{"CollapseAtJoinNoStrip", "/s/", "/r", "/r/", false, "/s/r/"},
        // Route matched without a path: nothing to strip.
        PathCase{"NoRoutePathStrip", "/s", "", "/x/y", true, "/s/x/y"},
        PathCase{"NoRoutePathStripSlashBase", "/s/", "", "/x", true, "/s/x"},
        // Leading dot segments of the postfix are dropped.
        PathCase{"DotPostfix", "/s", "/r", "/r.", true, "/s"},
        PathCase{"DotDotPostfix", "/s", "/r", "/r..", true, "/s"},
        PathCase{"DotSlashPostfix", "/s", "/r", "/r./x", true, "/s/x"},
        PathCase{"DotDotSlashPostfix", "/s", "/r", "/r../x", true, "/s/x"},
        // Deeper service paths.
        PathCase{"DeepBase", "/a/b", "/r", "/r/x/y", true, "/a/b/x/y"},
        PathCase{"DeepBaseNoStrip", "/a/b/", "/r", "/r/x", false, "/a/b/r/x"}),
    [](const testing::TestParamInfo<PathCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace portico::dp
