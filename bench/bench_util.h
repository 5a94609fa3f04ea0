#pragma once
// Small helpers shared by the C++ benchmarks (apply_100k, upstreams_scale, sync_sim,
// admin_writes).
#include <sys/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/harness.h"

namespace portico::testing {

// The p-quantile (0 < p <= 1) of `v` by the nearest-rank method; 0 when empty.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t idx = static_cast<size_t>(std::ceil(p * v.size())) - 1;
  return v[std::min(idx, v.size() - 1)];
}

// The store's config version as the CP's GET /status reports it (0 when unreadable).
inline uint64_t CurrentVersion(uint16_t admin_port) {
  HttpResult r = Http(admin_port, "GET", "/status");
  const std::string key = "\"configuration_version\":";
  const size_t at = r.body.find(key);
  uint64_t v = 0;
  if (at != std::string::npos) {
    const std::string rest = r.body.substr(at + key.size());
    absl::SimpleAtoi(rest.substr(0, rest.find_first_of(",}")), &v);
  }
  return v;
}

// A "VmRSS"/"VmHWM"-style field of /proc/<pid>/status, in KiB; -1 when absent.
inline long ProcStatusKb(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
  }
  return -1;
}

// The last line of `log` that contains `needle` ("" if none).
inline std::string LastLineWith(const std::string& log, const std::string& needle) {
  size_t pos = log.rfind(needle);
  if (pos == std::string::npos) return "";
  size_t begin = log.rfind('\n', pos);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return log.substr(begin, log.find('\n', pos) - begin);
}

}  // namespace portico::testing
