#pragma once
// Invariant checks shared by the fuzz targets. A violated invariant prints its id and what broke,
// then traps, so libFuzzer keeps the input (crash-<sha1>) and the run fails.
//
// Known issues: an id listed in the environment variable PORTICO_FUZZ_KNOWN (comma-separated;
// deploy/fuzz.sh fills it from tests/fuzz/known_issues.txt) is reported once per process and not
// trapped. That keeps a bug owned by someone else from ending every run (CI, and long runs that
// should find the next bug) before it is fixed. Sanitizer reports (ASan, UBSan, leaks) are never
// suppressed this way.
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace portico::fuzz {

inline bool IsKnownIssue(absl::string_view id) {
  static const std::set<std::string, std::less<>> known = [] {
    std::set<std::string, std::less<>> ids;
    const char* env = std::getenv("PORTICO_FUZZ_KNOWN");
    if (env == nullptr) return ids;
    for (absl::string_view part : absl::StrSplit(env, ',', absl::SkipWhitespace())) ids.emplace(part);
    return ids;
  }();
  return known.find(id) != known.end();
}

// Returns normally only for a known issue (after reporting it once).
inline void Violation(const char* id, const std::string& detail) {
  if (IsKnownIssue(id)) {
    static std::set<std::string> reported;
    if (reported.insert(id).second) {
      std::fprintf(stderr, "fuzz: known issue [%s] hit (not trapped; listed in PORTICO_FUZZ_KNOWN): %s\n", id,
                   detail.c_str());
    }
    return;
  }
  std::fprintf(stderr, "fuzz: INVARIANT VIOLATED [%s]: %s\n", id, detail.c_str());
  std::fflush(stderr);
  __builtin_trap();
}

// C-escaped and cut to `max` bytes, for messages.
inline std::string Show(absl::string_view bytes, size_t max = 300) {
  std::string out = "\"" + absl::CEscape(bytes.substr(0, max)) + "\"";
  if (bytes.size() > max) out += "...(" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

}  // namespace portico::fuzz

// FUZZ_CHECK(cond, "id", detail-expression): traps when `cond` is false (detail is evaluated only
// then). Evaluates to `cond`, so a caller can stop checking after a known issue:
//   if (!FUZZ_CHECK(a == b, "x-mismatch", Show(a))) return;
#define FUZZ_CHECK(cond, id, detail) \
  ((cond) ? true : (::portico::fuzz::Violation((id), (detail)), false))
