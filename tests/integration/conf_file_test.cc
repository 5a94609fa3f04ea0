// The configuration file (--conf, kong.conf syntax) with the real binaries: a CP and a DP started
// from files written with Kong's key names, one value overridden by the environment and one by a
// flag (which listener answers tells who won), and `check` on good and bad files.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

#include "absl/strings/str_cat.h"
#include "common/base/file.h"
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
  Process p(name, std::move(argv), tmp.File(name + ".log"), std::move(env));
  const int status = p.Stop(0, 30s);  // signal 0: only wait
  RunResult r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.output = p.Log();
  return r;
}

std::string WriteConf(const TempDir& tmp, const std::string& name, const std::string& text) {
  const std::string path = tmp.File(name);
  EXPECT_TRUE(WriteFileAtomically(path, text, 0600).ok()) << path;
  return path;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool Answers(uint16_t port, const std::string& target) { return Http(port, "GET", target).ok; }

// A TCP connection to 127.0.0.1:port is accepted.
bool Connects(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

class ConfFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string log;
    ASSERT_TRUE(GenerateCerts(certs_, "dp-conf", &log)) << log;
  }
  // What a packaged /etc/portico/portico-cp.conf holds, with this run's ports and files.
  std::string CpConf(uint16_t admin_port, uint16_t cluster_port) const {
    return absl::StrCat(
        "# portico-cp, Kong's names\n"
        "role = control_plane\n"
        "db = ", tmp_.File("cp.db"), "\n",
        "admin_listen = 127.0.0.1:", admin_port, " reuseport backlog=16384\n",
        "cluster_listen = 127.0.0.1:", cluster_port, "\n",
        "cluster_cert = ", certs_, "/cp.crt\n",
        "cluster_cert_key = ", certs_, "/cp.key   # trailing comment\n",
        "cluster_ca_cert = ", certs_, "/ca.crt\n",
        "cluster_mtls = pki\n"
        "log_level = warn\n"
        "nginx_admin_client_max_body_size = 1k\n");
  }
  std::string DpConf(uint16_t cluster_port, uint16_t proxy_port, uint16_t proxy_ssl_port, uint16_t status_port) const {
    return absl::StrCat(
        "role = data_plane\n"
        "database = off\n"
        "cluster_control_plane = 127.0.0.1:", cluster_port, "\n",
        "cluster_server_name = localhost\n"
        "cluster_cert = ", certs_, "/dp.crt\n",
        "cluster_cert_key = ", certs_, "/dp.key\n",
        "cluster_ca_cert = ", certs_, "/ca.crt\n",
        "proxy_listen = 127.0.0.1:", proxy_port, " reuseport backlog=16384, 127.0.0.1:", proxy_ssl_port,
        " http2 ssl reuseport backlog=16384\n",
        "status_listen = 127.0.0.1:", status_port, "\n",
        "nginx_worker_processes = 2\n"
        "allow_debug_header = on\n"
        "log_level = info\n");
  }

  TempDir tmp_;
  const std::string certs_ = tmp_.File("certs");
};

