#include "tests/integration/cluster.h"

#include <sys/wait.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace portico::testing {

using json = nlohmann::json;
using namespace std::chrono_literals;

json ParseJson(const HttpResult& r) { return json::parse(r.body, nullptr, false); }

bool GenerateCerts(const std::string& dir, const std::string& dp_id, std::string* log) {
  std::string log_file = dir + ".gen.log";
  Process gen("gen-certs", {PORTICO_CP_BIN, "gen-certs", dir, "--dp-id", dp_id}, log_file);
  int status = gen.Stop(0, 30s);  // signal 0: only wait
  if (log != nullptr) *log = gen.Log();
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

Cluster::Cluster() {
  certs_ = tmp_.path() + "/certs";
  std::string log;
  certs_ok_ = GenerateCerts(certs_, "dp-it", &log);
  if (!certs_ok_) std::fprintf(stderr, "gen-certs failed:\n%s\n", log.c_str());
  admin_port_ = PickFreePort();
  cluster_port_ = PickFreePort();
}

Cluster::~Cluster() {
  for (auto& dp : dps_) dp->process.reset();
  cp_.reset();
}

bool Cluster::StartCp(std::vector<std::string> extra_args, std::map<std::string, std::string> env) {
  if (!certs_ok_) return false;
  std::vector<std::string> argv{PORTICO_CP_BIN, "--db", tmp_.File("portico.db"), "--admin-listen",
                                absl::StrCat("127.0.0.1:", admin_port_), "--cluster-listen",
                                absl::StrCat("127.0.0.1:", cluster_port_)};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  env.emplace("PORTICO_CLUSTER_CERT", certs_ + "/cp.crt");
  env.emplace("PORTICO_CLUSTER_KEY", certs_ + "/cp.key");
  env.emplace("PORTICO_CLUSTER_CA", certs_ + "/ca.crt");
  cp_ = std::make_unique<Process>("cp", argv, tmp_.File("cp.log"), env);
  return WaitFor([&] { return Http(admin_port_, "GET", "/status").status == 200; }, 15s);
}

void Cluster::KillCp(int sig) {
  if (cp_) cp_->Stop(sig, 5s);
}

DataPlane& Cluster::StartDp(DataPlaneOptions o) {
  auto dp = std::make_unique<DataPlane>();
  // A picked port can still be bound by a parallel test's process before this DP binds it (each
  // process picks at random in the same range): then the DP exits at once, and it starts again
  // on other ports.
  for (int attempt = 1; attempt <= 3; ++attempt) {
    dp->proxy_port = PickFreePort();
    dp->status_port = PickFreePort();
    dp->proxy_ssl_port = PickFreePort();
    std::vector<std::string> argv{
        PORTICO_DP_BIN,
        "--control-plane", absl::StrCat("127.0.0.1:", cluster_port_),
        "--cluster-cert", o.cert.empty() ? certs_ + "/dp.crt" : o.cert,
        "--cluster-key", o.key.empty() ? certs_ + "/dp.key" : o.key,
        "--cluster-ca", o.ca.empty() ? certs_ + "/ca.crt" : o.ca,
        "--proxy-listen", absl::StrCat("127.0.0.1:", dp->proxy_port),
        "--proxy-ssl-listen", absl::StrCat("127.0.0.1:", dp->proxy_ssl_port),
        "--status-listen", absl::StrCat("127.0.0.1:", dp->status_port),
        "--workers", std::to_string(o.workers)};
    argv.insert(argv.end(), o.extra_args.begin(), o.extra_args.end());
    dp->process = std::make_unique<Process>("dp", argv, tmp_.File(o.log_name), o.env);
    const uint16_t status_port = dp->status_port;
    Process* process = dp->process.get();
    bool exited = false;
    dp->started = WaitFor(
        [&] {
          if (Http(status_port, "GET", "/status").ok) return true;
          exited = !process->Running();
          return exited;
        },
        15s);
    dp->started = dp->started && !exited;
    if (dp->started) break;
    const std::string log = dp->process->Log();
    if (exited && attempt < 3 && log.find("Address already in use") != std::string::npos) {
      std::fprintf(stderr, "DP attempt %d: a picked port was taken meanwhile; starting it on other ports\n", attempt);
      continue;
    }
    std::fprintf(stderr, "DP on port %u did not start:\n%s\n", dp->proxy_port, log.c_str());
    break;
  }
  dps_.push_back(std::move(dp));
  return *dps_.back();
}

HttpResult Cluster::Admin(const std::string& method, const std::string& target, const json& body) {
  return Http(admin_port_, method, target, body.is_null() ? "" : body.dump());
}

uint64_t Cluster::CpVersion() {
  HttpResult r = Admin("GET", "/status");
  json j = ParseJson(r);
  if (!r.ok || !j.is_object() || !j.contains("configuration_version")) return 0;
  return j["configuration_version"].get<uint64_t>();
}

json Cluster::DpStatus(const DataPlane& dp) { return ParseJson(Http(dp.status_port, "GET", "/status")); }

bool Cluster::WaitDpSynced(const DataPlane& dp, std::chrono::milliseconds timeout) {
  uint64_t want = CpVersion();
  return WaitFor(
      [&] {
        json s = DpStatus(dp);
        return want > 0 && s.is_object() && s.value("config_version", uint64_t{0}) == want;
      },
      timeout);
}

HttpResult Cluster::Proxy(const DataPlane& dp, const std::string& target, const std::string& host) {
  return RawHttp(dp.proxy_port, absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: ", host,
                                             "\r\nConnection: close\r\n\r\n"));
}

std::string Cluster::Logs() const {
  std::string out;
  if (cp_) absl::StrAppend(&out, "--- CP log ---\n", cp_->Log(), "\n");
  for (const auto& dp : dps_) {
    if (dp->process) absl::StrAppend(&out, "--- DP log (", dp->proxy_port, ") ---\n", dp->process->Log(), "\n");
  }
  return out;
}

}  // namespace portico::testing
