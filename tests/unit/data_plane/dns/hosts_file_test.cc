#include "data_plane/dns/hosts_file.h"

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

using Addresses = std::vector<std::string>;

TEST(HostsFileTest, ParsesNamesAliasesCommentsAndBothFamilies) {
  const HostsTable t = ParseHosts(
      "# comment line\n"
      "127.0.0.1\tlocalhost\n"
      "10.0.0.5   App.Example.COM   app  # trailing comment\n"
      "\n"
      "   \t  \n"
      "::1 localhost ip6-localhost\r\n"
      "10.0.0.6 app\n"
      "10.0.0.5 app.example.com\n"
      "absolute.example. 10.9.9.9\n"  // not an address first: skipped
      "10.0.0.7 trailing.dot.\n"
      "fe80::1%eth0 scoped\n"
      "10.0.0.8\n");
  EXPECT_EQ(t.at("localhost"), (Addresses{"127.0.0.1", "::1"}));
  EXPECT_EQ(t.at("ip6-localhost"), (Addresses{"::1"}));
  EXPECT_EQ(t.at("app.example.com"), (Addresses{"10.0.0.5"})) << "lowercased, no duplicate";
  EXPECT_EQ(t.at("app"), (Addresses{"10.0.0.5", "10.0.0.6"})) << "file order";
  EXPECT_EQ(t.at("trailing.dot"), (Addresses{"10.0.0.7"}));
  EXPECT_FALSE(t.contains("absolute.example."));
  EXPECT_FALSE(t.contains("10.9.9.9"));
  EXPECT_FALSE(t.contains("scoped"));
  EXPECT_FALSE(t.contains("# comment line"));
  EXPECT_FALSE(t.contains("comment"));
  EXPECT_EQ(t.size(), 5u);
}

TEST(HostsFileTest, EmptyAndGarbageGiveNothing) {
  EXPECT_TRUE(ParseHosts("").empty());
  EXPECT_TRUE(ParseHosts("not a hosts file\n\x01\x02\n1.2.3 x\n").empty());
}

}  // namespace
}  // namespace portico::dp
