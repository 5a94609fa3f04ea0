#include "common/base/conf_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/base/file.h"
#include "common/base/flags.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico {
namespace {

using test_support::TempDir;

TEST(ConfTextTest, KeysValuesCommentsEscapesAndWhitespace) {
  const ConfText parsed = ParseConfText(
      "\xEF\xBB\xBF# a comment after a byte order mark\n"
      "\n"
      "   admin_listen   =   127.0.0.1:8001   \n"
      "db = /var/lib/portico.db # trailing comment\n"
      "admin_gui_origin = http://a\\#b   # '#' escaped\n"
      "empty_value =   # no value: absent, the default applies\n"
      "\t  ; a kong.conf comment = not a key\r\n"
      "crlf = yes\r\n"
      "equals_inside = a=b=c\n",
      "portico.conf");
  EXPECT_TRUE(parsed.errors.empty()) << parsed.errors[0];
  ASSERT_EQ(parsed.lines.size(), 5u);
  EXPECT_EQ(parsed.lines[0].key, "admin_listen");
  EXPECT_EQ(parsed.lines[0].value, "127.0.0.1:8001");
  EXPECT_EQ(parsed.lines[0].line, 3);
  EXPECT_EQ(parsed.lines[1].value, "/var/lib/portico.db");
  EXPECT_EQ(parsed.lines[2].value, "http://a#b");
  EXPECT_EQ(parsed.lines[3].key, "crlf");
  EXPECT_EQ(parsed.lines[3].value, "yes");
  EXPECT_EQ(parsed.lines[3].line, 8);
  EXPECT_EQ(parsed.lines[4].value, "a=b=c");
}

TEST(ConfTextTest, EveryBadLineIsAnErrorNamingFileAndLineAndGoodLinesStay) {
  const ConfText parsed = ParseConfText(
      "db = a\n"
      "no equals sign\n"
      " = value\n"
      "Admin-\xff = x\n"
      "db = b\n"
      "workers = 2\n"
      "ssl_cert = /a\x01" "b\n" + std::string("nul = a\0b\n", 10),
      "/etc/portico/portico-cp.conf");
  ASSERT_EQ(parsed.errors.size(), 6u);
  EXPECT_EQ(parsed.errors[4], "/etc/portico/portico-cp.conf:7: control character in the value of 'ssl_cert'");
  EXPECT_EQ(parsed.errors[5], "/etc/portico/portico-cp.conf:8: control character in the value of 'nul'");
  EXPECT_EQ(parsed.errors[0], "/etc/portico/portico-cp.conf:2: expected 'key = value'");  // the line is not shown
  EXPECT_EQ(parsed.errors[1], "/etc/portico/portico-cp.conf:3: missing key before '='");
  EXPECT_EQ(parsed.errors[2],
            "/etc/portico/portico-cp.conf:4: malformed key 'Admin-?' (keys are lower case letters, digits and '_')");
  EXPECT_EQ(parsed.errors[3], "/etc/portico/portico-cp.conf:5: duplicate key 'db' (first set on line 1)");
  ASSERT_EQ(parsed.lines.size(), 2u);
  EXPECT_EQ(parsed.lines[0].value, "a");  // the first value stays; the repeat is refused
  EXPECT_EQ(parsed.lines[1].key, "workers");
}

TEST(ConfTextTest, APemFileIsOneErrorShowingNoneOfItsText) {
  const std::string pem =
      "-----BEGIN PRIVATE KEY-----\n"
      "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSECRETSECRETSECRET\n"
      "hRANCAAQabc=\n"
      "-----END PRIVATE KEY-----\n";
  for (const std::string& text : {pem, "# comment first\n" + pem}) {
    const ConfText parsed = ParseConfText(text, "cp.key");
    EXPECT_TRUE(parsed.lines.empty());
    ASSERT_EQ(parsed.errors.size(), 1u);
    EXPECT_NE(parsed.errors[0].find("this looks like a PEM file, not a configuration file"), std::string::npos)
        << parsed.errors[0];
    EXPECT_EQ(parsed.errors[0].find("SECRET"), std::string::npos);
    EXPECT_EQ(parsed.errors[0].find("hRANCAAQabc"), std::string::npos);
  }
}

TEST(ConfKeyTest, PathKeysTakePathsNotInlineKeyMaterial) {
  const ConfKey key = PathKey("cluster_cert_key", "cluster-key");
  for (const char* path : {"/etc/portico/cp.key", "cp.key", "certs/cp.key", "C:key"}) {
    EXPECT_EQ(*key.translate(path), (FlagValues{{"cluster-key", path}})) << path;
  }
  const std::string pem = "-----BEGIN EC PRIVATE KEY-----SECRETSECRET";
  const std::string base64_pem = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JR0hBZ0VBU0VDUkVU";  // "-----BEGIN PRIVATE KEY..."
  const std::string long_blob(120, 'A');
  for (const std::string& value : {pem, base64_pem, long_blob}) {
    absl::StatusOr<FlagValues> refused = key.translate(value);
    ASSERT_FALSE(refused.ok()) << value;
    EXPECT_NE(refused.status().message().find("Portico takes a file path here"), std::string::npos);
    EXPECT_EQ(refused.status().message().find(value.substr(0, 12)), std::string::npos) << refused.status().message();
  }
}

TEST(ConfKeyTest, KongListenListSplitsPlainAndSsl) {
  const ConfKey key = KongListenKey("proxy_listen", "proxy-listen", "proxy-ssl-listen");
  absl::StatusOr<FlagValues> both =
      key.translate("0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384");
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(*both, (FlagValues{{"proxy-listen", "0.0.0.0:8000"}, {"proxy-ssl-listen", "0.0.0.0:8443"}}));
  absl::StatusOr<FlagValues> plain = key.translate("[::1]:8000");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(*plain, (FlagValues{{"proxy-listen", "[::1]:8000"}, {"proxy-ssl-listen", "off"}}));

  auto error_of = [&key](const char* value) { return std::string(key.translate(value).status().message()); };
  EXPECT_EQ(error_of("0.0.0.0:8443 ssl"), "an entry without 'ssl' is required (--proxy-listen cannot be off)");
  EXPECT_EQ(error_of("0.0.0.0:8000 proxy_protocol"),
            "listener flag 'proxy_protocol' is not supported (accepted: ssl, reuseport, backlog=N, deferred, bind, http2)");
  EXPECT_EQ(error_of("0.0.0.0:8000, 0.0.0.0:8001"),
            "more than one plain entry: Portico has one such listener (--proxy-listen)");
  EXPECT_EQ(error_of("off"), "'off' is not accepted: Portico needs --proxy-listen");
  EXPECT_EQ(error_of("0.0.0.0:8000 backlog=x"),
            "listener flag 'backlog=x' is not supported (accepted: ssl, reuseport, backlog=N, deferred, bind, http2)");
  EXPECT_FALSE(key.translate("0.0.0.0:99999").ok());
  EXPECT_FALSE(key.translate("0.0.0.0:8000,").ok());

  const ConfKey no_ssl = KongListenKey("status_listen", "status-listen", "");
  EXPECT_EQ(*no_ssl.translate("127.0.0.1:8100 reuseport"), (FlagValues{{"status-listen", "127.0.0.1:8100"}}));
  EXPECT_EQ(no_ssl.translate("127.0.0.1:8100 ssl").status().message(),
            "listener flag 'ssl' is not supported (accepted: reuseport, backlog=N, deferred, bind, http2)");
}

TEST(ConfKeyTest, RoleAndLogLevel) {
  const ConfKey role = KongRoleKey("data_plane", "portico-dp");
  EXPECT_TRUE(role.translate("data_plane").ok());
  EXPECT_EQ(role.translate("traditional").status().message(), "role must be data_plane for portico-dp, not 'traditional'");
  EXPECT_FALSE(role.translate("control_plane").ok());
  const ConfKey level = KongLogLevelKey();
  EXPECT_EQ(*level.translate("notice"), (FlagValues{{"log-level", "info"}}));
  EXPECT_EQ(*level.translate("crit"), (FlagValues{{"log-level", "error"}}));
  EXPECT_EQ(*level.translate("debug"), (FlagValues{{"log-level", "debug"}}));
}

TEST(ConfKeyTest, NginxSizes) {
  uint64_t bytes = 0;
  EXPECT_TRUE(ParseNginxSize("10m", &bytes));
  EXPECT_EQ(bytes, 10u << 20);
  EXPECT_TRUE(ParseNginxSize("512K", &bytes));
  EXPECT_EQ(bytes, 512u << 10);
  EXPECT_TRUE(ParseNginxSize("1g", &bytes));
  EXPECT_EQ(bytes, 1u << 30);
  EXPECT_TRUE(ParseNginxSize("1048576", &bytes));
  EXPECT_EQ(bytes, 1048576u);
  for (const char* bad : {"", "m", "0", "-1m", "+1", "1.5m", "10mb", "99999999999999999999", "9000000000g"}) {
    EXPECT_FALSE(ParseNginxSize(bad, &bytes)) << bad;
  }
}

// A Flags like a binary's, with a file and the environment.
class ConfFlagsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const char* name : {"PORTICO_DB", "PORTICO_WORKERS", "PORTICO_CONF", "PORTICO_ADMIN_LISTEN"}) unsetenv(name);
  }
  std::string Write(const std::string& text, const std::string& name = "portico.conf") {
    const std::string path = dir_.File(name);
    EXPECT_TRUE(WriteFileAtomically(path, text, 0600).ok());
    return path;
  }

 public:
  static Flags MakeFlags() {
    Flags flags({{"db", "portico.db", "db"},
                 {"admin-listen", "127.0.0.1:8001", "admin"},
                 {"admin-ssl-listen", "off", "admin tls"},
                 {"workers", "0", "workers"},
                 {"cluster-key", "", "key"},
                 {"verbose", "", "v", true},
                 {"log-level", "info", "level"}});
    flags.EnableConfFile({KongRoleKey("control_plane", "portico-cp"), RenamedKey("cluster_cert_key", "cluster-key"),
                          KongListenKey("admin_listen", "admin-listen", "admin-ssl-listen"), KongLogLevelKey()});
    return flags;
  }

 protected:
  static absl::Status Parse(Flags& flags, std::vector<std::string> args) {
    std::vector<char*> argv = {const_cast<char*>("prog")};
    for (std::string& a : args) argv.push_back(a.data());
    return flags.Parse(static_cast<int>(argv.size()), argv.data());
  }
  TempDir dir_;
};

