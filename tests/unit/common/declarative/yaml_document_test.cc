#include "common/declarative/yaml_document.h"

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace portico {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

json Parse(absl::string_view text, const DocumentLimits& limits = {}) {
  absl::StatusOr<json> parsed = ParseYamlDocument(text, limits);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << "\n--- text:\n" << text;
  return parsed.ok() ? *parsed : json("<parse failed>");
}

// The error message of a text that must not parse.
std::string Error(absl::string_view text, const DocumentLimits& limits = {}) {
  absl::StatusOr<json> parsed = ParseYamlDocument(text, limits);
  EXPECT_FALSE(parsed.ok()) << "parsed as " << (parsed.ok() ? parsed->dump() : "") << "\n--- text:\n" << text;
  if (parsed.ok()) return "<parsed>";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
  return std::string(parsed.status().message());
}

// The value of `v: <scalar>`.
json Scalar(absl::string_view scalar) { return Parse(absl::StrCat("v: ", scalar, "\n"))["v"]; }

TEST(YamlDocumentScalars, NullForms) {
  for (const char* text : {"null", "Null", "NULL", "~", ""}) {
    EXPECT_TRUE(Scalar(text).is_null()) << text;
  }
  EXPECT_EQ(Scalar("nULL"), json("nULL"));
}

TEST(YamlDocumentScalars, BooleansAreCoreSchemaOnly) {
  for (const char* text : {"true", "True", "TRUE"}) EXPECT_EQ(Scalar(text), json(true)) << text;
  for (const char* text : {"false", "False", "FALSE"}) EXPECT_EQ(Scalar(text), json(false)) << text;
  // YAML 1.1's other booleans stay strings.
  for (const char* text : {"yes", "no", "on", "off", "Yes", "NO", "On", "OFF", "y", "n", "tRUE"}) {
    EXPECT_EQ(Scalar(text), json(text)) << text;
  }
}

TEST(YamlDocumentScalars, Integers) {
  EXPECT_EQ(Scalar("0"), json(0));
  EXPECT_EQ(Scalar("42"), json(42));
  EXPECT_EQ(Scalar("-17"), json(-17));
  EXPECT_EQ(Scalar("+8"), json(8));
  EXPECT_EQ(Scalar("0123"), json(123));  // decimal in the core schema, not YAML 1.1 octal
  EXPECT_EQ(Scalar("0x1F"), json(31));
  EXPECT_EQ(Scalar("0xff"), json(255));
  EXPECT_EQ(Scalar("0o17"), json(15));
  EXPECT_EQ(Scalar("9223372036854775807"), json(INT64_MAX));
  EXPECT_EQ(Scalar("-9223372036854775808"), json(INT64_MIN));
  EXPECT_EQ(Scalar("0x7fffffffffffffff"), json(INT64_MAX));
  EXPECT_TRUE(Scalar("42").is_number_integer());
  // Not integers in the core schema.
  for (const char* text : {"1_000", "0b101", "0x", "0o8", "0xg", "12:30", "--1", "+-1", "0X1F", "1 2"}) {
    EXPECT_EQ(Scalar(text), json(text)) << text;
  }
}

TEST(YamlDocumentScalars, IntegerOutOfRangeNamesItsPosition) {
  EXPECT_EQ(Error("a: 1\nv: 9223372036854775808\n"),
            "line 2, column 4: integer out of range (64-bit signed)");
  EXPECT_THAT(Error("v: -9223372036854775809"), StartsWith("line 1, column 4: integer"));
  EXPECT_THAT(Error("v: 0x10000000000000000"), StartsWith("line 1, column 4: integer"));
  EXPECT_THAT(Error("v: 0x8000000000000000"), StartsWith("line 1, column 4: integer"));
}

TEST(YamlDocumentScalars, Floats) {
  EXPECT_EQ(Scalar("1.5"), json(1.5));
  EXPECT_EQ(Scalar("-0.25"), json(-0.25));
  EXPECT_EQ(Scalar(".5"), json(0.5));
  EXPECT_EQ(Scalar("+.5"), json(0.5));
  EXPECT_EQ(Scalar("1."), json(1.0));
  EXPECT_EQ(Scalar("1e5"), json(100000.0));
  EXPECT_EQ(Scalar("2.5E-3"), json(0.0025));
  EXPECT_EQ(Scalar("1e+2"), json(100.0));
  EXPECT_TRUE(Scalar("1.0").is_number_float());
  EXPECT_TRUE(Scalar("1e5").is_number_float());
  EXPECT_EQ(Scalar("0.1"), json(0.1));
  EXPECT_EQ(Scalar("1e-400"), json(0.0));  // underflow is zero, as in JSON parsers
  for (const char* text : {"1.2.3", "1e", "e5", ".", "1.5x", "1,5", "1e5.0"}) {
    EXPECT_EQ(Scalar(text), json(text)) << text;
  }
}

TEST(YamlDocumentScalars, NonFiniteNumbersAreRefused) {
  for (const char* text : {".inf", "-.inf", "+.inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"}) {
    EXPECT_EQ(Error(absl::StrCat("v: ", text)),
              "line 1, column 4: infinity and NaN have no JSON representation");
  }
  EXPECT_THAT(Error("v: 1e400"), StartsWith("line 1, column 4: number out of range"));
  EXPECT_EQ(Scalar(".infinity"), json(".infinity"));
  EXPECT_EQ(Scalar("'.inf'"), json(".inf"));
}

TEST(YamlDocumentScalars, OtherPlainTextIsAString) {
  for (const char* text : {"hello", "2001-12-14", "1:20", "http://x.test/a", "a b  c", "=", "<<", "null?"}) {
    EXPECT_EQ(Scalar(text), json(text)) << text;
  }
}

TEST(YamlDocumentScalars, QuotedAndBlockScalarsAreStrings) {
  EXPECT_EQ(Scalar("'true'"), json("true"));
  EXPECT_EQ(Scalar("\"123\""), json("123"));
  EXPECT_EQ(Scalar("''"), json(""));
  EXPECT_EQ(Scalar("\"null\""), json("null"));
  EXPECT_EQ(Scalar("\"caf\\u00e9\\t\\x41\""), json("caf\xC3\xA9\tA"));
  EXPECT_EQ(Scalar("'it''s'"), json("it's"));
  EXPECT_EQ(Parse("v: |\n  12\n")["v"], json("12\n"));
  EXPECT_EQ(Parse("v: >-\n  a\n  b\n")["v"], json("a b"));
}

TEST(YamlDocumentScalars, ExplicitTags) {
  EXPECT_EQ(Scalar("!!str 123"), json("123"));
  EXPECT_EQ(Scalar("!!str true"), json("true"));
  EXPECT_EQ(Scalar("!!str"), json(""));
  EXPECT_EQ(Scalar("! 12"), json("12"));
  EXPECT_EQ(Scalar("!!int \"12\""), json(12));
  EXPECT_EQ(Scalar("!!float 3"), json(3.0));
  EXPECT_TRUE(Scalar("!!float 3").is_number_float());
  EXPECT_EQ(Scalar("!!float '2.5'"), json(2.5));
  EXPECT_EQ(Scalar("!!bool 'true'"), json(true));
  EXPECT_TRUE(Scalar("!!null ''").is_null());
  EXPECT_EQ(Parse("v: !!map {a: 1}\nw: !!seq [1]\n"), json::parse(R"({"v":{"a":1},"w":[1]})"));
  EXPECT_EQ(Parse("!<tag:yaml.org,2002:str> 5"), json("5"));
}

TEST(YamlDocumentScalars, BadTagsAreRefused) {
  EXPECT_EQ(Error("v: !!int abc"), "line 1, column 4: the value is not an integer (!!int)");
  EXPECT_EQ(Error("v: !!bool yes"), "line 1, column 4: the value is not a boolean (!!bool takes true or false)");
  EXPECT_EQ(Error("v: !!null x"), "line 1, column 4: the value is not a null (!!null)");
  EXPECT_EQ(Error("v: !!float x"), "line 1, column 4: the value is not a number (!!float)");
  EXPECT_EQ(Error("a: 1\nv: !custom x"), "line 2, column 4: unsupported tag \"!custom\"");
  EXPECT_EQ(Error("v: !!timestamp 2001-12-14"), "line 1, column 4: unsupported tag \"!!timestamp\"");
  EXPECT_EQ(Error("v: !!binary aGVsbG8="), "line 1, column 4: unsupported tag \"!!binary\"");
  EXPECT_EQ(Error("v: !!map x"), "line 1, column 4: tag \"!!map\" on a scalar");
  EXPECT_EQ(Error("v: !!seq {a: 1}"), "line 1, column 4: unsupported tag \"!!seq\" on a mapping");
  EXPECT_EQ(Error("v: !!set [1]"), "line 1, column 4: unsupported tag \"!!set\" on a sequence");
  EXPECT_EQ(Error("!!omap\n- a: 1\n"), "line 1, column 1: unsupported tag \"!!omap\" on a sequence");
}

TEST(YamlDocumentKeys, KeysAreTheirScalarText) {
  EXPECT_EQ(Parse("1: a\ntrue: b\nnull: c\n~: d\n1.50: e\n'q': f\n"),
            json::parse(R"({"1":"a","true":"b","null":"c","~":"d","1.50":"e","q":"f"})"));
  EXPECT_EQ(Parse("? |\n  multi\n  line\n: v\n"), json::parse(R"({"multi\nline\n":"v"})"));
  EXPECT_EQ(Parse("!!str 5: x\n"), json::parse(R"({"5":"x"})"));
  EXPECT_EQ(Parse("'': empty key\n"), json::parse(R"({"":"empty key"})"));
}

TEST(YamlDocumentKeys, DuplicateKeysAreRefusedWithTheirPosition) {
  EXPECT_EQ(Error("services:\n  - name: a\n    host: x\n    name: b\n"), "line 4, column 5: duplicate key \"name\"");
  EXPECT_EQ(Error("{a: 1, 'a': 2}"), "line 1, column 8: duplicate key \"a\"");
  // Keys compare by text: 1 and "1" are the same key.
  EXPECT_EQ(Error("1: a\n\"1\": b\n"), "line 2, column 1: duplicate key \"1\"");
}

TEST(YamlDocumentKeys, NonScalarKeysAreRefused) {
  EXPECT_EQ(Error("? [a, b]\n: v\n"), "line 1, column 3: a mapping key must be a scalar");
  EXPECT_EQ(Error("x: 1\n? {a: 1}\n: v\n"), "line 2, column 3: a mapping key must be a scalar");
  EXPECT_EQ(Error("a: &m {x: 1}\n*m : v\n"), "line 2, column 1: a mapping key must be a scalar (the alias is not)");
}

TEST(YamlDocument, KongLikeDocument) {
  const char* text = R"(# a kong.yml
_format_version: "3.0"
_transform: true
services:
- name: orders
  url: http://orders.internal:8080/v1
  retries: 5
  connect_timeout: 60000
  enabled: true
  tags: [team-a, "prod"]
  routes:
  - name: orders-route
    paths:
    - /orders
    strip_path: false
    methods: [GET, POST]
    plugins:
    - name: rate-limiting
      config:
        minute: 20
        policy: local
        fault_tolerant: true
consumers:
- username: alice
  keyauth_credentials:
  - key: abc123
certificates:
- cert: |
    -----BEGIN CERTIFICATE-----
    MIIB
    -----END CERTIFICATE-----
  key: |-
    -----BEGIN PRIVATE KEY-----
    MIIE
    -----END PRIVATE KEY-----
  snis:
  - name: example.test
)";
  json expected = json::parse(R"({
    "_format_version": "3.0", "_transform": true,
    "services": [{"name": "orders", "url": "http://orders.internal:8080/v1", "retries": 5,
                  "connect_timeout": 60000, "enabled": true, "tags": ["team-a", "prod"],
                  "routes": [{"name": "orders-route", "paths": ["/orders"], "strip_path": false,
                              "methods": ["GET", "POST"],
                              "plugins": [{"name": "rate-limiting",
                                           "config": {"minute": 20, "policy": "local", "fault_tolerant": true}}]}]}],
    "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "abc123"}]}],
    "certificates": [{"cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                      "key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
                      "snis": [{"name": "example.test"}]}]
  })");
  EXPECT_EQ(Parse(text), expected);
}

