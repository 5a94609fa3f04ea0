#pragma once

namespace portico {

// Turns off absl::Mutex's deadlock detection for the whole process. Debian's abseil is built
// without NDEBUG, so every absl::Mutex lock (gRPC takes them on every read, write and timer)
// otherwise updates a global lock graph under a global lock: measured at 5-8 % of the CP's
// and of sync_sim's CPU while 1,000 DP streams sync (docs/performance.md). Call first in main.
void DisableAbslDeadlockDetection();

}  // namespace portico
