#pragma once
#include "absl/strings/string_view.h"

namespace portico {

// Gives the calling thread (Linux: nice values are per thread) the nice value `nice`; a failure
// is logged as a warning under `component`, naming the thread as `what`. Does nothing for
// nice <= 0 (an unprivileged process cannot raise a priority back).
void LowerThisThreadPriority(int nice, const char* component, absl::string_view what);

}  // namespace portico