TEST(YamlDocument, TopLevelMayBeAnyValue) {
  EXPECT_EQ(Parse("- 1\n- a\n"), json::parse(R"([1, "a"])"));
  EXPECT_EQ(Parse("hello"), json("hello"));
  EXPECT_EQ(Parse("--- 5\n..."), json(5));
  EXPECT_TRUE(Parse("---\n").is_null());
  EXPECT_EQ(Parse("%YAML 1.1\n---\na: 1\n"), json::parse(R"({"a":1})"));
  EXPECT_EQ(Parse("\xEF\xBB\xBF" "a: 1\n"), json::parse(R"({"a":1})"));  // a UTF-8 BOM
}

TEST(YamlDocumentAnchors, AliasesCopyTheAnchoredValue) {
  json doc = Parse(R"(
defaults: &defaults
  retries: 3
  tags: [a, b]
name: &n orders
services:
  - *defaults
  - *defaults
alias_of_name: *n
scalar_int: &i 0x10
again: *i
)");
  EXPECT_EQ(doc["services"][0], json::parse(R"({"retries":3,"tags":["a","b"]})"));
  EXPECT_EQ(doc["services"][1], doc["services"][0]);
  EXPECT_EQ(doc["alias_of_name"], json("orders"));
  EXPECT_EQ(doc["again"], json(16));
}

