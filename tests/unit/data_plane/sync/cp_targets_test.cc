// --control-plane lists and the order a DP dials them in (data_plane/sync/cp_targets.h), with an
// injected resolver.
#include "data_plane/sync/cp_targets.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

TEST(ParseControlPlaneListTest, OneOrSeveralEntries) {
  absl::StatusOr<std::vector<ControlPlaneEntry>> one = ParseControlPlaneList("cp.example:8005");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].host, "cp.example");
  EXPECT_EQ((*one)[0].port, 8005);

  absl::StatusOr<std::vector<ControlPlaneEntry>> three = ParseControlPlaneList("10.0.0.1:8005, [::1]:9005 ,b:1");
  ASSERT_TRUE(three.ok()) << three.status();
  ASSERT_EQ(three->size(), 3u);
  EXPECT_EQ((*three)[0].host, "10.0.0.1");
  EXPECT_EQ((*three)[1].host, "::1");
  EXPECT_EQ((*three)[1].port, 9005);
  EXPECT_EQ((*three)[1].text, "[::1]:9005");
  EXPECT_EQ((*three)[2].host, "b");
}

TEST(ParseControlPlaneListTest, EveryEntryIsValidatedAndTheBadOneNamed) {
  struct Case {
    const char* text;
    const char* says;
  } cases[] = {
      {"", "empty entry"},
      {"a:1,,b:2", "empty entry"},
      {"a:1,", "empty entry"},
      {"a:1,b", "invalid address 'b': want host:port"},
      {"a:1,b:99999", "invalid port in 'b:99999'"},
      {"a:1,b:0", "port 0 in 'b:0'"},
      {"a:1,[::1:5", "invalid address '[::1:5'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<ControlPlaneEntry>> r = ParseControlPlaneList(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << c.text << ": " << r.status();
  }
}

// A resolver answering from a table, counting lookups per host.
struct FakeResolver {
  std::map<std::string, absl::StatusOr<std::vector<std::string>>> answers;
  std::map<std::string, int> lookups;
  ResolveHostFn Fn() {
    return [this](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
      ++lookups[host];
      auto it = answers.find(host);
      if (it == answers.end()) return absl::NotFoundError("no such host");
      return it->second;
    };
  }
};

std::vector<ControlPlaneEntry> Entries(const char* text) {
  absl::StatusOr<std::vector<ControlPlaneEntry>> r = ParseControlPlaneList(text);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : std::vector<ControlPlaneEntry>{};
}

// The addresses of the next `n` targets ("!" for an error).
std::vector<std::string> Take(ControlPlaneRotation& rotation, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<DialTarget> t = rotation.Next();
    out.push_back(t.ok() ? t->address : "!");
  }
  return out;
}

TEST(ControlPlaneRotationTest, RoundRobinOverEntriesAndTheAddressesOfEachName) {
  FakeResolver dns;
  dns.answers["10.0.0.1"] = std::vector<std::string>{"10.0.0.1"};
  dns.answers["cps.example"] = std::vector<std::string>{"10.0.0.2", "10.0.0.3"};
  dns.answers["::1"] = std::vector<std::string>{"::1"};
  ControlPlaneRotation rotation(Entries("10.0.0.1:8005,cps.example:9005,[::1]:7005"), "", dns.Fn());
  EXPECT_EQ(Take(rotation, 8), (std::vector<std::string>{"10.0.0.1:8005", "10.0.0.2:9005", "10.0.0.3:9005",
                                                         "[::1]:7005", "10.0.0.1:8005", "10.0.0.2:9005",
                                                         "10.0.0.3:9005", "[::1]:7005"}));
  // A name is resolved again each time the rotation comes back to it (not once per address).
  EXPECT_EQ(dns.lookups["cps.example"], 2);
  EXPECT_EQ(dns.lookups["10.0.0.1"], 2);
}

TEST(ControlPlaneRotationTest, TargetsCarryTheGrpcAddressAndTheNameToVerify) {
  FakeResolver dns;
  dns.answers["cps.example"] = std::vector<std::string>{"10.0.0.2", "fd00::2"};
  ControlPlaneRotation rotation(Entries("cps.example:9005"), "", dns.Fn());
  absl::StatusOr<DialTarget> a = rotation.Next();
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->entry, "cps.example:9005");
  EXPECT_EQ(a->grpc_target, "ipv4:10.0.0.2:9005");
  EXPECT_EQ(a->server_name, "cps.example");
  absl::StatusOr<DialTarget> b = rotation.Next();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->address, "[fd00::2]:9005");
  EXPECT_EQ(b->grpc_target, "ipv6:[fd00::2]:9005");

  ControlPlaneRotation overridden(Entries("cps.example:9005"), "cp.internal", dns.Fn());
  EXPECT_EQ(overridden.Next()->server_name, "cp.internal");
}

TEST(ControlPlaneRotationTest, ANameThatDoesNotResolveIsAFailedTurnThenTheNextEntry) {
  FakeResolver dns;
  dns.answers["a"] = std::vector<std::string>{"10.0.0.1"};
  dns.answers["c"] = std::vector<std::string>{"10.0.0.3"};
  ControlPlaneRotation rotation(Entries("a:1,gone.example:2,c:3"), "", dns.Fn());
  EXPECT_TRUE(rotation.Next().ok());
  absl::StatusOr<DialTarget> gone = rotation.Next();
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.status().message().find("control plane gone.example:2: no such host"), std::string::npos)
      << gone.status();
  EXPECT_EQ(Take(rotation, 3), (std::vector<std::string>{"10.0.0.3:3", "10.0.0.1:1", "!"}));
  // A resolution that comes back empty counts as a failure too.
  dns.answers["gone.example"] = std::vector<std::string>{};
  EXPECT_EQ(Take(rotation, 2), (std::vector<std::string>{"10.0.0.3:3", "10.0.0.1:1"}));
  EXPECT_EQ(rotation.Next().status().code(), absl::StatusCode::kNotFound);
}

TEST(ControlPlaneRotationTest, StartSpreadsDataPlanesOverEntriesAndAddresses) {
  FakeResolver dns;
  dns.answers["a"] = std::vector<std::string>{"10.0.0.1"};
  dns.answers["b"] = std::vector<std::string>{"10.0.0.2"};
  ControlPlaneRotation from_b(Entries("a:1,b:1"), "", dns.Fn(), /*start=*/1);
  EXPECT_EQ(Take(from_b, 3), (std::vector<std::string>{"10.0.0.2:1", "10.0.0.1:1", "10.0.0.2:1"}));

  dns.answers["many"] = std::vector<std::string>{"10.0.1.1", "10.0.1.2", "10.0.1.3"};
  ControlPlaneRotation third(Entries("many:5"), "", dns.Fn(), /*start=*/2);
  EXPECT_EQ(Take(third, 4), (std::vector<std::string>{"10.0.1.3:5", "10.0.1.1:5", "10.0.1.2:5", "10.0.1.3:5"}));
}

TEST(ResolveHostAddressesTest, LiteralsResolveToThemselves) {
  absl::StatusOr<std::vector<std::string>> v4 = ResolveHostAddresses("127.0.0.1");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(*v4, std::vector<std::string>{"127.0.0.1"});
  absl::StatusOr<std::vector<std::string>> v6 = ResolveHostAddresses("::1");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(*v6, std::vector<std::string>{"::1"});
  EXPECT_FALSE(ResolveHostAddresses("name.invalid").ok());
}

}  // namespace
}  // namespace portico::dp
