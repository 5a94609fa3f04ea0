// gRPC through the real binaries (issue 14): portico-cp configured through the Admin API,
// portico-dp, Debian's python3-grpcio as the upstream (tests/integration/grpc_upstream.py, h2c or
// TLS) and as the client (tests/integration/grpc_client.py, h2c to the DP's cleartext listener):
// unary, server-streaming, client-streaming and bidi calls with 1 MiB messages, metadata and
// trailers, deadlines (the upstream sees the cancel), an upstream that is down, a grpcs upstream,
// and Kong's gRPC route rules.
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class GrpcIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    DataPlaneOptions options;
    options.workers = 1;
    dp_ = &cluster_.StartDp(options);
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
  }
  void TearDown() override {
    if (HasFailure()) {
      std::fprintf(stderr, "%s", cluster_.Logs().c_str());
      if (upstream_) std::fprintf(stderr, "--- gRPC upstream log ---\n%s\n", upstream_->Log().c_str());
    }
    if (upstream_) upstream_->Stop();
  }

  // The Python gRPC server (TLS with `cert`/`key`); its port.
  uint16_t StartUpstream(const std::string& cert = "", const std::string& key = "") {
    const std::string port_file = cluster_.tmp().File("grpc.port");
    std::vector<std::string> argv = {"/usr/bin/python3", PORTICO_GRPC_UPSTREAM_PY, "--port-file", port_file};
    if (!cert.empty()) argv.insert(argv.end(), {"--cert", cert, "--key", key});
    upstream_ = std::make_unique<Process>("grpc-upstream", argv, cluster_.tmp().File("grpc-upstream.log"));
    if (!WaitFor([&] { return access(port_file.c_str(), F_OK) == 0; }, 15s)) return 0;
    std::ifstream in(port_file);
    uint16_t port = 0;
    in >> port;
    return port;
  }
  void Admin(const std::string& method, const std::string& path, const json& body, int status) {
    HttpResult r = cluster_.Admin(method, path, body);
    ASSERT_EQ(r.status, status) << method << " " << path << " " << body.dump() << " -> " << r.body;
  }
  // Service `name` (protocol `protocol`) at 127.0.0.1:port with one route for the test service's
  // path with `route_protocols`; waits for the DP to serve it.
  void AddGrpcService(const std::string& name, const std::string& protocol, uint16_t port,
                      const json& route_protocols = json::array({"grpc", "grpcs"})) {
    Admin("POST", "/services",
          {{"name", name}, {"protocol", protocol}, {"host", "127.0.0.1"}, {"port", port}, {"read_timeout", 5000}},
          201);
    Admin("POST", absl::StrCat("/services/", name, "/routes"),
          {{"protocols", route_protocols}, {"paths", {"/portico.test.Echo/"}}, {"strip_path", false}}, 201);
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.Logs();
  }
  // Runs the Python client with `scenarios` against the DP; its JSON results.
  json RunClient(const std::vector<std::string>& scenarios) {
    std::vector<std::string> argv = {"/usr/bin/python3", PORTICO_GRPC_CLIENT_PY, "--target",
                                     absl::StrCat("127.0.0.1:", dp_->proxy_port)};
    argv.insert(argv.end(), scenarios.begin(), scenarios.end());
    const std::string log = cluster_.tmp().File(absl::StrCat("grpc-client-", ++clients_, ".log"));
    Process client("grpc-client", argv, log);
    const bool exited = WaitFor([&] { return !client.Running(); }, 60s);
    const std::string output = client.Log();
    if (!exited) {
      ADD_FAILURE() << "the gRPC client did not finish: " << output;
      return json::object();
    }
    const size_t start = output.rfind("\n{");
    json parsed = json::parse(start == std::string::npos ? output : output.substr(start + 1), nullptr, false);
    if (parsed.is_discarded()) {
      ADD_FAILURE() << "no JSON from the gRPC client: " << output;
      return json::object();
    }
    return parsed;
  }

  Cluster cluster_;
  DataPlane* dp_ = nullptr;
  std::unique_ptr<Process> upstream_;
  int clients_ = 0;
};

