#include "data_plane/router/prefix_trie.h"

#include <algorithm>
#include <map>
#include <memory_resource>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

// A trie over (key, value) pairs: the pairs are sorted stably by key, as the router does, and a
// visited range maps back to the values of the pairs in it.
class TestTrie {
 public:
  void Insert(std::string key, uint32_t value) { pairs_.push_back({std::move(key), value}); }
  void Build() {
    std::stable_sort(pairs_.begin(), pairs_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<absl::string_view> keys;
    for (const auto& pair : pairs_) keys.push_back(pair.first);
    trie_ = PrefixTrie(keys, std::pmr::get_default_resource());
  }
  std::vector<uint32_t> Collect(absl::string_view text) const {
    std::vector<uint32_t> out;
    trie_.ForEachPrefixOf(text, [&](uint32_t begin, uint32_t end) {
      EXPECT_LT(begin, end);
      for (uint32_t i = begin; i < end; ++i) out.push_back(pairs_[i].second);
    });
    return out;
  }
  size_t node_count() const { return trie_.node_count(); }

 private:
  std::vector<std::pair<std::string, uint32_t>> pairs_;
  PrefixTrie trie_;
};

TEST(PrefixTrieTest, EmptyTrieFindsNothing) {
  TestTrie trie;
  trie.Build();
  EXPECT_TRUE(trie.Collect("/a").empty());
  EXPECT_TRUE(trie.Collect("").empty());
  EXPECT_EQ(trie.node_count(), 0u);
}

TEST(PrefixTrieTest, ReturnsEveryStoredPrefixShortestFirst) {
  TestTrie trie;
  trie.Insert("/api/v1", 3);
  trie.Insert("/api", 1);
  trie.Insert("/", 0);
  trie.Insert("/api/v2", 4);
  trie.Insert("/apix", 2);
  trie.Build();
  EXPECT_EQ(trie.Collect("/api/v1/users"), (std::vector<uint32_t>{0, 1, 3}));
  EXPECT_EQ(trie.Collect("/apix"), (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(trie.Collect("/ap"), (std::vector<uint32_t>{0}));
  EXPECT_EQ(trie.Collect("x"), (std::vector<uint32_t>{}));
}

TEST(PrefixTrieTest, SplitsEdgesAndKeepsValuesPerPrefix) {
  TestTrie trie;
  trie.Insert("/abcdef", 1);
  trie.Insert("/abcxyz", 2);  // splits "/abcdef" at "/abc"
  trie.Insert("/ab", 3);      // splits again above
  trie.Insert("/abcdef", 4);  // second value on an existing prefix
  trie.Build();
  EXPECT_EQ(trie.Collect("/abcdefg"), (std::vector<uint32_t>{3, 1, 4}));
  EXPECT_EQ(trie.Collect("/abcxy"), (std::vector<uint32_t>{3}));
  EXPECT_EQ(trie.Collect("/abcxyz"), (std::vector<uint32_t>{3, 2}));
}

TEST(PrefixTrieTest, EmptyPrefixMatchesEverything) {
  TestTrie trie;
  trie.Insert("", 7);
  trie.Build();
  EXPECT_EQ(trie.Collect(""), (std::vector<uint32_t>{7}));
  EXPECT_EQ(trie.Collect("/z"), (std::vector<uint32_t>{7}));
}

TEST(PrefixTrieTest, HighBytesAreOrderedAsUnsigned) {
  TestTrie trie;
  trie.Insert("/\xc3\xa9", 1);
  trie.Insert("/a", 2);
  trie.Insert("/\x7f", 3);
  trie.Build();
  EXPECT_EQ(trie.Collect("/\xc3\xa9t\xc3\xa9"), (std::vector<uint32_t>{1}));
  EXPECT_EQ(trie.Collect("/a"), (std::vector<uint32_t>{2}));
  EXPECT_EQ(trie.Collect("/\x7f"), (std::vector<uint32_t>{3}));
}

// Every byte value as a child of one node (the memchr child lookup), and a chain of nested keys.
TEST(PrefixTrieTest, WideFanOutAndDeepChain) {
  TestTrie trie;
  for (int byte = 0; byte < 256; ++byte) trie.Insert(std::string("/") + static_cast<char>(byte) + "x", byte);
  std::string chain = "/deep";
  for (uint32_t n = 0; n < 300; ++n) {
    chain.push_back('a');
    trie.Insert(chain, 1000 + n);
  }
  trie.Build();
  for (int byte = 0; byte < 256; ++byte) {
    const std::string text = std::string("/") + static_cast<char>(byte) + "xyz";
    EXPECT_EQ(trie.Collect(text), (std::vector<uint32_t>{static_cast<uint32_t>(byte)})) << byte;
  }
  EXPECT_EQ(trie.Collect("/dx"), (std::vector<uint32_t>{'d'}));
  const std::vector<uint32_t> deep = trie.Collect("/deep" + std::string(5, 'a') + "b");
  EXPECT_EQ(deep, (std::vector<uint32_t>{1000, 1001, 1002, 1003, 1004}));
  EXPECT_EQ(trie.Collect(chain + "/").size(), 300u);
}

// Agrees with a brute-force scan on a few thousand generated prefixes.
TEST(PrefixTrieTest, AgreesWithBruteForce) {
  TestTrie trie;
  std::vector<std::string> prefixes;
  for (int a = 0; a < 12; ++a) {
    for (int b = 0; b < 12; ++b) {
      for (int c = 0; c < 20; c += 3) {
        prefixes.push_back(absl::StrCat("/s", a, "/r", b, c == 0 ? "" : absl::StrCat("/x", c)));
      }
    }
  }
  for (uint32_t i = 0; i < prefixes.size(); ++i) trie.Insert(prefixes[i], i);
  trie.Build();
  for (const std::string& text : {std::string("/s1/r1"), std::string("/s11/r11/x18/y"), std::string("/s1/r10"),
                                  std::string("/s3/r4/x9"), std::string("/s3/r4/x"), std::string("/t")}) {
    std::vector<uint32_t> expected;
    // Brute force, ordered by prefix length then insertion order.
    std::map<size_t, std::vector<uint32_t>> by_length;
    for (uint32_t i = 0; i < prefixes.size(); ++i) {
      if (absl::StartsWith(text, prefixes[i])) by_length[prefixes[i].size()].push_back(i);
    }
    for (const auto& [length, values] : by_length) expected.insert(expected.end(), values.begin(), values.end());
    EXPECT_EQ(trie.Collect(text), expected) << text;
  }
}

}  // namespace
}  // namespace portico::dp
