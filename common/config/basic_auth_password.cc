#include "common/config/basic_auth_password.h"

#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/sha256.h"
#include "common/base/uuid.h"

namespace portico {
namespace {

constexpr absl::string_view kPrefix = "sha256$";
constexpr size_t kSaltHex = 32;
constexpr size_t kDigestHex = 64;

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

bool IsHashedBasicAuthPassword(absl::string_view stored) {
  if (stored.size() != kPrefix.size() + kSaltHex + 1 + kDigestHex || !absl::StartsWith(stored, kPrefix)) return false;
  stored.remove_prefix(kPrefix.size());
  return stored[kSaltHex] == '$' && IsLowerHex(stored.substr(0, kSaltHex)) && IsLowerHex(stored.substr(kSaltHex + 1));
}

std::string HashBasicAuthPassword(absl::string_view password) {
  const std::string salt = RandomBytes(16);
  uint8_t digest[Sha256::kDigestBytes];
  Sha256 sha;
  sha.Update(salt);
  sha.Update(password);
  sha.Final(digest);
  return absl::StrCat(kPrefix, ToHex(salt), "$",
                      ToHex(absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest))));
}

bool ParseHashedBasicAuthPassword(absl::string_view stored, std::string* salt, std::string* digest) {
  if (!IsHashedBasicAuthPassword(stored)) return false;
  stored.remove_prefix(kPrefix.size());
  *salt = absl::HexStringToBytes(stored.substr(0, kSaltHex));
  *digest = absl::HexStringToBytes(stored.substr(kSaltHex + 1));
  return true;
}

bool BasicAuthPasswordMatches(absl::string_view stored, absl::string_view password) {
  std::string salt, digest;
  if (!ParseHashedBasicAuthPassword(stored, &salt, &digest)) return false;
  uint8_t computed[Sha256::kDigestBytes];
  Sha256 sha;
  sha.Update(salt);
  sha.Update(password);
  sha.Final(computed);
  return absl::string_view(reinterpret_cast<const char*>(computed), sizeof(computed)) == digest;
}

}  // namespace portico
