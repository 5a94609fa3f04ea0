#include "common/base/thread_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/base/log.h"

namespace portico {

void LowerThisThreadPriority(int nice, const char* component, absl::string_view what) {
  if (nice <= 0) return;
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) != 0) {
    PORTICO_LOG(kWarn, component, "cannot lower the ", what, "'s priority: ", std::strerror(errno));
  }
}

}  // namespace portico