TEST(YamlDocumentAnchors, RedefinedAnchorsAndKeyAliases) {
  json doc = Parse("a: &x 1\nb: *x\nc: &x 2\nd: *x\n&k key: v\nother: *k\nlist: [&t true]\n*t : w\n");
  EXPECT_EQ(doc, json::parse(R"({"a":1,"b":1,"c":2,"d":2,"key":"v","other":"key","list":[true],"true":"w"})"));
  // An anchored key that is not a valid value fails only when aliased as a value.
  EXPECT_EQ(Parse("&i .inf : 1\n"), json::parse(R"({".inf":1})"));
  EXPECT_THAT(Error("&i .inf : 1\nv: *i\n"), HasSubstr("infinity and NaN"));
}

TEST(YamlDocumentAnchors, UnknownAliasIsRefused) {
  EXPECT_EQ(Error("a: 1\nb: *nope\n"), "line 2, column 4: unknown alias *nope");
  // An anchor is not visible inside its own node (no recursion).
  EXPECT_EQ(Error("a: &r [1, *r]\n"), "line 1, column 11: unknown alias *r");
}

TEST(YamlDocumentAnchors, MergeKeys) {
  json doc = Parse(R"(
base: &base {host: a.test, port: 80, protocol: http}
tls: &tls {protocol: https, port: 443}
one:
  <<: *base
  name: one
two:
  name: two
  port: 8080
  <<: *base
three:
  <<: [*tls, *base]
four:
  <<: {x: 1}
  y: 2
)");
  EXPECT_EQ(doc["one"], json::parse(R"({"host":"a.test","port":80,"protocol":"http","name":"one"})"));
  EXPECT_EQ(doc["two"], json::parse(R"({"host":"a.test","port":8080,"protocol":"http","name":"two"})"));
  EXPECT_EQ(doc["three"], json::parse(R"({"host":"a.test","port":443,"protocol":"https"})"));
  EXPECT_EQ(doc["four"], json::parse(R"({"x":1,"y":2})"));
  // A quoted << is an ordinary key.
  EXPECT_EQ(Parse("'<<': {a: 1}\n"), json::parse(R"({"<<":{"a":1}})"));
}

