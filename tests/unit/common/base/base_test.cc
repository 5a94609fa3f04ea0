#include "common/base/host_port.h"
#include "common/base/uuid.h"
#include "gtest/gtest.h"

namespace portico {
namespace {

TEST(UuidTest, NewUuidIsCanonicalAndUnique) {
  std::string a = NewUuid(), b = NewUuid();
  EXPECT_TRUE(IsUuid(a));
  EXPECT_NE(a, b);
  EXPECT_EQ(a[14], '4');
}

TEST(UuidTest, RejectsNonUuids) {
  EXPECT_FALSE(IsUuid("my-service"));
  EXPECT_FALSE(IsUuid("0123456789abcdef0123456789abcdef0123"));
  EXPECT_TRUE(IsUuid("0A23456A-89ab-4def-8123-456789abcdef"));
}

TEST(HostPortTest, ParsesV4V6AndRejectsGarbage) {
  auto a = ParseHostPort("127.0.0.1:8001");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8001);
  auto b = ParseHostPort("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  EXPECT_FALSE(ParseHostPort("localhost").ok());
  EXPECT_FALSE(ParseHostPort("h:70000").ok());
  EXPECT_FALSE(ParseHostPort("h:x").ok());
}

TEST(HostPortTest, SplitsHostHeaders) {
  struct Case {
    const char* text;
    const char* name;
    std::optional<uint16_t> port;
  };
  const Case cases[] = {
      {"example.com", "example.com", std::nullopt},
      {"example.com:8080", "example.com", 8080},
      {"example.com:65535", "example.com", 65535},
      {"example.com:65536", "example.com:65536", std::nullopt},  // not a port: all name
      {"example.com:", "example.com:", std::nullopt},
      {"example.com:8x", "example.com:8x", std::nullopt},
      {"a:1:2", "a:1:2", std::nullopt},
      {"[::1]", "[::1]", std::nullopt},
      {"[::1]:443", "[::1]", 443},
      {"[::1]443", "[::1]443", std::nullopt},
      {"", "", std::nullopt},
  };
  for (const Case& c : cases) {
    const HostAndPort split = SplitHostHeader(c.text);
    EXPECT_EQ(split.name, c.name) << c.text;
    EXPECT_EQ(split.port, c.port) << c.text;
  }
}

}  // namespace
}  // namespace portico

#include <cstdlib>

#include "common/base/flags.h"
#include "common/base/log.h"

namespace portico {
namespace {

TEST(FlagsTest, CommandLineBeatsEnvironmentBeatsDefault) {
  Flags flags({{"admin-listen", "127.0.0.1:8001", "admin"},
               {"db", "portico.db", "db"},
               {"verbose", "", "v", true}});
  setenv("PORTICO_DB", "/tmp/from-env.db", 1);
  setenv("PORTICO_ADMIN_LISTEN", "127.0.0.1:9", 1);
  const char* argv[] = {"prog", "--admin-listen=0.0.0.0:1", "pos", "--verbose"};
  ASSERT_TRUE(flags.Parse(4, const_cast<char**>(argv)).ok());
  EXPECT_EQ(flags.Get("admin-listen"), "0.0.0.0:1");
  EXPECT_EQ(flags.Get("db"), "/tmp/from-env.db");
  EXPECT_TRUE(flags.GetBool("verbose"));
  ASSERT_EQ(flags.positional().size(), 1u);
  EXPECT_EQ(flags.positional()[0], "pos");
  unsetenv("PORTICO_DB");
  unsetenv("PORTICO_ADMIN_LISTEN");
}

TEST(FlagsTest, UnknownFlagAndMissingValueAreErrors) {
  Flags flags({{"db", "", "db"}});
  const char* bad[] = {"prog", "--nope"};
  EXPECT_FALSE(flags.Parse(2, const_cast<char**>(bad)).ok());
  Flags flags2({{"db", "", "db"}});
  const char* missing[] = {"prog", "--db"};
  EXPECT_FALSE(flags2.Parse(2, const_cast<char**>(missing)).ok());
}

TEST(FlagsTest, NumberFlagAcceptsOnlyFiniteNumbersInRange) {
  for (const char* good : {"0.5", "10", "86400"}) {
    Flags flags({{"timeout", good, "t"}});
    absl::StatusOr<double> value = NumberFlag(flags, "timeout", 0.1, 86400, "seconds");
    ASSERT_TRUE(value.ok()) << good;
    EXPECT_DOUBLE_EQ(*value, std::stod(good));
  }
  for (const char* bad : {"", "x", "0.05", "86401", "nan", "inf", "-inf"}) {
    Flags flags({{"timeout", bad, "t"}});
    absl::StatusOr<double> value = NumberFlag(flags, "timeout", 0.1, 86400, "seconds");
    ASSERT_FALSE(value.ok()) << bad;
    EXPECT_NE(value.status().message().find("--timeout must be a number of seconds"), std::string::npos)
        << value.status();
  }
}

}  // namespace
}  // namespace portico

