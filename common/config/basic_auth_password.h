#pragma once
// How a basic-auth password is kept: "sha256$<salt: 32 hex>$<SHA-256(salt || password): 64 hex>",
// with a random 16-byte salt per credential. The CP hashes a password when it is written; the
// stored form is what the Admin API shows and what data planes receive (they verify by hashing
// the presented password with the salt; docs/plugins.md "basic-auth").
#include <string>

#include "absl/strings/string_view.h"

namespace portico {

// True when `stored` has the hashed form (a password that looks exactly like it is taken as one).
bool IsHashedBasicAuthPassword(absl::string_view stored);

// The hashed form of `password` with a new random salt.
std::string HashBasicAuthPassword(absl::string_view password);

// The salt (16 bytes) and digest (32 bytes) of a hashed form; false when it is not one.
bool ParseHashedBasicAuthPassword(absl::string_view stored, std::string* salt, std::string* digest);

// True when `stored` is a hashed form of `password` (not constant-time: for configuration
// tooling, not for checking credentials presented by clients).
bool BasicAuthPasswordMatches(absl::string_view stored, absl::string_view password);

}  // namespace portico