TEST(YamlDocumentAnchors, BadMergeKeysAreRefused) {
  EXPECT_EQ(Error("a: 1\nb:\n  <<: 5\n"),
            "line 3, column 3: a merge key (<<) takes a mapping or a sequence of mappings");
  EXPECT_EQ(Error("m: &m {a: 1}\nb:\n  <<: [*m, 2]\n"),
            "line 3, column 3: a merge key (<<) takes a mapping or a sequence of mappings");
  EXPECT_EQ(Error("m: &m {a: 1}\nb:\n  <<: *m\n  <<: *m\n"), "line 4, column 3: duplicate key \"<<\"");
}

TEST(YamlDocumentErrors, EmptyDocuments) {
  for (const char* text : {"", "   \n\n", "# only a comment\n", "# one\n# two"}) {
    absl::StatusOr<json> parsed = ParseYamlDocument(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().message(), "empty document") << text;
  }
}

TEST(YamlDocumentErrors, SecondDocumentIsRefused) {
  EXPECT_EQ(Error("a: 1\n---\nb: 2\n"), "line 2, column 1: a second document (only one document is allowed)");
  EXPECT_EQ(Error("a: 1\n...\n---\nb: 2\n"), "line 3, column 1: a second document (only one document is allowed)");
}

TEST(YamlDocumentErrors, SyntaxErrorsNameLineAndColumn) {
  EXPECT_EQ(Error("a: 1\nb: [1, 2\n"),
            "line 3, column 1: did not find expected ',' or ']' (while parsing a flow sequence at line 2, column 4)");
  EXPECT_EQ(Error("a: 1\n  b: 2\n"), "line 2, column 4: mapping values are not allowed in this context");
  EXPECT_EQ(Error("a:\n  - 1\n  b: 2\n"),
            "line 3, column 3: did not find expected '-' indicator (while parsing a block collection at line 2, "
            "column 3)");
  EXPECT_EQ(Error("a: \"open\n"),
            "line 2, column 1: found unexpected end of stream (while scanning a quoted scalar at line 1, column 4)");
  EXPECT_EQ(Error("a: @x\n"), "line 1, column 4: found character that cannot start any token "
                              "(while scanning for the next token at line 1, column 4)");
  EXPECT_THAT(Error("a:\n\t- 1\n"), StartsWith("line 2, column 1: found character that cannot start any token"));
}

TEST(YamlDocumentErrors, InvalidUtf8AndControlCharacters) {
  // libyaml points at the byte that breaks the sequence (here the newline after a lead byte).
  EXPECT_EQ(Error("a: 1\nb: caf\xC3\n"), "line 2, column 8: invalid trailing UTF-8 octet (#0a)");
  EXPECT_THAT(Error("a: \xFF"), StartsWith("line 1, column 4: invalid leading UTF-8 octet"));
  EXPECT_THAT(Error(absl::string_view("a: x\0y", 6)),
              StartsWith("line 1, column 5: control characters are not allowed"));
  EXPECT_THAT(Error("{\"a\": \"\xC0\xAF\"}"), StartsWith("line 1, column 8: "));
}

TEST(YamlDocumentLimits, NestingDepth) {
  DocumentLimits limits;
  limits.max_depth = 3;
  EXPECT_EQ(Parse("a:\n  b:\n    - 1\n", limits), json::parse(R"({"a":{"b":[1]}})"));
  EXPECT_EQ(Error("a:\n  b:\n    - [1]\n", limits), "line 3, column 7: nesting exceeds the depth limit of 3");
  EXPECT_EQ(Error("[[[[1]]]]", limits), "line 1, column 4: nesting exceeds the depth limit of 3");
  // The default (64) refuses a deep flow document quickly, without recursion.
  std::string deep(100000, '[');
  EXPECT_EQ(Error(deep), "line 1, column 65: nesting exceeds the depth limit of 64");
  std::string deep_yaml = "a: " + deep;
  EXPECT_EQ(Error(deep_yaml), "line 1, column 67: nesting exceeds the depth limit of 64");
}

TEST(YamlDocumentLimits, AliasesCountTowardsDepth) {
  DocumentLimits limits;
  limits.max_depth = 4;
  EXPECT_EQ(Parse("a: &a [[1]]\nb: [*a]\n", limits), json::parse(R"({"a":[[1]],"b":[[[1]]]})"));
  EXPECT_EQ(Error("a: &a [[1]]\nb: [[*a]]\n", limits),
            "line 2, column 6: alias expansion exceeds the nesting depth limit of 4");
}