TEST_F(ConfFlagsTest, FlagBeatsEnvironmentBeatsFileBeatsDefault) {
  const std::string path = Write(
      "role = control_plane\n"
      "db = /from/file.db\n"
      "workers = 3\n"
      "admin_listen = 127.0.0.1:7001 reuseport, 127.0.0.1:7444 ssl\n"
      "cluster_cert_key = /from/file.key\n"
      "verbose = on\n"
      "log_level = crit\n");
  setenv("PORTICO_DB", "/from/env.db", 1);
  setenv("PORTICO_WORKERS", "5", 1);
  Flags flags = MakeFlags();
  ASSERT_TRUE(Parse(flags, {"--conf", path, "--workers=7"}).ok());
  EXPECT_EQ(flags.Get("workers"), "7");              // flag > env > file
  EXPECT_EQ(flags.Get("db"), "/from/env.db");        // env > file
  EXPECT_EQ(flags.Get("admin-listen"), "127.0.0.1:7001");  // file > default
  EXPECT_EQ(flags.Get("admin-ssl-listen"), "127.0.0.1:7444");
  EXPECT_EQ(flags.Get("cluster-key"), "/from/file.key");
  EXPECT_TRUE(flags.GetBool("verbose"));
  EXPECT_EQ(flags.Get("log-level"), "error");  // crit, as Kong's nginx levels map
  EXPECT_TRUE(flags.IsSet("cluster-key"));

  // Without the file, defaults.
  Flags bare = MakeFlags();
  ASSERT_TRUE(Parse(bare, {}).ok());
  EXPECT_EQ(bare.Get("admin-listen"), "127.0.0.1:8001");
  EXPECT_FALSE(bare.IsSet("cluster-key"));
}