TEST_F(ConfFileTest, BinariesStartFromKongStyleFilesAndFlagBeatsEnvironmentBeatsFile) {
  const uint16_t admin_file = PickFreePort(), admin_env = PickFreePort();
  const uint16_t cluster_file = PickFreePort(), cluster_flag = PickFreePort();
  const std::string cp_conf = WriteConf(tmp_, "portico-cp.conf", CpConf(admin_file, cluster_file));
  // The environment wins over the file's admin_listen; the flag wins over the file's cluster_listen
  // and over the environment's.
  Process cp("cp", {PORTICO_CP_BIN, "--conf", cp_conf, "--cluster-listen", absl::StrCat("127.0.0.1:", cluster_flag)},
             tmp_.File("cp.log"),
             {{"PORTICO_ADMIN_LISTEN", absl::StrCat("127.0.0.1:", admin_env)},
              {"PORTICO_CLUSTER_LISTEN", absl::StrCat("127.0.0.1:", cluster_file)}});
  ASSERT_TRUE(WaitFor([&] { return Http(admin_env, "GET", "/status").status == 200; }, 15s)) << cp.Log();
  EXPECT_FALSE(Answers(admin_file, "/status")) << "the file's admin_listen lost to the environment";
  EXPECT_TRUE(Exists(tmp_.File("cp.db"))) << "db from the file";
  // log_level = warn: the info line of the start is not logged.
  EXPECT_EQ(cp.Log().find("admin API listening"), std::string::npos) << cp.Log();
  // nginx_admin_client_max_body_size = 1k: a 2 kB body is refused, a small one is not.
  const std::string big_body = json({{"name", "big"}, {"url", "http://127.0.0.1:9"}, {"tags", {std::string(2048, 'x')}}}).dump();
  EXPECT_EQ(Http(admin_env, "POST", "/services", big_body).status, 413);

  EchoUpstream upstream("conf-echo");
  ASSERT_EQ(Http(admin_env, "POST", "/services",
                 json({{"name", "conf"}, {"url", absl::StrCat("http://127.0.0.1:", upstream.port())}}).dump())
                .status,
            201);
  ASSERT_EQ(Http(admin_env, "POST", "/services/conf/routes", json({{"paths", {"/conf"}}}).dump()).status, 201);

  const uint16_t proxy_file = PickFreePort(), proxy_flag = PickFreePort(), proxy_ssl = PickFreePort();
  const uint16_t status_file = PickFreePort(), status_env = PickFreePort();
  // The DP dials cluster_flag: the CP listens there only if its flag won.
  const std::string dp_conf = WriteConf(tmp_, "portico-dp.conf", DpConf(cluster_flag, proxy_file, proxy_ssl, status_file));
  Process dp("dp", {PORTICO_DP_BIN, "--conf", dp_conf, "--proxy-listen", absl::StrCat("127.0.0.1:", proxy_flag)},
             tmp_.File("dp.log"), {{"PORTICO_STATUS_LISTEN", absl::StrCat("127.0.0.1:", status_env)}});
  ASSERT_TRUE(WaitFor([&] { return Http(status_env, "GET", "/status/ready").status == 200; }, 20s))
      << dp.Log() << cp.Log();
  EXPECT_FALSE(Answers(status_file, "/status")) << "the file's status_listen lost to the environment";
  const json status = json::parse(Http(status_env, "GET", "/status").body, nullptr, false);
  EXPECT_EQ(status.value("control_plane_connected", false), true) << status.dump();
  EXPECT_EQ(status.value("node_id", ""), "dp-conf") << status.dump();

  HttpResult proxied = Http(proxy_flag, "GET", "/conf/x", "", "", {{"Kong-Debug", "1"}});
  EXPECT_EQ(proxied.status, 200) << proxied.error << dp.Log();
  EXPECT_EQ(proxied.headers["x-upstream"], "conf-echo");
  EXPECT_FALSE(proxied.headers["kong-route-id"].empty()) << "allow_debug_header = on from the file";
  EXPECT_FALSE(Answers(proxy_file, "/conf/x")) << "the file's plain proxy_listen lost to the flag";
  // The ssl entry of proxy_listen is the TLS listener: it accepts TCP (a TLS handshake follows).
  EXPECT_TRUE(Connects(proxy_ssl));

  EXPECT_EQ(WEXITSTATUS(dp.Stop()), 0) << dp.Log();
  EXPECT_EQ(WEXITSTATUS(cp.Stop()), 0) << cp.Log();
}