TEST(YamlDocumentLimits, NodeCount) {
  DocumentLimits limits;
  limits.max_nodes = 5;
  EXPECT_EQ(Parse("[1, 2, 3, 4]", limits), json::parse("[1,2,3,4]"));
  EXPECT_EQ(Error("- 1\n- 2\n- 3\n- 4\n- 5\n", limits),
            "line 5, column 3: the document has more than 5 values (the limit)");
  EXPECT_EQ(Error("a: &a [1, 2]\nb: *a\n", limits),
            "line 2, column 4: alias expansion exceeds the limit of 5 nodes in a document");
  EXPECT_THAT(Error("[1, 2, 3, 4, 5]", limits), HasSubstr("the document has more than 5 values"));
}

TEST(YamlDocumentLimits, AliasExpansionIsBoundedByTheText) {
  DocumentLimits limits;
  limits.alias_nodes_base = 10;
  limits.alias_nodes_per_text_node = 2;
  // 4 text values (mapping, sequence, 1, 2); the first alias copies 3 (<= 10 + 2*4).
  EXPECT_EQ(Parse("a: &a [1, 2]\nb: *a\n", limits), json::parse(R"({"a":[1,2],"b":[1,2]})"));
  // 21 text values: 52 copied values allowed; the anchor keeps a copy of 20, each alias copies 20.
  const std::string text =
      "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]\nb: *a\nc: *a\nd: *a\n";
  EXPECT_EQ(Error(text, limits),
            "line 3, column 4: alias expansion exceeds 52 nodes (10 + 2 per value written in the text)");
  limits.alias_nodes_per_text_node = 4;
  EXPECT_EQ(Parse(text, limits)["d"].size(), 19u);
}

TEST(YamlDocumentLimits, AliasesOfBigStringsAreBoundedByBytes) {
  // 1,000 aliases of a 100 KB string: 100 MB from a 105 KB text.
  std::string text = "big: &s " + std::string(100'000, 'x') + "\nlist: [";
  for (int i = 0; i < 1000; ++i) absl::StrAppend(&text, i > 0 ? ", " : "", "*s");
  absl::StrAppend(&text, "]\n");
  const std::string message = Error(text);
  EXPECT_THAT(message, StartsWith("line 2, column "));
  EXPECT_THAT(message, HasSubstr("alias expansion exceeds "));
  EXPECT_THAT(message, HasSubstr(" bytes of strings (16777216 + 10 per byte of the text)"));
  // Keys count too.
  DocumentLimits limits;
  limits.alias_bytes_base = 100;
  limits.alias_nodes_per_text_node = 0;
  EXPECT_EQ(Error("a: &m {" + std::string(60, 'k') + ": 1}\nb: *m\n", limits),
            "line 2, column 4: alias expansion exceeds 100 bytes of strings (100 + 0 per byte of the text)");
}

TEST(YamlDocumentLimits, NestedAnchorsCountTheCopiesTheyKeep) {
  // Every level anchored: each keeps a copy of everything below it (64 copies of the long list).
  std::string text;
  for (int i = 0; i < 60; ++i) absl::StrAppend(&text, "&a", i, " [");
  text += "0";
  for (int i = 1; i < 2000; ++i) absl::StrAppend(&text, ", ", i);
  text += std::string(60, ']');
  EXPECT_THAT(Error(text), HasSubstr("anchored values exceed "));
  // The same without anchors is fine.
  std::string plain;
  for (int i = 0; i < 60; ++i) plain += "[";
  plain += text.substr(text.find("0, 1"));
  EXPECT_TRUE(ParseYamlDocument(plain).ok());
}

// A text whose full expansion is 10^10 values ("billion laughs").
std::string BillionLaughs() {
  std::string text = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int level = 1; level <= 9; ++level) {
    const std::string previous = absl::StrCat("*l", level - 1);
    absl::StrAppend(&text, "l", level, ": &l", level, " [");
    for (int i = 0; i < 10; ++i) absl::StrAppend(&text, i > 0 ? ", " : "", previous);
    absl::StrAppend(&text, "]\n");
  }
  return text;
}

long MaxRssKiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

TEST(YamlDocumentLimits, BillionLaughsIsRefusedFastWithLittleMemory) {
  const long rss_before = MaxRssKiB();
  const auto start = std::chrono::steady_clock::now();
  const std::string message = Error(BillionLaughs());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_THAT(message, StartsWith("line 4, column "));
  EXPECT_THAT(message, HasSubstr("alias expansion exceeds"));
  EXPECT_LT(elapsed, std::chrono::milliseconds(200));
  EXPECT_LT(MaxRssKiB() - rss_before, 20 * 1024) << "peak RSS grew by KiB";

  // With the text ratio off, the absolute cap (max_nodes) still stops it before any copy passes it.
  DocumentLimits limits;
  limits.alias_nodes_base = SIZE_MAX;
  limits.max_nodes = 200'000;
  const auto start_capped = std::chrono::steady_clock::now();
  EXPECT_THAT(Error(BillionLaughs(), limits), HasSubstr("alias expansion exceeds the limit of 200000 nodes"));
  EXPECT_LT(std::chrono::steady_clock::now() - start_capped, std::chrono::milliseconds(500));
}

