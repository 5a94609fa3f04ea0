// What a new operator meets first, with the real binaries: --help and --version, flag errors,
// gen-certs keeping an existing CA while enrolling a second DP, --db in a folder that does not
// exist yet, and the DP's readiness message before any config.
#include <sys/stat.h>
#include <sys/wait.h>

#include <cctype>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

struct RunResult {
  int exit_code = -1;  // -1 if it did not exit normally
  std::string output;  // stdout + stderr
};

RunResult RunToExit(const TempDir& tmp, const std::string& name, std::vector<std::string> argv,
              std::map<std::string, std::string> env = {}) {
  const std::string log = tmp.File(name + ".log");
  Process p(name, std::move(argv), log, std::move(env));
  const int status = p.Stop(0, 30s);  // signal 0: only wait
  RunResult r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.output = p.Log();
  return r;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every flag of a binary, as the help must list it: name, environment variable, default.
struct ExpectedFlag {
  const char* name;
  const char* default_text;
  bool is_bool = false;
};

void ExpectHelpListsEveryFlag(const RunResult& r, const std::vector<ExpectedFlag>& flags) {
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("usage: ", 0), 0u) << r.output;
  for (const ExpectedFlag& f : flags) {
    std::string env = absl::StrCat("PORTICO_", f.name);
    for (char& c : env) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_NE(r.output.find(absl::StrCat("  --", f.name, f.is_bool ? "[=true|false]\n" : " VALUE\n")), std::string::npos)
        << f.name << "\n" << r.output;
    EXPECT_NE(r.output.find(absl::StrCat("default: ", f.default_text, "; env ", env, "\n")), std::string::npos)
        << f.name << "\n" << r.output;
  }
  EXPECT_NE(r.output.find("--version"), std::string::npos) << r.output;
}

const std::vector<ExpectedFlag> kCpFlags = {
    {"db", "portico.db"},
    {"admin-listen", "127.0.0.1:8001"},
    {"admin-ssl-listen", "off"},
    {"admin-ssl-cert", "none"},
    {"admin-ssl-cert-key", "none"},
    {"admin-client-ca", "none"},
    {"admin-token-file", "none"},
    {"cluster-listen", "0.0.0.0:8005"},
    {"cluster-cert", "none"},
    {"cluster-key", "none"},
    {"cluster-ca", "none"},
    {"admin-gui-origin", "none"},
    {"max-body-bytes", "10485760"},
    {"cluster-admission-rate", "50"},
    {"cluster-admission-burst", "100"},
    {"cluster-max-full-sends", "32"},
    {"cluster-hello-timeout", "10"},
    {"cluster-handshake-timeout", "5"},
    {"cluster-ack-timeout", "30"},
    {"cluster-data-plane-purge-delay", "1209600"},
    {"log-level", "info"},
    {"conf", "none"},
};
const std::vector<ExpectedFlag> kDpFlags = {
    {"control-plane", "127.0.0.1:8005"},
    {"cluster-cert", "none"},
    {"cluster-key", "none"},
    {"cluster-ca", "none"},
    {"cluster-server-name", "none"},
    {"proxy-listen", "0.0.0.0:8000"},
    {"proxy-ssl-listen", "0.0.0.0:8443"},
    {"ssl-cert", "none"},
    {"ssl-cert-key", "none"},
    {"status-listen", "127.0.0.1:8100"},
    {"workers", "0"},
    {"client-timeout", "60"},
    {"allow-debug-header", "false", true},
    {"snapshot-cache", "none"},
    {"log-level", "info"},
    {"conf", "none"},
};
const std::vector<ExpectedFlag> kGenCertsFlags = {
    {"cp-names", "none"},
    {"dp-id", "dp-1"},
    {"cp-id", "cp"},
    {"force", "false", true},
};

TEST(FirstRunTest, HelpAndVersionAnswerOnBothBinariesAndTheSubcommand) {
  TempDir tmp;
  for (const std::string help : {"--help", "-h"}) {
    ExpectHelpListsEveryFlag(RunToExit(tmp, "cp" + help, {PORTICO_CP_BIN, help}), kCpFlags);
    ExpectHelpListsEveryFlag(RunToExit(tmp, "dp" + help, {PORTICO_DP_BIN, help}), kDpFlags);
    ExpectHelpListsEveryFlag(RunToExit(tmp, "gen" + help, {PORTICO_CP_BIN, "gen-certs", help}), kGenCertsFlags);
  }
  // --help wins over other arguments, even malformed ones.
  ExpectHelpListsEveryFlag(RunToExit(tmp, "cp-help2", {PORTICO_CP_BIN, "--nope", "--help"}), kCpFlags);

  int n = 0;
  for (const auto& argv : std::vector<std::vector<std::string>>{{PORTICO_CP_BIN, "--version"},
                                                                {PORTICO_CP_BIN, "gen-certs", "--version"}}) {
    RunResult r = RunToExit(tmp, absl::StrCat("cp-version-", ++n), argv);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, absl::StrCat("portico-cp ", PORTICO_VERSION, "\n"));
  }
  RunResult dp_version = RunToExit(tmp, "dp-version", {PORTICO_DP_BIN, "--version"});
  EXPECT_EQ(dp_version.exit_code, 0) << dp_version.output;
  EXPECT_EQ(dp_version.output, absl::StrCat("portico-dp ", PORTICO_VERSION, "\n"));
}

