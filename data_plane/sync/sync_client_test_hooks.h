#pragma once
// Fault injection for tests of the CP <-> DP stream: what a SyncClient does differently when a
// test asks it to. Production passes no hooks (SyncClient::Start's default); portico-dp installs
// one only when a PORTICO_TEST_* environment variable asks for it (data_plane/main.cc).
#include <string>

namespace portico::dp {

class SyncClientTestHooks {
 public:
  virtual ~SyncClientTestHooks() = default;
  // The node id announced in Hello; the certificate's by default. Another one must make the CP
  // refuse the stream.
  virtual std::string HelloNodeId(const std::string& certificate_node_id) const { return certificate_node_id; }
};

}  // namespace portico::dp