TEST(YamlDocumentLimits, ReusingAnAnchoredBlockManyTimesIsFine) {
  // A real pattern: one plugin config reused by many routes.
  std::string text =
      "x-plugin: &rl {name: rate-limiting, config: {minute: 20, policy: local, hide: true}}\nroutes:\n";
  for (int i = 0; i < 3000; ++i) absl::StrAppend(&text, "- {name: r", i, ", paths: [/r", i, "], plugins: [*rl]}\n");
  json doc = Parse(text);
  ASSERT_EQ(doc["routes"].size(), 3000u);
  EXPECT_EQ(doc["routes"][2999]["plugins"][0]["config"]["minute"], json(20));
}

TEST(YamlDocumentJson, CompactJsonWithEscapesAndLongNumbers) {
  EXPECT_EQ(Parse(R"({"a":1,"b":[true,false,null],"c":{"d":"x"}})"),
            json::parse(R"({"a":1,"b":[true,false,null],"c":{"d":"x"}})"));
  EXPECT_EQ(Parse(R"({"s":"caf\u00e9 \ud83d\ude00 \/ \"q\" \\"})")["s"],
            json("caf\xC3\xA9 \xF0\x9F\x98\x80 / \"q\" \\"));
  EXPECT_EQ(Parse(R"([9223372036854775807,-9223372036854775808,1.5e300,0.1,1.0])"),
            json::parse("[9223372036854775807,-9223372036854775808,1.5e300,0.1,1.0]"));
  EXPECT_TRUE(Parse("[1.0]")[0].is_number_float());
  EXPECT_EQ(Parse(" \n\t[1]"), json::parse("[1]"));
}

TEST(YamlDocumentJson, ErrorsHaveLineAndColumn) {
  EXPECT_EQ(Error("{\n  \"a\": 9223372036854775808\n}"),
            "line 2, column 27: integer out of range (64-bit signed)");
  EXPECT_THAT(Error("[123456789012345678901234567890]"), StartsWith("line 1, column 32: integer"));
  EXPECT_EQ(Error("[1e400]"), "line 1, column 2: number out of range (64-bit float)");
  EXPECT_EQ(Error("{\"a\": 1,\n \"a\": 2}"), "line 2, column 4: duplicate key \"a\"");
  // Neither JSON nor YAML: JSON's message, without the input it quotes.
  EXPECT_EQ(Error("{\"a\": 1,\n \"b\" 2}"),
            "line 2, column 6: syntax error while parsing object separator - unexpected number literal; "
            "expected ':'");
  EXPECT_THAT(Error("[1, 2"), StartsWith("line 1, column "));
  // The input nlohmann quotes is left out, even when it looks like the end of the message
  // (fuzz regression json_error_quoting_expected), and messages stay UTF-8.
  EXPECT_EQ(Error("{\"a\": x; expected \xC2\x85\xFF}"),
            "line 1, column 7: syntax error while parsing value - invalid literal");
  EXPECT_EQ(Error("[\"\xFF\"]"), "line 1, column 3: syntax error while parsing value - invalid string: "
                                   "ill-formed UTF-8 byte");
}

TEST(YamlDocumentJson, SameLimits) {
  DocumentLimits limits;
  limits.max_depth = 2;
  EXPECT_EQ(Parse("[[1]]", limits), json::parse("[[1]]"));
  EXPECT_EQ(Error("{\"a\": [[1]]}", limits), "line 1, column 8: nesting exceeds the depth limit of 2");
  std::string deep(1'000'000, '[');
  EXPECT_EQ(Error(deep), "line 1, column 65: nesting exceeds the depth limit of 64");
  limits = DocumentLimits{};
  limits.max_nodes = 3;
  // JSON limits are reported where the parser noticed: after a number, one character on.
  EXPECT_EQ(Error("[1, 2, 3]", limits), "line 1, column 9: the document has more than 3 values (the limit)");
  EXPECT_EQ(Error("[1, 2, \"x\"]", limits), "line 1, column 10: the document has more than 3 values (the limit)");
}

TEST(YamlDocumentJson, FlowYamlStartingWithABraceStillParses) {
  EXPECT_EQ(Parse("{a: 1, b: [x, y]}"), json::parse(R"({"a":1,"b":["x","y"]})"));
  EXPECT_EQ(Parse("[a, 'b']"), json::parse(R"(["a","b"])"));
}

// --- ToYamlDocument

TEST(ToYamlDocument, BlockStyleTwoSpaceIndent) {
  json value = json::parse(
      R"({"services":[{"name":"a","port":80,"tags":["x"],"enabled":true,"x":null}],"empty":{},"none":[]})");
  EXPECT_EQ(ToYamlDocument(value),
            "empty: {}\n"
            "none: []\n"
            "services:\n"
            "- enabled: true\n"
            "  name: a\n"
            "  port: 80\n"
            "  tags:\n"
            "  - x\n"
            "  x: null\n");
}