TEST_F(ConfFlagsTest, AnEmptyValueIsNoValue) {
  const std::string path = Write("db =\ncluster_cert_key =   # nothing\nadmin_listen =\nworkers = 4\n");
  Flags flags = MakeFlags();
  ASSERT_TRUE(Parse(flags, {"--conf", path}).ok());
  EXPECT_EQ(flags.Get("db"), "portico.db");  // the default, not ""
  EXPECT_FALSE(flags.IsSet("db"));
  EXPECT_FALSE(flags.IsSet("cluster-key"));
  EXPECT_EQ(flags.Get("admin-listen"), "127.0.0.1:8001");
  EXPECT_EQ(flags.Get("workers"), "4");
  // Still one key per file: a repeat of an empty key is refused.
  Flags twice = MakeFlags();
  EXPECT_NE(Parse(twice, {"--conf", Write("db =\ndb = x\n", "twice.conf")}).message().find("duplicate key 'db'"),
            std::string::npos);
}

TEST_F(ConfFlagsTest, ErrorsAreCappedAndShowOnlyPrintableText) {
  std::string many;
  for (int i = 0; i < 50; ++i) many += "unknown_" + std::to_string(i) + " = 1\n";
  Flags flags = MakeFlags();
  absl::Status s = Parse(flags, {"--conf", Write(many)});
  const std::string message(s.message());
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 20) << message;
  EXPECT_NE(message.find(dir_.File("portico.conf") + ": ... and 30 more errors"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown_19"), std::string::npos);
  EXPECT_EQ(message.find("unknown_20"), std::string::npos);

  // A 400 kB key, unknown and repeated: the error stays short.
  const std::string huge(400000, 'k');
  Flags big = MakeFlags();
  s = Parse(big, {"--conf", Write(huge + " = 1\n" + huge + " = 2\n", "huge.conf")});
  EXPECT_LT(s.message().size(), 600u) << s.message().substr(0, 300);
  EXPECT_NE(s.message().find("duplicate key 'kkkk"), std::string::npos);

  // Bytes of a boolean value, from the file, the environment and the command line.
  Flags bytes = MakeFlags();
  s = Parse(bytes, {"--conf", Write("verbose = \xff[31m\xfe\n", "bytes.conf")});
  EXPECT_NE(s.message().find("not '?[31m?'"), std::string::npos) << s.message();
  Flags flag_bytes = MakeFlags();
  s = Parse(flag_bytes, {"--verbose=\x1b\xfe"});
  EXPECT_NE(s.message().find("not '??'"), std::string::npos) << s.message();
  setenv("PORTICO_VERBOSE", "\x1b\xfe", 1);
  Flags env_bytes = MakeFlags();
  s = Parse(env_bytes, {});
  unsetenv("PORTICO_VERBOSE");
  EXPECT_NE(s.message().find("not '??'"), std::string::npos) << s.message();
}

TEST_F(ConfFlagsTest, OnlyARegularFileIsRead) {
  const std::string fifo = dir_.File("fifo.conf");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Flags flags = MakeFlags();
  absl::Status s = Parse(flags, {"--conf", fifo});  // returns: no writer is waited for
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "--conf " + fifo + ": not a regular file");
  Flags dir = MakeFlags();
  EXPECT_EQ(Parse(dir, {"--conf", dir_.path()}).message(), "--conf " + dir_.path() + ": not a regular file");
}

