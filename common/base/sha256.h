#pragma once
// SHA-256 (FIPS 180-4) computed on the stack: no allocation, no library state, so it can run on
// the request path (key-auth compares digests of presented keys). Thread-safe.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace portico {

class Sha256 {
 public:
  static constexpr size_t kDigestBytes = 32;

  Sha256();
  void Update(absl::string_view data);
  void Final(uint8_t out[kDigestBytes]);  // the object is spent afterwards

 private:
  void Block(const uint8_t* block);

  uint32_t h_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

}  // namespace portico