TEST_F(ConfFileTest, CheckValidatesWithoutStartingAndNamesEveryBadLine) {
  const uint16_t admin_port = PickFreePort();
  const std::string good_cp = WriteConf(tmp_, "good-cp.conf", CpConf(admin_port, PickFreePort()));
  RunResult r = RunToExit(tmp_, "check-good-cp", {PORTICO_CP_BIN, "check", good_cp});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, absl::StrCat("configuration at ", good_cp, " is valid\n"));
  EXPECT_FALSE(Exists(tmp_.File("cp.db"))) << "check opened the store";

  const std::string good_dp = WriteConf(tmp_, "good-dp.conf", DpConf(PickFreePort(), PickFreePort(), PickFreePort(), PickFreePort()));
  r = RunToExit(tmp_, "check-good-dp", {PORTICO_DP_BIN, "check", good_dp});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, absl::StrCat("configuration at ", good_dp, " is valid\n"));

  // Syntax, keys and Kong values: every error, each with its line.
  const std::string bad_cp = WriteConf(tmp_, "bad-cp.conf",
                                       "role = traditional\n"
                                       "admin_listen = 127.0.0.1:8001 proxy_protocol\n"
                                       "pg_host = db.internal\n"
                                       "this line has no equals sign\n"
                                       "db = a.db\n"
                                       "db = b.db\n");
  r = RunToExit(tmp_, "check-bad-cp", {PORTICO_CP_BIN, "check", bad_cp});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  for (const std::string& expected : {
           absl::StrCat(bad_cp, ":1: role: role must be control_plane for portico-cp, not 'traditional'"),
           absl::StrCat(bad_cp, ":2: admin_listen: listener flag 'proxy_protocol' is not supported"),
           absl::StrCat(bad_cp, ":3: unknown key 'pg_host'"),
           absl::StrCat(bad_cp, ":4: expected 'key = value'\n"),
           absl::StrCat(bad_cp, ":6: duplicate key 'db' (first set on line 5)"),
       }) {
    EXPECT_NE(r.output.find(expected), std::string::npos) << expected << "\n" << r.output;
  }
  EXPECT_EQ(r.output.find("is valid"), std::string::npos);
  EXPECT_EQ(r.output.find("this line has no equals sign"), std::string::npos) << "lines without '=' are not shown";
  EXPECT_EQ(r.output.find("INVALID_ARGUMENT"), std::string::npos) << "messages only";

  // A bad value: the message the flag gets, plus the line.
  const std::string bad_value = WriteConf(tmp_, "bad-value.conf", "role = data_plane\nnginx_worker_processes = lots\n");
  r = RunToExit(tmp_, "check-bad-value", {PORTICO_DP_BIN, "check", bad_value, "--cluster-cert", certs_ + "/dp.crt",
                                          "--cluster-key", certs_ + "/dp.key", "--cluster-ca", certs_ + "/ca.crt"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat(bad_value, ":2 (nginx_worker_processes): --workers must be an integer in 0..256")),
            std::string::npos) << r.output;
  RunResult flag_form =
      RunToExit(tmp_, "flag-bad-value", {PORTICO_DP_BIN, "--workers", "lots", "--cluster-cert", certs_ + "/dp.crt",
                                         "--cluster-key", certs_ + "/dp.key", "--cluster-ca", certs_ + "/ca.crt"});
  EXPECT_NE(flag_form.output.find("--workers must be an integer in 0..256"), std::string::npos) << flag_form.output;
  // Starting with the same file fails the same way, before listening.
  r = RunToExit(tmp_, "start-bad-value", {PORTICO_DP_BIN, "--conf", bad_value, "--cluster-cert", certs_ + "/dp.crt",
                                          "--cluster-key", certs_ + "/dp.key", "--cluster-ca", certs_ + "/ca.crt"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat(bad_value, ":2 (nginx_worker_processes)")), std::string::npos) << r.output;

  // Every bad value of the file, each with the flag's message and its line; a value the flag or the
  // environment overrides is not the file's problem.
  const std::string bad_values = WriteConf(tmp_, "bad-values.conf",
                                           "role = data_plane\n"
                                           "client_timeout = 0\n"
                                           "http2 = maybe\n"
                                           "status_listen = 127.0.0.1:8100\n"
                                           "dns_resolver = not-an-ip\n"
                                           "nginx_worker_processes = 999\n");
  r = RunToExit(tmp_, "check-bad-values", {PORTICO_DP_BIN, "check", bad_values, "--cluster-cert", certs_ + "/dp.crt",
                                           "--cluster-key", certs_ + "/dp.key", "--cluster-ca", certs_ + "/ca.crt",
                                           "--workers", "2"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  for (const std::string& expected : {
           absl::StrCat(bad_values, ":2 (client_timeout): --client-timeout must be a number of seconds in 0.1..86400"),
           absl::StrCat(bad_values, ":3 (http2): --http2: expected on or off"),
           absl::StrCat(bad_values, ":5 (dns_resolver): "),
       }) {
    EXPECT_NE(r.output.find(expected), std::string::npos) << expected << "\n" << r.output;
  }
  EXPECT_EQ(r.output.find("nginx_worker_processes"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("is valid"), std::string::npos) << r.output;

  // Certificate files are read: a missing key is an error naming it and the line.
  const std::string missing_key = WriteConf(
      tmp_, "missing-key.conf",
      absl::StrCat("cluster_cert = ", certs_, "/cp.crt\ncluster_cert_key = ", certs_, "/nope.key\ncluster_ca_cert = ",
                   certs_, "/ca.crt\n"));
  r = RunToExit(tmp_, "check-missing-key", {PORTICO_CP_BIN, "check", missing_key});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat(missing_key, ":2 (cluster_cert_key)")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("nope.key"), std::string::npos) << r.output;

  // DB-less: the declarative file is loaded and validated, nothing served.
  const std::string kong_yml = WriteConf(tmp_, "kong.yml",
                                         "_format_version: \"3.0\"\nservices:\n- name: a\n  url: http://127.0.0.1:9\n");
  const std::string bad_yml = WriteConf(tmp_, "bad.yml", "_format_version: \"3.0\"\nservices:\n- name: a\n  url: nope://x\n");
  const std::string db_less = WriteConf(tmp_, "db-less.conf",
                                        absl::StrCat("role = data_plane\ndatabase = off\ndeclarative_config = ", kong_yml, "\n"));
  r = RunToExit(tmp_, "check-db-less", {PORTICO_DP_BIN, "check", db_less});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, absl::StrCat("configuration at ", db_less, " is valid\n"));
  const std::string db_less_bad = WriteConf(
      tmp_, "db-less-bad.conf", absl::StrCat("role = data_plane\ndeclarative_config = ", bad_yml, "\nworkers = -1\n"));
  r = RunToExit(tmp_, "check-db-less-bad", {PORTICO_DP_BIN, "check", db_less_bad});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat(db_less_bad, ":3 (workers): --workers must be an integer in 0..256")),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat(db_less_bad, ":2 (declarative_config): --declarative-config ", bad_yml)),
            std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("is required"), std::string::npos) << "a consequence of dropping declarative_config\n"
                                                               << r.output;

  // An unreadable file, and no file at all.
  r = RunToExit(tmp_, "check-absent", {PORTICO_DP_BIN, "check", tmp_.File("absent.conf")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat("--conf ", tmp_.File("absent.conf"))), std::string::npos) << r.output;
  r = RunToExit(tmp_, "check-usage", {PORTICO_CP_BIN, "check"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("usage: portico-cp check CONF_FILE"), std::string::npos) << r.output;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST_F(ConfFileTest, CheckRefusesUsageErrorsOnce) {
  const std::string good_cp = WriteConf(tmp_, "good-cp.conf", CpConf(PickFreePort(), PickFreePort()));
  const std::string good_dp = WriteConf(tmp_, "good-dp.conf", DpConf(PickFreePort(), PickFreePort(), PickFreePort(), PickFreePort()));
  const std::string other = WriteConf(tmp_, "other.conf", "workers = lots\n");
  for (const auto& [bin, good] : {std::pair{std::string(PORTICO_CP_BIN), good_cp}, std::pair{std::string(PORTICO_DP_BIN), good_dp}}) {
    const std::string valid = absl::StrCat("configuration at ", good, " is valid");
    const std::string tag = bin == PORTICO_CP_BIN ? "cp-" : "dp-";  // log files are appended to
    RunResult r = RunToExit(tmp_, tag + "check-extra", {bin, "check", good, "extra"});
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(Count(r.output, "usage:"), 1u) << r.output;
    EXPECT_EQ(r.output.find(valid), std::string::npos) << r.output;
    // Also when the file has errors of its own.
    r = RunToExit(tmp_, tag + "check-bad-extra", {bin, "check", other, "extra"});
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(Count(r.output, "usage:"), 1u) << r.output;
    // The file checked is FILE, not a --conf given after it.
    for (const std::string& conf_flag : {std::string("--conf"), "--conf=" + other}) {
      std::vector<std::string> argv = {bin, "check", good, conf_flag};
      if (conf_flag == "--conf") argv.push_back(other);
      r = RunToExit(tmp_, tag + "check-two-confs-" + std::to_string(argv.size()), argv);
      EXPECT_EQ(r.exit_code, 2) << r.output;
      EXPECT_NE(r.output.find("--conf cannot follow CONF_FILE"), std::string::npos) << r.output;
      EXPECT_EQ(r.output.find(valid), std::string::npos) << r.output;
    }
    r = RunToExit(tmp_, tag + "check-empty-name", {bin, "check", ""});
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("CONF_FILE is empty"), std::string::npos) << r.output;
  }
}

