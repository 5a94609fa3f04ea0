#pragma once
#include <string>
#include "absl/strings/string_view.h"

namespace portico {

// Random (version 4) UUID in lowercase canonical form. Thread-safe.
std::string NewUuid();
// True for the canonical 8-4-4-4-12 hex form (any case), as Kong's uuid validator.
bool IsUuid(absl::string_view s);
// 16 random bytes from the OS CSPRNG.
std::string RandomBytes(size_t n);
// Lowercase hex of arbitrary bytes.
std::string ToHex(absl::string_view bytes);

}  // namespace portico