TEST_F(GrpcIntegrationTest, AllFourCallKindsWithMetadataTrailersAndMegabyteMessages) {
  const uint16_t port = StartUpstream();
  ASSERT_NE(port, 0);
  AddGrpcService("echo", "grpc", port);
  json r = RunClient({"unary", "server_stream", "client_stream", "bidi", "fail", "stats"});
  EXPECT_EQ(r["unary"]["code"], "OK") << r.dump();
  EXPECT_EQ(r["unary"]["reply"], "hello through portico");
  EXPECT_EQ(r["unary"]["initial"]["x-echo"], "metadata-in");
  EXPECT_EQ(r["unary"]["trailing"]["x-trailer"], "done");  // a trailer field, through the DP
  EXPECT_EQ(r["server_stream"]["code"], "OK") << r.dump();
  EXPECT_EQ(r["server_stream"]["sizes"], json::array({1048576, 1048576, 1048576}));
  EXPECT_EQ(r["client_stream"]["code"], "OK") << r.dump();
  EXPECT_EQ(r["client_stream"]["reply"], "1049577");
  EXPECT_EQ(r["bidi"]["code"], "OK") << r.dump();
  EXPECT_EQ(r["bidi"]["replies"], json::array({"ONE", "TWO", 100000}));
  EXPECT_EQ(r["fail"]["code"], "NOT_FOUND");
  EXPECT_EQ(r["fail"]["details"], "no such thing");
  // The upstream got the proxy's forwarding headers.
  EXPECT_EQ(r["stats"]["stats"]["metadata"]["x-forwarded-for"], "127.0.0.1") << r.dump();
  EXPECT_EQ(r["stats"]["stats"]["metadata"]["x-echo"], "metadata-in");
}

TEST_F(GrpcIntegrationTest, ClientDeadlineEndsTheCallAndTheUpstreamSeesTheCancel) {
  const uint16_t port = StartUpstream();
  ASSERT_NE(port, 0);
  AddGrpcService("echo", "grpc", port);
  const auto start = std::chrono::steady_clock::now();
  json r = RunClient({"deadline"});
  EXPECT_EQ(r["deadline"]["code"], "DEADLINE_EXCEEDED") << r.dump();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(WaitFor([&] { return RunClient({"stats"})["stats"]["stats"]["cancelled"] == 1; }, 10s));
}

TEST_F(GrpcIntegrationTest, UpstreamDownIsUnavailable) {
  const uint16_t port = PickFreePort();  // nobody listens there
  AddGrpcService("down", "grpc", port);
  json r = RunClient({"unary"});
  EXPECT_EQ(r["unary"]["code"], "UNAVAILABLE") << r.dump();
}

TEST_F(GrpcIntegrationTest, GrpcsUpstreamOverTlsWithAlpnH2) {
  const std::string cert = cluster_.tmp().File("upstream.crt"), key = cluster_.tmp().File("upstream.key");
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext "
      "subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
      key, " -out ", cert, " >/dev/null 2>&1");
  ASSERT_EQ(std::system(command.c_str()), 0);
  const uint16_t port = StartUpstream(cert, key);
  ASSERT_NE(port, 0);
  AddGrpcService("secure", "grpcs", port);
  json r = RunClient({"unary", "server_stream"});
  EXPECT_EQ(r["unary"]["code"], "OK") << r.dump();
  EXPECT_EQ(r["unary"]["trailing"]["x-trailer"], "done");
  EXPECT_EQ(r["server_stream"]["sizes"], json::array({1048576, 1048576, 1048576})) << r.dump();
}

TEST_F(GrpcIntegrationTest, CleartextCallOnAGrpcsRouteIsRefusedAsKongDoes) {
  const uint16_t port = StartUpstream();
  ASSERT_NE(port, 0);
  AddGrpcService("tls-only", "grpc", port, json::array({"grpcs"}));
  json r = RunClient({"unary"});
  EXPECT_EQ(r["unary"]["code"], "CANCELLED") << r.dump();  // grpc-status 1
  EXPECT_EQ(r["unary"]["details"], "gRPC request matched gRPCs route");
}

}  // namespace
}  // namespace portico::testing
