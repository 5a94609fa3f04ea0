#pragma once
// Appending "Name: value\r\n" lines to a head being serialised, without temporaries. Debian's
// absl::StrAppend zero-fills the grown string first, so these use plain appends.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace portico {

inline void AppendHeaderLine(std::string* out, absl::string_view name, absl::string_view value) {
  out->append(name.data(), name.size()).append(": ", 2).append(value.data(), value.size()).append("\r\n", 2);
}

// A decimal value ("Content-Length: 42").
inline void AppendHeaderLine(std::string* out, absl::string_view name, uint64_t value) {
  char digits[24];
  char* end = digits + sizeof(digits);
  char* p = end;
  do {
    *--p = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  AppendHeaderLine(out, name, absl::string_view(p, static_cast<size_t>(end - p)));
}

}  // namespace portico
