#include "common/base/absl_mutex.h"

#include "absl/synchronization/mutex.h"

namespace portico {

void DisableAbslDeadlockDetection() { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); }

}  // namespace portico
