#include "data_plane/router/prefix_trie.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace portico::router {
namespace {

std::vector<uint32_t> Collect(const PrefixTrie& trie, absl::string_view text) {
  std::vector<uint32_t> out;
  trie.ForEachPrefixOf(text, [&out](const std::vector<uint32_t>& values) {
    out.insert(out.end(), values.begin(), values.end());
  });
  return out;
}

TEST(PrefixTrieTest, EmptyTrieFindsNothing) {
  PrefixTrie trie;
  EXPECT_TRUE(Collect(trie, "/a").empty());
  EXPECT_EQ(trie.node_count(), 1u);
}

TEST(PrefixTrieTest, ReturnsEveryStoredPrefixShortestFirst) {
  PrefixTrie trie;
  trie.Insert("/api/v1", 3);
  trie.Insert("/api", 1);
  trie.Insert("/", 0);
  trie.Insert("/api/v2", 4);
  trie.Insert("/apix", 2);
  EXPECT_EQ(Collect(trie, "/api/v1/users"), (std::vector<uint32_t>{0, 1, 3}));
  EXPECT_EQ(Collect(trie, "/apix"), (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(Collect(trie, "/ap"), (std::vector<uint32_t>{0}));
  EXPECT_EQ(Collect(trie, "x"), (std::vector<uint32_t>{}));
}

TEST(PrefixTrieTest, SplitsEdgesAndKeepsValuesPerPrefix) {
  PrefixTrie trie;
  trie.Insert("/abcdef", 1);
  trie.Insert("/abcxyz", 2);  // splits "/abcdef" at "/abc"
  trie.Insert("/ab", 3);      // splits again above
  trie.Insert("/abcdef", 4);  // second value on an existing prefix
  EXPECT_EQ(Collect(trie, "/abcdefg"), (std::vector<uint32_t>{3, 1, 4}));
  EXPECT_EQ(Collect(trie, "/abcxy"), (std::vector<uint32_t>{3}));
  EXPECT_EQ(Collect(trie, "/abcxyz"), (std::vector<uint32_t>{3, 2}));
}

TEST(PrefixTrieTest, EmptyPrefixMatchesEverything) {
  PrefixTrie trie;
  trie.Insert("", 7);
  EXPECT_EQ(Collect(trie, ""), (std::vector<uint32_t>{7}));
  EXPECT_EQ(Collect(trie, "/z"), (std::vector<uint32_t>{7}));
}

TEST(PrefixTrieTest, HighBytesAreOrderedAsUnsigned) {
  PrefixTrie trie;
  trie.Insert("/\xc3\xa9", 1);
  trie.Insert("/a", 2);
  trie.Insert("/\x7f", 3);
  EXPECT_EQ(Collect(trie, "/\xc3\xa9t\xc3\xa9"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(Collect(trie, "/a"), (std::vector<uint32_t>{2}));
  EXPECT_EQ(Collect(trie, "/\x7f"), (std::vector<uint32_t>{3}));
}

// Agrees with a brute-force scan on a few thousand generated prefixes.
TEST(PrefixTrieTest, AgreesWithBruteForce) {
  PrefixTrie trie;
  std::vector<std::string> prefixes;
  for (int a = 0; a < 12; ++a) {
    for (int b = 0; b < 12; ++b) {
      for (int c = 0; c < 20; c += 3) {
        prefixes.push_back(absl::StrCat("/s", a, "/r", b, c == 0 ? "" : absl::StrCat("/x", c)));
      }
    }
  }
  for (uint32_t i = 0; i < prefixes.size(); ++i) trie.Insert(prefixes[i], i);
  trie.Shrink();
  for (const std::string& text : {std::string("/s1/r1"), std::string("/s11/r11/x18/y"), std::string("/s1/r10"),
                                  std::string("/s3/r4/x9"), std::string("/s3/r4/x"), std::string("/t")}) {
    std::vector<uint32_t> expected;
    // Brute force, ordered by prefix length then insertion order.
    std::map<size_t, std::vector<uint32_t>> by_length;
    for (uint32_t i = 0; i < prefixes.size(); ++i) {
      if (absl::StartsWith(text, prefixes[i])) by_length[prefixes[i].size()].push_back(i);
    }
    for (const auto& [length, values] : by_length) expected.insert(expected.end(), values.begin(), values.end());
    EXPECT_EQ(Collect(trie, text), expected) << text;
  }
}

}  // namespace
}  // namespace portico::router