TEST(ToYamlDocument, StringsThatWouldResolveElsewhereAreQuoted) {
  for (const char* text : {"true", "False", "123", "-5", "0x10", "0o7", "", "null", "~", "1e5", ".5", "1.", ".inf",
                           "-.Inf", ".NaN", " leading space", "trailing space ", "- a", "a: b", "#x", "*a", "&a",
                           "!tag", "@at", "`tick", "{x}", "[x]", "'single'", "\"double\"", "%x", "a #b"}) {
    json value = {{"v", text}};
    const std::string yaml = ToYamlDocument(value);
    EXPECT_EQ(Parse(yaml), value) << yaml;
    EXPECT_NE(yaml, absl::StrCat("v: ", text, "\n")) << "emitted plain: " << text;
  }
  // Strings that read back as themselves stay plain, UTF-8 unescaped.
  // Quoted for YAML 1.1 readers (decK, Kong), which take yes as a boolean.
  EXPECT_EQ(ToYamlDocument({{"v", "yes"}}), "v: 'yes'\n");
  EXPECT_EQ(ToYamlDocument({{"v", "1_000"}}), "v: '1_000'\n");
  EXPECT_EQ(ToYamlDocument({{"v", "10.0.0.1:80"}}), "v: '10.0.0.1:80'\n");
  EXPECT_EQ(ToYamlDocument({{"v", "yesterday"}}), "v: yesterday\n");
  EXPECT_EQ(ToYamlDocument({{"v", "2001-12-14T21:59:43Z"}}), "v: '2001-12-14T21:59:43Z'\n");
  EXPECT_EQ(ToYamlDocument({{"v", "<<"}}), "v: '<<'\n");
  // Keys too (a route's header names are free-form).
  EXPECT_EQ(ToYamlDocument({{"on", 1}}), "'on': 1\n");
  EXPECT_EQ(ToYamlDocument({{"1", 1}}), "'1': 1\n");
  EXPECT_EQ(ToYamlDocument({{"x-on", 1}}), "x-on: 1\n");
  EXPECT_EQ(ToYamlDocument({{"v", "caf\xC3\xA9"}}), "v: caf\xC3\xA9\n");
  EXPECT_EQ(ToYamlDocument({{"v", "http://a.test/x?y=1"}}), "v: http://a.test/x?y=1\n");
  EXPECT_EQ(ToYamlDocument({{"<<", 1}}), "'<<': 1\n");
  EXPECT_EQ(ToYamlDocument({{"true", 1}}), "'true': 1\n");  // a boolean key to other readers
}

TEST(ToYamlDocument, MultiLineStringsAreLiteralBlocksKeepingTrailingNewlines) {
  const std::string pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----";
  EXPECT_EQ(ToYamlDocument({{"cert", pem + "\n"}}),
            "cert: |\n  -----BEGIN CERTIFICATE-----\n  MIIBszCCAVmgAwIBAgIU\n  -----END CERTIFICATE-----\n");
  EXPECT_EQ(ToYamlDocument({{"cert", pem}}),
            "cert: |-\n  -----BEGIN CERTIFICATE-----\n  MIIBszCCAVmgAwIBAgIU\n  -----END CERTIFICATE-----\n");
  for (const std::string& text : {pem, pem + "\n", pem + "\n\n", pem + "\n\n\n", std::string("a\nb"),
                                  std::string("\nleading newline"), std::string("  indented\nsecond"),
                                  std::string("\n"), std::string("\n\n"), std::string("x\n \n")}) {
    json value = {{"cert", text}, {"list", {text, "after"}}};
    const std::string yaml = ToYamlDocument(value);
    EXPECT_EQ(Parse(yaml), value) << yaml;
  }
}

TEST(ToYamlDocument, ATextEndingInTwoNewlinesKeepsBoth) {
  const std::string pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\n";
  // Keep chomping (|+); libyaml closes the document with "..." after it.
  EXPECT_EQ(ToYamlDocument({{"cert", pem}}),
            "cert: |+\n  -----BEGIN CERTIFICATE-----\n  MIIB\n  -----END CERTIFICATE-----\n\n...\n");
  EXPECT_EQ(Parse(ToYamlDocument({{"cert", pem}}))["cert"], json(pem));
}

TEST(ToYamlDocument, LongAndMultiLineKeysAndTopLevelScalars) {
  const std::string long_key(3000, 'k');
  for (const json& value :
       {json{{long_key, 1}}, json{{"multi\nline\n", {1, 2}}}, json{{std::string(200, ' '), "x"}},
        json("top\nlevel\n"), json(""), json("true"), json(5), json(1.0), json(nullptr), json::array(),
        json::object(), json::array({json::array(), json::object()})}) {
    const std::string yaml = ToYamlDocument(value);
    absl::StatusOr<json> back = ParseYamlDocument(yaml);
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << yaml;
    EXPECT_EQ(back->dump(), value.dump()) << yaml;
  }
}

TEST(ToYamlDocument, NumbersKeepTheirType) {
  json value = {{"f", 1.0}, {"g", 0.1}, {"h", -2.5e-300}, {"i", 1e300}, {"j", 123456789.125}, {"k", -0.0},
                {"n", INT64_MIN}, {"m", INT64_MAX}, {"b", false}};
  const std::string yaml = ToYamlDocument(value);
  json back = Parse(yaml);
  EXPECT_EQ(back, value) << yaml;
  EXPECT_TRUE(back["f"].is_number_float()) << yaml;
  EXPECT_TRUE(back["k"].is_number_float()) << yaml;
  EXPECT_TRUE(back["n"].is_number_integer()) << yaml;
  EXPECT_THAT(yaml, HasSubstr("f: 1.0\n"));
  EXPECT_THAT(yaml, HasSubstr("g: 0.1\n"));
}

