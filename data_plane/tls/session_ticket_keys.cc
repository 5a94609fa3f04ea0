#include "data_plane/tls/session_ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <atomic>
#include <cstring>
#include <ctime>
#include <utility>

namespace portico::dp {
namespace {

// HMAC-SHA256(secret, label || period as 8 bytes big-endian) into `out` (32 bytes).
void Derive(const unsigned char* secret, size_t secret_size, char label, uint64_t period, unsigned char* out) {
  unsigned char input[9];
  input[0] = static_cast<unsigned char>(label);
  for (int i = 0; i < 8; ++i) input[1 + i] = static_cast<unsigned char>(period >> (56 - 8 * i));
  unsigned int length = 32;
  HMAC(EVP_sha256(), secret, static_cast<int>(secret_size), input, sizeof(input), out, &length);
}

}  // namespace

SessionTicketKeys::SessionTicketKeys(int64_t rotation_seconds, std::function<int64_t()> now_seconds)
    : id_([] {
        static std::atomic<uint64_t> next{1};
        return next.fetch_add(1, std::memory_order_relaxed);
      }()),
      rotation_seconds_(rotation_seconds > 0 ? rotation_seconds : 3600), now_seconds_(std::move(now_seconds)) {
  if (RAND_bytes(secret_, sizeof(secret_)) != 1) {
    // No entropy: tickets sealed with an unpredictable-enough fallback would be unsafe; instead
    // make every key unusable (OnTicket issues none).
    std::memset(secret_, 0, sizeof(secret_));
    rotation_seconds_ = 0;
  }
}

uint64_t SessionTicketKeys::CurrentPeriod() const {
  const int64_t now = now_seconds_ ? now_seconds_() : static_cast<int64_t>(std::time(nullptr));
  return rotation_seconds_ > 0 ? static_cast<uint64_t>(now / rotation_seconds_) : 0;
}

SessionTicketKeys::Key SessionTicketKeys::KeyFor(uint64_t period) const {
  Key key;
  unsigned char block[32];
  Derive(secret_, sizeof(secret_), 'n', period, block);
  std::memcpy(key.name, block, sizeof(key.name));
  Derive(secret_, sizeof(secret_), 'a', period, key.aes_key);
  Derive(secret_, sizeof(secret_), 'h', period, key.hmac_key);
  return key;
}

const SessionTicketKeys::Key& SessionTicketKeys::CachedKeyFor(uint64_t period) const {
  struct Entry {
    uint64_t owner = 0;
    uint64_t period = 0;
    Key key;
  };
  thread_local Entry entries[2];
  Entry& entry = entries[period & 1];
  if (entry.owner != id_ || entry.period != period) {
    entry.key = KeyFor(period);
    entry.owner = id_;
    entry.period = period;
  }
  return entry.key;
}

int SessionTicketKeys::OnTicket(unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                                EVP_MAC_CTX* mac, int encrypt) const {
  if (rotation_seconds_ == 0) return encrypt ? -1 : 0;
  const uint64_t period = CurrentPeriod();
  auto init_mac = [mac](const Key& key) {
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
    return EVP_MAC_init(mac, key.hmac_key, sizeof(key.hmac_key), params) == 1;
  };
  if (encrypt) {
    const Key& key = CachedKeyFor(period);
    const int iv_length = EVP_CIPHER_get_iv_length(EVP_aes_256_cbc());
    if (RAND_bytes(iv, iv_length) != 1) return -1;
    std::memcpy(key_name, key.name, sizeof(key.name));
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes_key, iv) != 1) return -1;
    return init_mac(key) ? 1 : -1;
  }
  for (uint64_t age = 0; age <= 1 && age <= period; ++age) {
    const Key& key = CachedKeyFor(period - age);
    if (std::memcmp(key_name, key.name, sizeof(key.name)) != 0) continue;
    if (!init_mac(key)) return -1;
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes_key, iv) != 1) return -1;
    return age == 0 ? 1 : 2;
  }
  return 0;  // unknown or retired key: a full handshake
}

}  // namespace portico::dp