TEST_F(ConfFileTest, KeyMaterialIsNeverPrinted) {
  const std::string key_text = ReadFileToString(certs_ + "/cp.key").value_or("");
  ASSERT_FALSE(key_text.empty());
  auto expect_no_key_line = [&key_text](const std::string& output) {
    for (absl::string_view line : absl::StrSplit(key_text, '\n')) {
      if (line.size() < 16 || absl::StartsWith(line, "-----")) continue;
      EXPECT_EQ(output.find(std::string(line.substr(0, 16))), std::string::npos) << "key text printed:\n" << output;
    }
  };
  RunResult r = RunToExit(tmp_, "check-pem", {PORTICO_CP_BIN, "check", certs_ + "/cp.key"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(Count(r.output, "this looks like a PEM file, not a configuration file"), 1u) << r.output;
  expect_no_key_line(r.output);
  r = RunToExit(tmp_, "start-pem", {PORTICO_DP_BIN, "--conf", certs_ + "/cp.key"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("this looks like a PEM file"), std::string::npos) << r.output;
  expect_no_key_line(r.output);

  // Kong takes the PEM itself in cluster_cert_key; Portico a path, and the value is not shown.
  std::string one_line = key_text;
  absl::StrReplaceAll({{"\n", ""}}, &one_line);
  const std::string inline_key = WriteConf(
      tmp_, "inline-key.conf",
      absl::StrCat("cluster_cert = ", certs_, "/cp.crt\ncluster_cert_key = ", one_line, "\ncluster_ca_cert = ", certs_,
                   "/ca.crt\n"));
  r = RunToExit(tmp_, "check-inline-key", {PORTICO_CP_BIN, "check", inline_key});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat(inline_key, ":2: cluster_cert_key: ")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Portico takes a file path here"), std::string::npos) << r.output;
  expect_no_key_line(r.output);
}

TEST_F(ConfFileTest, CheckRefusesWhatAStartWouldAndAnEmptyValueIsTheDefault) {
  const std::string cp_conf = CpConf(PickFreePort(), PickFreePort());
  // An empty value is no value: admin_ssl_cert without admin_ssl_listen is not "set".
  const std::string empty_values = WriteConf(tmp_, "empty-values.conf", cp_conf + "admin_ssl_cert =\nadmin_gui_origin =\n");
  RunResult r = RunToExit(tmp_, "check-empty-values", {PORTICO_CP_BIN, "check", empty_values});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // An empty --db (flag or environment) would be a throwaway SQLite database.
  r = RunToExit(tmp_, "empty-db-flag", {PORTICO_CP_BIN, "check", empty_values, "--db", ""});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--db must name a file"), std::string::npos) << r.output;
  r = RunToExit(tmp_, "empty-db-env", {PORTICO_CP_BIN, "--conf", empty_values}, {{"PORTICO_DB", ""}});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--db must name a file"), std::string::npos) << r.output;
  r = RunToExit(tmp_, "empty-db-export", {PORTICO_CP_BIN, "config", "export", "--db", ""});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--db must name a file"), std::string::npos) << r.output;

  // Kong's cluster_data_plane_purge_delay: at least 60, as Kong.
  const std::string purge_ok = WriteConf(tmp_, "purge-ok.conf", cp_conf + "cluster_data_plane_purge_delay = 60\n");
  r = RunToExit(tmp_, "check-purge-ok", {PORTICO_CP_BIN, "check", purge_ok});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string purge_bad = WriteConf(tmp_, "purge-bad.conf", cp_conf + "cluster_data_plane_purge_delay = 59\n");
  r = RunToExit(tmp_, "check-purge-bad", {PORTICO_CP_BIN, "check", purge_bad});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("(cluster_data_plane_purge_delay): --cluster-data-plane-purge-delay must be an integer >= 60"),
            std::string::npos)
      << r.output;

  const std::string cp_conf_path = WriteConf(tmp_, "cp.conf", cp_conf);
  r = RunToExit(tmp_, "check-cluster-listen", {PORTICO_CP_BIN, "check", cp_conf_path, "--cluster-listen", "garbage"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--cluster-listen: "), std::string::npos) << r.output;

  const std::string dp_conf = DpConf(PickFreePort(), PickFreePort(), PickFreePort(), PickFreePort());
  const std::string bad_dp = WriteConf(tmp_, "bad-dp.conf", absl::StrReplaceAll(dp_conf, {{"cluster_control_plane = ", "cluster_control_plane = not an address # "}}) +
                                                               "snapshot_cache = /proc/nope\n");
  r = RunToExit(tmp_, "check-bad-dp", {PORTICO_DP_BIN, "check", bad_dp});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat(bad_dp, ":3 (cluster_control_plane): --control-plane: ")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(absl::StrCat(bad_dp, ":13 (snapshot_cache): --snapshot-cache /proc/nope: cannot be created")),
            std::string::npos) << r.output;
  // A cache folder that can be made is fine, and check leaves nothing behind.
  const std::string good_cache = WriteConf(tmp_, "cache-dp.conf", dp_conf + "snapshot_cache = " + tmp_.File("cache") + "\n");
  r = RunToExit(tmp_, "check-cache-dp", {PORTICO_DP_BIN, "check", good_cache});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(Exists(tmp_.File("cache")));
  // The access log: its folder must exist, and check does not create the file (the service's
  // user does, at start).
  const std::string log_dp = WriteConf(tmp_, "log-dp.conf", dp_conf + "proxy_access_log = " + tmp_.File("access.log") + "\n");
  r = RunToExit(tmp_, "check-log-dp", {PORTICO_DP_BIN, "check", log_dp});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(Exists(tmp_.File("access.log")));
  const std::string no_folder = WriteConf(tmp_, "log-nofolder.conf", dp_conf + "proxy_access_log = " + tmp_.File("nope/access.log") + "\n");
  r = RunToExit(tmp_, "check-log-nofolder", {PORTICO_DP_BIN, "check", no_folder});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
}

TEST_F(ConfFileTest, ACheckWaitingOnAFifoStopsOnSigterm) {
  const std::string fifo = tmp_.File("kong.yml");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string conf = WriteConf(tmp_, "fifo.conf", "role = data_plane\ndeclarative_config = " + fifo + "\n");
  Process check("check-fifo", {PORTICO_DP_BIN, "check", conf}, tmp_.File("check-fifo.log"));
  std::this_thread::sleep_for(500ms);
  ASSERT_TRUE(check.Running()) << check.Log();  // waiting for a writer
  const int status = check.Stop(SIGTERM, 5s);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGTERM) << "not killed by SIGTERM (blocked?)";
}

}  // namespace
}  // namespace portico::testing