TEST_F(ConfFlagsTest, PorticoConfNamesTheFileAndTheFlagWins) {
  const std::string path = Write("db = /from/file.db\n");
  setenv("PORTICO_CONF", path.c_str(), 1);
  Flags flags = MakeFlags();
  ASSERT_TRUE(Parse(flags, {}).ok());
  EXPECT_EQ(flags.Get("db"), "/from/file.db");
  Flags other = MakeFlags();
  EXPECT_EQ(Parse(other, {"--conf", dir_.File("missing.conf")}).code(), absl::StatusCode::kNotFound);
}

TEST_F(ConfFlagsTest, EveryErrorOfTheFileNamesItsLine) {
  const std::string path = Write(
      "role = traditional\n"
      "foo = 1\n"
      "verbose = maybe\n"
      "admin_listen = 127.0.0.1:7001 proxy_protocol\n"
      "cluster_key = /a.key\n"
      "cluster_cert_key = /b.key\n"
      "conf = /other.conf\n"
      "db = x\n"
      "db = y\n"
      "help = 1\n");
  Flags flags = MakeFlags();
  absl::Status s = Parse(flags, {"--conf", path});
  ASSERT_FALSE(s.ok());
  const std::string p = path;
  EXPECT_EQ(s.message(),
            p + ":9: duplicate key 'db' (first set on line 8)\n" +
            p + ":1: role: role must be control_plane for portico-cp, not 'traditional'\n" +
            p + ":2: unknown key 'foo'\n" +
            p + ":3: verbose must be true or false (or on/off, yes/no, 1/0), not 'maybe'\n" +
            p + ":4: admin_listen: listener flag 'proxy_protocol' is not supported (accepted: ssl, reuseport, "
                "backlog=N, deferred, bind, http2)\n" +
            p + ":6: cluster_cert_key sets --cluster-key, already set by cluster_key (" + p + ":5)\n" +
            p + ":7: conf cannot be set in the configuration file\n" +
            p + ":10: unknown key 'help'");
}

