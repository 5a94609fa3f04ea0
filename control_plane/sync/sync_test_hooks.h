#pragma once
// Fault injection for tests, kept out of the production options: SyncServer::Start takes an
// optional SyncTestHooks (null in production). control_plane/main.cc installs one only when a
// PORTICO_TEST_* environment variable asks for it (docs/sync.md "Test hook on the CP").
#include <cstddef>
#include <cstdint>

namespace portico::cp {

class SyncTestHooks {
 public:
  virtual ~SyncTestHooks() = default;
  // A chunk write to a DP completed: `written` of the `count` chunks of the snapshot of config
  // `version` are out. Called on a gRPC callback thread with the server's mutex held: it must
  // not block nor call the SyncServer (it may end the process).
  virtual void OnChunkWritten(size_t written, size_t count, uint64_t version) {}
};

}  // namespace portico::cp
