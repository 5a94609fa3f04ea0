#pragma once
// Small helpers shared by the C++ benchmarks (apply_100k, upstreams_scale).
#include <sys/types.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace portico::testing {

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