TEST_F(ConfFlagsTest, ExplainNamesTheLineOfAFileValueOnly) {
  const std::string path = Write("workers = many\nlog_level = loud\n");
  setenv("PORTICO_ADMIN_LISTEN", "nowhere", 1);
  Flags flags = MakeFlags();
  ASSERT_TRUE(Parse(flags, {"--conf", path}).ok());
  EXPECT_EQ(flags.Explain(absl::InvalidArgumentError("--workers must be an integer in 0..256")).message(),
            path + ":1 (workers): --workers must be an integer in 0..256");
  EXPECT_EQ(flags.Explain(absl::InvalidArgumentError("--workers and --log-level and --workers")).message(),
            path + ":1 (workers), " + path + ":2 (log_level): --workers and --log-level and --workers");
  // One line setting two flags is named once.
  const std::string both = Write("admin_listen = 127.0.0.1:1, 127.0.0.1:2 ssl\n", "both.conf");
  unsetenv("PORTICO_ADMIN_LISTEN");
  Flags listen = MakeFlags();
  ASSERT_TRUE(Parse(listen, {"--conf", both}).ok());
  EXPECT_EQ(listen.Explain(absl::InvalidArgumentError("--admin-listen and --admin-ssl-listen clash")).message(),
            both + ":1 (admin_listen): --admin-listen and --admin-ssl-listen clash");
  setenv("PORTICO_ADMIN_LISTEN", "nowhere", 1);
  EXPECT_EQ(ApplyLogLevelFlag(flags).message(), "--log-level must be debug, info, warn or error");
  EXPECT_EQ(flags.Explain(ApplyLogLevelFlag(flags)).message(),
            path + ":2 (log_level): --log-level must be debug, info, warn or error");
  // From the environment: unchanged.
  EXPECT_EQ(flags.Explain(absl::InvalidArgumentError("--admin-listen: invalid")).message(), "--admin-listen: invalid");
  EXPECT_EQ(RequireFlags(flags, {"cluster-key"}).message(),
            "--cluster-key (or PORTICO_CLUSTER_KEY or cluster_key/cluster_cert_key in --conf) is required");
  EXPECT_NE(flags.Usage().find("  --conf VALUE\n"), std::string::npos);
  EXPECT_NE(flags.Usage().find("      in --conf: admin_listen\n"), std::string::npos) << flags.Usage();
  EXPECT_NE(flags.Usage().find("      in --conf: cluster_key, cluster_cert_key\n"), std::string::npos);
}

// A binary's validation in miniature: --workers and --db are checked in turn, and a bad --workers
// makes a --db check fail too (as a dropped value can make a later check fail).
int FakeRound(const std::vector<std::string>& args, ConfCheck* check, int* rounds) {
  ++*rounds;
  Flags flags = ConfFlagsTest::MakeFlags();
  std::vector<char*> argv = {const_cast<char*>("prog")};
  std::vector<std::string> copy = args;
  for (std::string& a : copy) argv.push_back(a.data());
  if (absl::Status s = flags.Parse(static_cast<int>(argv.size()), argv.data()); !s.ok()) return check->Record(flags, s);
  check->Prepare(flags);
  if (flags.Get("workers") == "0" && flags.Get("db") == "needs-workers.db") {
    return check->Record(flags, absl::InvalidArgumentError("--db needs-workers.db wants --workers"));
  }
  if (flags.Get("workers") != "0" && flags.Get("workers") != "2") {
    return check->Record(flags, absl::InvalidArgumentError("--workers must be 0 or 2"));
  }
  if (flags.Get("log-level") != "info") return check->Record(flags, absl::InvalidArgumentError("--log-level: bad"));
  if (flags.Get("admin-listen") == "nowhere") return check->Record(flags, absl::InvalidArgumentError("no admin"));
  return 0;
}

