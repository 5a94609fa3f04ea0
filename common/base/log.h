#pragma once
// Minimal leveled logger to stderr. Thread-safe (one write(2) per line). Never log secrets.
#include "absl/strings/string_view.h"

#include "absl/strings/str_cat.h"

namespace portico {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug|info|warn|error"; returns false on an unknown name.
bool ParseLogLevel(absl::string_view name, LogLevel* out);
void LogLine(LogLevel level, absl::string_view component, absl::string_view message);

}  // namespace portico

#define PORTICO_LOG(level, component, ...)                                        \
  do {                                                                            \
    if (::portico::LogLevel::level >= ::portico::GetLogLevel())                   \
      ::portico::LogLine(::portico::LogLevel::level, component, absl::StrCat(__VA_ARGS__)); \
  } while (0)
