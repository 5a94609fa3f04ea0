#include "common/base/clock.h"

#include <ctime>

namespace portico {

int64_t RealClock::NowSeconds() const { return static_cast<int64_t>(::time(nullptr)); }

const Clock& RealClock::Get() {
  static const RealClock clock;
  return clock;
}

}  // namespace portico