TEST(FirstRunTest, FlagMistakesExitNonZeroAndSayWhatIsWrong) {
  TempDir tmp;
  RunResult unknown = RunToExit(tmp, "unknown", {PORTICO_DP_BIN, "--proxy-lisen", "x"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.output.find("unknown flag --proxy-lisen"), std::string::npos) << unknown.output;

  RunResult bad_bool = RunToExit(tmp, "bad-bool", {PORTICO_DP_BIN}, {{"PORTICO_ALLOW_DEBUG_HEADER", "ture"}});
  EXPECT_EQ(bad_bool.exit_code, 1);
  EXPECT_NE(bad_bool.output.find("PORTICO_ALLOW_DEBUG_HEADER must be true or false"), std::string::npos)
      << bad_bool.output;

  RunResult stray = RunToExit(tmp, "stray", {PORTICO_CP_BIN, "serve"});
  EXPECT_EQ(stray.exit_code, 2);
  EXPECT_NE(stray.output.find("unexpected argument 'serve'"), std::string::npos) << stray.output;
}

TEST(FirstRunTest, GenCertsKeepsTheCaAndEnrollsASecondDataPlane) {
  Cluster cluster;
  const std::string certs = cluster.certs();
  const std::string ca_before = Slurp(certs + "/ca.crt");
  const std::string ca_key_before = Slurp(certs + "/ca.key");
  const std::string dp_key_before = Slurp(certs + "/dp.key");
  const std::string cp_before = Slurp(certs + "/cp.crt"), cp_key_before = Slurp(certs + "/cp.key");
  ASSERT_FALSE(ca_before.empty());

  // Run again with nothing asked: refused, nothing touched.
  RunResult again = RunToExit(cluster.tmp(), "gen-again", {PORTICO_CP_BIN, "gen-certs", certs});
  EXPECT_NE(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("already holds a cluster CA; nothing was written"), std::string::npos)
      << again.output;

  RunResult second = RunToExit(cluster.tmp(), "gen-dp2", {PORTICO_CP_BIN, "gen-certs", certs, "--dp-id", "dp-2"});
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(Slurp(certs + "/ca.crt"), ca_before);
  EXPECT_EQ(Slurp(certs + "/ca.key"), ca_key_before);
  EXPECT_EQ(Slurp(certs + "/dp.key"), dp_key_before);
  EXPECT_EQ(Slurp(certs + "/cp.crt"), cp_before);
  EXPECT_EQ(Slurp(certs + "/cp.key"), cp_key_before);
  struct stat st;
  ASSERT_EQ(stat((certs + "/dp-2.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // The same DP id twice: refused without --force.
  RunResult twice = RunToExit(cluster.tmp(), "gen-dp2-again", {PORTICO_CP_BIN, "gen-certs", certs, "--dp-id", "dp-2"});
  EXPECT_NE(twice.exit_code, 0) << twice.output;
  EXPECT_NE(twice.output.find("dp-2.crt already exists"), std::string::npos) << twice.output;

  // Both DPs, the first enrolled before the second certificate was issued, connect to one CP.
  ASSERT_TRUE(cluster.StartCp()) << cluster.Logs();
  DataPlane& first = cluster.StartDp();
  DataPlane& dp2 = cluster.StartDp({.cert = certs + "/dp-2.crt", .key = certs + "/dp-2.key",
                                    .log_name = "dp2.log"});
  ASSERT_TRUE(first.started && dp2.started) << cluster.Logs();
  ASSERT_TRUE(WaitFor(
      [&] {
        json dps = ParseJson(cluster.Admin("GET", "/clustering/data-planes"));
        if (!dps.is_object() || !dps.contains("data")) return false;
        std::set<std::string> ids;
        for (const json& dp : dps["data"]) ids.insert(dp.value("id", ""));
        return ids.count("dp-it") == 1 && ids.count("dp-2") == 1;
      },
      15s))
      << cluster.Admin("GET", "/clustering/data-planes").body << cluster.Logs();
}

TEST(FirstRunTest, DatabaseFolderIsCreatedWithMode0700) {
  Cluster cluster;
  const std::string folder = cluster.tmp().path() + "/var/lib/portico";
  ASSERT_TRUE(cluster.StartCp({"--db", folder + "/portico.db"})) << cluster.Logs();
  struct stat st;
  ASSERT_EQ(stat(folder.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(stat((folder + "/portico.db").c_str(), &st), 0);
  EXPECT_EQ(cluster.Admin("POST", "/services", {{"name", "a"}, {"url", "http://127.0.0.1:9"}}).status, 201);
}

TEST(FirstRunTest, DatabaseFolderThatCannotBeMadeGetsAnActionableError) {
  TempDir tmp;
  const std::string file = tmp.File("not-a-folder");
  std::ofstream(file) << "x";
  RunResult r = RunToExit(tmp, "cp-bad-db",
                    {PORTICO_CP_BIN, "--db", file + "/sub/portico.db", "--admin-listen",
                     absl::StrCat("127.0.0.1:", PickFreePort()), "--cluster-listen",
                     absl::StrCat("127.0.0.1:", PickFreePort()), "--cluster-cert", "x", "--cluster-key", "x",
                     "--cluster-ca", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(absl::StrCat("cannot create the folder for --db ", file, "/sub/portico.db")),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("choose another --db path"), std::string::npos) << r.output;
}

TEST(FirstRunTest, ReadinessSaysWhetherNoConfigArrivedOrAnEmptyOneDid) {
  Cluster cluster;
  // A DP whose CP is not up yet has received nothing.
  DataPlane& dp = cluster.StartDp();
  ASSERT_TRUE(dp.started) << cluster.Logs();
  HttpResult none = Http(dp.status_port, "GET", "/status/ready");
  EXPECT_EQ(none.status, 503);
  EXPECT_EQ(ParseJson(none)["message"], "no configuration available (configuration hash is not initialized)");

  ASSERT_TRUE(cluster.StartCp()) << cluster.Logs();
  ASSERT_TRUE(WaitFor([&] { return cluster.DpStatus(dp).value("config_loaded", false); }, 20s))
      << cluster.Logs();
  HttpResult empty = Http(dp.status_port, "GET", "/status/ready");
  EXPECT_EQ(empty.status, 503);
  EXPECT_EQ(ParseJson(empty)["message"], "no configuration available (empty configuration present)");
}

TEST(FirstRunTest, AdmissionRefusalLogsTheDelayTheDataPlaneReallyWaits) {
  Cluster cluster;
  RunResult second = RunToExit(cluster.tmp(), "gen-dp2",
                               {PORTICO_CP_BIN, "gen-certs", cluster.certs(), "--dp-id", "dp-2"});
  ASSERT_EQ(second.exit_code, 0) << second.output;
  // One stream at once, then one every 10 s: the second DP is told to come back seconds later,
  // far beyond its own first backoff (about 1 s), so the CP's delay is the one it waits.
  ASSERT_TRUE(cluster.StartCp({"--cluster-admission-rate", "0.1", "--cluster-admission-burst", "1"}))
      << cluster.Logs();
  DataPlane& first = cluster.StartDp();
  ASSERT_TRUE(first.started) << cluster.Logs();
  ASSERT_TRUE(WaitFor([&] { return cluster.DpStatus(first).value("control_plane_connected", false); }, 15s))
      << cluster.Logs();
  DataPlane& dp2 = cluster.StartDp({.cert = cluster.certs() + "/dp-2.crt",
                                    .key = cluster.certs() + "/dp-2.key", .log_name = "dp2.log"});
  ASSERT_TRUE(dp2.started) << cluster.Logs();
  // 45 s: if a first attempt gets no answer at all, the DP's Hello watchdog (20 s) retries it.
  ASSERT_TRUE(WaitFor([&] { return dp2.process->Log().find("goaway OVERLOADED") != std::string::npos; }, 45s))
      << cluster.Logs();
  ASSERT_TRUE(WaitFor([&] { return dp2.process->Log().find("reconnecting in") != std::string::npos; }, 5s));
  const std::string log = dp2.process->Log();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex(R"(goaway OVERLOADED: [^\n]*; reconnecting in ([0-9.]+)s \(the control plane asked for ([0-9]+)s\))")))
      << log;
  EXPECT_EQ(std::stod(m[1].str()), std::stod(m[2].str())) << "the logged delay is the one waited: " << m[0];
  EXPECT_GE(std::stod(m[2].str()), 2.0) << m[0];
  // It comes back after that delay and is admitted.
  EXPECT_TRUE(WaitFor([&] { return cluster.DpStatus(dp2).value("control_plane_connected", false); }, 30s))
      << dp2.process->Log();
}

}  // namespace
}  // namespace portico::testing