TEST(ToYamlDocument, WhatJsonCannotHold) {
  EXPECT_EQ(ToYamlDocument({{"v", std::nan("")}}), "v: null\n");
  EXPECT_EQ(ToYamlDocument({{"v", std::string("a\xFF" "b")}}), "v: a\xEF\xBF\xBD" "b\n");
}

// --- Round trip over random values

class RandomJson {
 public:
  explicit RandomJson(uint32_t seed) : rng_(seed) {}

  json Value(int depth) {
    const int kind = Pick(depth >= 5 ? 6 : 9);
    switch (kind) {
      case 0: return nullptr;
      case 1: return Pick(2) == 0;
      case 2: return Integer();
      case 3: return Double();
      case 4:
      case 5: return String();
      case 6:
      case 7: {
        json object = json::object();
        const int n = Pick(5);
        for (int i = 0; i < n; ++i) object[String()] = Value(depth + 1);
        return object;
      }
      default: {
        json array = json::array();
        const int n = Pick(5);
        for (int i = 0; i < n; ++i) array.push_back(Value(depth + 1));
        return array;
      }
    }
  }

 private:
  int Pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  json Integer() {
    switch (Pick(4)) {
      case 0: return Pick(100);
      case 1: return -Pick(100000);
      case 2: return std::uniform_int_distribution<int64_t>(INT64_MIN, INT64_MAX)(rng_);
      default: return Pick(2) == 0 ? INT64_MAX : INT64_MIN;
    }
  }

  json Double() {
    switch (Pick(4)) {
      case 0: return static_cast<double>(Pick(1000));  // integral doubles: must stay floats
      case 1: return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
      case 2: return std::ldexp(std::uniform_real_distribution<double>(-1, 1)(rng_), Pick(2000) - 1000);
      default: return Pick(2) == 0 ? 0.1 : -0.0;
    }
  }

  std::string String() {
    static const char* const kTricky[] = {
        "yes", "no", "on", "off", "y", "0x10", "0o17", "0b1", "1_000", "- a", "a: b", "#x", "a #x", "x#", "?", "? x",
        ":", "-", "--- x", "...", "'", "\"", "\\", "{", "}", "[", "]", ",", "&a", "*a", "!x", "|", ">", "%", "@", "`",
        "<<", "=", "~", "null", "NULL", "true", "FALSE", "", " ", "  ", " x", "x ", "\t", "a\tb", "1", "-1", "+1",
        "1.5", "1e3", ".5", "1.", ".inf", "-.inf", ".nan", "12:30", "2001-12-14", "caf\xC3\xA9", "\xE2\x82\xAC 5",
        "\xF0\x9F\x98\x80", "\xE2\x80\xA8", "line\xC2\x85next", "a\r\nb", "\r", "a\nb", "a\n", "a\n\n", "\na", "\n",
        "  x\ny", "x\n  y\n", "x \ny", "\xEF\xBB\xBF" "bom", "nul\0in"  // last one: see below
    };
    const size_t count = sizeof(kTricky) / sizeof(kTricky[0]);
    const int choice = Pick(4);
    if (choice == 0) {
      const size_t i = static_cast<size_t>(Pick(static_cast<int>(count)));
      if (i == count - 1) return std::string("nul\0in", 6);
      return kTricky[i];
    }
    if (choice == 1) {
      // Random characters from a mix of ASCII punctuation, space, newlines and multi-byte UTF-8.
      static const char* const kPieces[] = {"a", "Z", "0", "9", " ", "\n", ":", "-", "#", "'", "\"", "\\", "{",
                                            "}", "[", "]", ",", "&", "*", "!", "|", ">", "%", "@", "?", ".", "~",
                                            "\t", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "\x01", "\x7F"};
      std::string s;
      const int n = Pick(12);
      for (int i = 0; i < n; ++i) s += kPieces[Pick(sizeof(kPieces) / sizeof(kPieces[0]))];
      return s;
    }
    if (choice == 2) return absl::StrCat("name-", Pick(1000));
    return "-----BEGIN CERTIFICATE-----\nMIIB" + std::to_string(Pick(100)) + "\n-----END CERTIFICATE-----" +
           std::string(static_cast<size_t>(Pick(3)), '\n');
  }

  std::mt19937 rng_;
};

TEST(YamlDocumentRoundTrip, RandomValuesParseBackEqual) {
  RandomJson random(20261205);
  for (int i = 0; i < 500; ++i) {
    const json value = random.Value(0);
    const std::string yaml = ToYamlDocument(value);
    absl::StatusOr<json> back = ParseYamlDocument(yaml);
    ASSERT_TRUE(back.ok()) << "value " << i << ": " << back.status() << "\n" << value.dump() << "\n---\n" << yaml;
    ASSERT_EQ(*back, value) << "value " << i << "\n" << value.dump() << "\n---\n" << yaml << "\n---\n" << back->dump();
    // Types survive too (== treats 1 and 1.0 alike).
    ASSERT_EQ(back->dump(), value.dump()) << yaml;
  }
}

}  // namespace
}  // namespace portico
