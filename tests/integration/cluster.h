#pragma once
// A CP + DPs on loopback for integration tests: certificates generated per run, a SQLite file in a
// temp dir, ephemeral ports. Every process it starts is stopped (by PID) when it is destroyed.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace portico::testing {

// Runs `portico-cp gen-certs DIR --dp-id ID`; returns false (and the log) on failure.
bool GenerateCerts(const std::string& dir, const std::string& dp_id, std::string* log);

struct DataPlane {
  std::unique_ptr<Process> process;
  uint16_t proxy_port = 0;
  uint16_t proxy_ssl_port = 0;  // its TLS listener (on 127.0.0.1, a picked port, unless the options set one)
  uint16_t status_port = 0;
  bool started = false;  // its status listener answered (StartDp prints its log otherwise)
};

struct DataPlaneOptions {
  std::string cert, key, ca;      // default: the cluster's dp.crt/dp.key/ca.crt
  std::vector<std::string> extra_args;
  std::map<std::string, std::string> env;
  int workers = 2;
  std::string log_name = "dp.log";
};

class Cluster {
 public:
  Cluster();   // generates certificates (dp id "dp-it") and picks the CP ports
  ~Cluster();  // stops every DP, then the CP

  const TempDir& tmp() const { return tmp_; }
  const std::string& certs() const { return certs_; }
  uint16_t admin_port() const { return admin_port_; }
  uint16_t cluster_port() const { return cluster_port_; }
  Process* cp() { return cp_.get(); }

  // Starts (or restarts) the CP on the same ports and database; waits until /status answers 200.
  // False also when the certificates could not be generated.
  bool StartCp(std::vector<std::string> extra_args = {}, std::map<std::string, std::string> env = {});
  void KillCp(int sig = 9);

  // Starts a DP and waits until its status listener answers. Returns its index.
  DataPlane& StartDp(DataPlaneOptions options = {});  // check .started

  HttpResult Admin(const std::string& method, const std::string& target,
                   const nlohmann::json& body = nullptr);
  uint64_t CpVersion();
  nlohmann::json DpStatus(const DataPlane& dp);
  // Waits until the DP serves exactly the CP's current version.
  bool WaitDpSynced(const DataPlane& dp, std::chrono::milliseconds timeout = std::chrono::seconds(15));
  HttpResult Proxy(const DataPlane& dp, const std::string& target,
                   const std::string& host = "client.example");
  // All logs (CP and DPs), for failure messages.
  std::string Logs() const;

 private:
  TempDir tmp_;
  std::string certs_;
  bool certs_ok_ = false;
  uint16_t admin_port_ = 0, cluster_port_ = 0;
  std::unique_ptr<Process> cp_;
  std::vector<std::unique_ptr<DataPlane>> dps_;
};

nlohmann::json ParseJson(const HttpResult& r);

}  // namespace portico::testing