TEST_F(ConfFlagsTest, CheckListsEveryBadValueOfTheFileAndStopsAtConsequences) {
  const std::string path = Write("workers = 9\nlog_level = loud\n");
  int rounds = 0;
  testing::internal::CaptureStderr();
  int code = ConfCheck::Run("prog", path, [&](ConfCheck* c) { return FakeRound({"--conf", path}, c, &rounds); });
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_EQ(rounds, 3);
  EXPECT_EQ(err, "prog: " + path + ":1 (workers): --workers must be 0 or 2\n" +
                 "prog: " + path + ":2 (log_level): --log-level: bad\n");

  // An error that follows from a dropped value is not reported; the rounds stop there.
  const std::string consequence = Write("workers = 9\ndb = needs-workers.db\n", "consequence.conf");
  rounds = 0;
  testing::internal::CaptureStderr();
  code = ConfCheck::Run("prog", consequence, [&](ConfCheck* c) { return FakeRound({"--conf", consequence}, c, &rounds); });
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_EQ(rounds, 2);
  EXPECT_EQ(err, "prog: " + consequence + ":1 (workers): --workers must be 0 or 2\n");

  // An error naming no file value (here from the environment) ends the rounds after it.
  const std::string good = Write("workers = 2\n", "good.conf");
  setenv("PORTICO_ADMIN_LISTEN", "nowhere", 1);
  rounds = 0;
  testing::internal::CaptureStderr();
  code = ConfCheck::Run("prog", good, [&](ConfCheck* c) { return FakeRound({"--conf", good}, c, &rounds); });
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_EQ(rounds, 1);
  EXPECT_EQ(err, "prog: no admin\n");
  // After a dropped value, such an error may be a consequence of the drop: not reported.
  const std::string then_env = Write("workers = 9\n", "then-env.conf");
  rounds = 0;
  testing::internal::CaptureStderr();
  code = ConfCheck::Run("prog", then_env, [&](ConfCheck* c) { return FakeRound({"--conf", then_env}, c, &rounds); });
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_EQ(rounds, 2);
  EXPECT_EQ(err, "prog: " + then_env + ":1 (workers): --workers must be 0 or 2\n");
  unsetenv("PORTICO_ADMIN_LISTEN");

  // Valid: one round, Kong's sentence on stdout.
  rounds = 0;
  testing::internal::CaptureStdout();
  code = ConfCheck::Run("prog", good, [&](ConfCheck* c) { return FakeRound({"--conf", good}, c, &rounds); });
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "configuration at " + good + " is valid\n");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(rounds, 1);

  // Syntax errors: one round, all of them.
  const std::string broken = Write("workers = 9\nnope\nfoo = 1\n", "broken.conf");
  rounds = 0;
  testing::internal::CaptureStderr();
  code = ConfCheck::Run("prog", broken, [&](ConfCheck* c) { return FakeRound({"--conf", broken}, c, &rounds); });
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_EQ(rounds, 1);
  EXPECT_NE(err.find(broken + ":2: expected 'key = value'\n" + broken + ":3: unknown key 'foo'"),
            std::string::npos) << err;

  // A round failing without recording (a usage error it printed itself) is the last.
  rounds = 0;
  code = ConfCheck::Run("prog", good, [&](ConfCheck*) { ++rounds; return 2; });
  EXPECT_EQ(code, 2);
  EXPECT_EQ(rounds, 1);
}

int CheckMain(std::vector<std::string> args, int* serves) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return ConfCheck::Main("prog", static_cast<int>(argv.size()), argv.data(), [serves](int, char**, ConfCheck*) {
    ++*serves;
    return 0;
  });
}

TEST_F(ConfFlagsTest, CheckRefusesAnEmptyFileNameAndASecondConf) {
  const std::string path = Write("workers = 2\n");
  int serves = 0;
  testing::internal::CaptureStderr();
  EXPECT_EQ(CheckMain({"prog", "check", ""}, &serves), 2);
  EXPECT_EQ(CheckMain({"prog", "check", path, "--conf", "other.conf"}, &serves), 2);
  EXPECT_EQ(CheckMain({"prog", "check", path, "--workers", "2", "--conf=other.conf"}, &serves), 2);
  EXPECT_EQ(CheckMain({"prog", "check"}, &serves), 2);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(serves, 0);
  EXPECT_NE(err.find("prog check: CONF_FILE is empty\nusage: prog check CONF_FILE [flags]"), std::string::npos) << err;
  EXPECT_NE(err.find("prog check: --conf cannot follow CONF_FILE"), std::string::npos) << err;
  testing::internal::CaptureStdout();
  EXPECT_EQ(CheckMain({"prog", "check", path, "--workers", "2"}, &serves), 0);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "configuration at " + path + " is valid\n");
  EXPECT_EQ(serves, 1);
}

}  // namespace
}  // namespace portico