namespace portico {
namespace {

TEST(FlagsTest, RequireFlagsNamesTheMissingFlagAndItsEnvironmentVariable) {
  Flags flags({{"cluster-cert", "", "c"}, {"cluster-key", "", "k"}});
  const char* argv[] = {"prog", "--cluster-cert", "a.crt"};
  ASSERT_TRUE(flags.Parse(3, const_cast<char**>(argv)).ok());
  absl::Status s = RequireFlags(flags, {"cluster-cert", "cluster-key"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "--cluster-key (or PORTICO_CLUSTER_KEY) is required");
  EXPECT_TRUE(RequireFlags(flags, {"cluster-cert"}).ok());
}

TEST(FlagsTest, LogLevelFlagIsValidated) {
  Flags bad({{"log-level", "loud", "l"}});
  EXPECT_FALSE(ApplyLogLevelFlag(bad).ok());
  Flags good({{"log-level", "warn", "l"}});
  ASSERT_TRUE(ApplyLogLevelFlag(good).ok());
  EXPECT_EQ(GetLogLevel(), LogLevel::kWarn);
  SetLogLevel(LogLevel::kInfo);
}

}  // namespace
}  // namespace portico

namespace portico {
namespace {

TEST(FlagsTest, BooleanValuesAreStrictOnTheCommandLineAndInTheEnvironment) {
  for (const char* yes : {"true", "1", "yes", "on", "TRUE", "On"}) {
    bool v = false;
    EXPECT_TRUE(ParseBoolValue(yes, &v) && v) << yes;
  }
  for (const char* no : {"false", "0", "no", "off", "False"}) {
    bool v = true;
    EXPECT_TRUE(ParseBoolValue(no, &v) && !v) << no;
  }
  bool v = false;
  EXPECT_FALSE(ParseBoolValue("ture", &v));
  EXPECT_FALSE(ParseBoolValue("", &v));

  Flags off({{"verbose", "", "v", true}});
  const char* explicit_off[] = {"prog", "--verbose=off"};
  ASSERT_TRUE(off.Parse(2, const_cast<char**>(explicit_off)).ok());
  EXPECT_FALSE(off.GetBool("verbose"));
  EXPECT_TRUE(off.IsSet("verbose"));

  Flags typo({{"verbose", "", "v", true}});
  const char* bad[] = {"prog", "--verbose=ture"};
  absl::Status s = typo.Parse(2, const_cast<char**>(bad));
  EXPECT_EQ(s.message(), "--verbose must be true or false (or 1/0, yes/no, on/off), not 'ture'");

  setenv("PORTICO_VERBOSE", "maybe", 1);
  Flags env({{"verbose", "", "v", true}});
  const char* none[] = {"prog"};
  s = env.Parse(1, const_cast<char**>(none));
  unsetenv("PORTICO_VERBOSE");
  EXPECT_EQ(s.message(), "PORTICO_VERBOSE must be true or false (or 1/0, yes/no, on/off), not 'maybe'");
}

TEST(FlagsTest, HelpAndVersionWinOverEverythingElse) {
  Flags flags({{"db", "portico.db", "the database"}});
  const char* argv[] = {"prog", "--nope", "--db", "-h"};
  ASSERT_TRUE(flags.Parse(4, const_cast<char**>(argv)).ok());
  EXPECT_TRUE(flags.help_requested());
  EXPECT_FALSE(flags.version_requested());
  EXPECT_FALSE(flags.IsSet("db"));
  const std::string usage = flags.Usage();
  EXPECT_NE(usage.find("  --db VALUE\n      the database\n      default: portico.db; env PORTICO_DB\n"),
            std::string::npos)
      << usage;

  Flags version({{"db", "", "d"}});
  const char* v[] = {"prog", "--version"};
  ASSERT_TRUE(version.Parse(2, const_cast<char**>(v)).ok());
  EXPECT_TRUE(version.version_requested());
  // After "--" they are ordinary positional arguments.
  Flags after({{"db", "", "d"}});
  const char* a[] = {"prog", "--", "--help"};
  ASSERT_TRUE(after.Parse(3, const_cast<char**>(a)).ok());
  EXPECT_FALSE(after.help_requested());
}

}  // namespace
}  // namespace portico

#include "common/base/sha256.h"

namespace portico {
namespace {

std::string Sha256Hex(absl::string_view data, size_t piece = 0) {
  Sha256 sha;
  if (piece == 0) {
    sha.Update(data);
  } else {
    for (size_t i = 0; i < data.size(); i += piece) sha.Update(data.substr(i, piece));
  }
  uint8_t digest[Sha256::kDigestBytes];
  sha.Final(digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (uint8_t b : digest) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 15]);
  }
  return hex;
}

TEST(Sha256Test, FipsVectorsInOnePieceAndInManyPieces) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";  // 56 bytes: padding spills
  EXPECT_EQ(Sha256Hex(two_blocks), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  EXPECT_EQ(Sha256Hex(million), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  for (size_t piece : {1, 7, 63, 64, 65}) {
    EXPECT_EQ(Sha256Hex(two_blocks, piece), Sha256Hex(two_blocks)) << piece;
    EXPECT_EQ(Sha256Hex(million.substr(0, 1000), piece), Sha256Hex(million.substr(0, 1000))) << piece;
  }
}

}  // namespace
}  // namespace portico
