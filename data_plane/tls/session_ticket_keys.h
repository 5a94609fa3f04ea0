#pragma once
// Keys for stateless TLS session tickets (resumption without a server-side cache), rotating.
//
// Every key is derived from one random secret made at start and the number of the rotation
// period it belongs to (HMAC-SHA256(secret, label || period)): any worker thread computes the
// same keys for the same period from immutable state, so a ticket issued on one worker resumes
// on another, rotation needs no timer, no lock and no shared mutable state. Tickets are sealed
// with the current period's key; the previous period's key is still accepted (the ticket is then
// renewed), so a ticket lives between one and two periods. Keys never leave the process.
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <functional>

namespace portico::dp {

class SessionTicketKeys {
 public:
  struct Key {
    unsigned char name[16];
    unsigned char aes_key[32];   // AES-256-CBC
    unsigned char hmac_key[32];  // HMAC-SHA256
  };

  // `now_seconds`: the clock periods are counted on (default: wall clock; tests pass a fake).
  explicit SessionTicketKeys(int64_t rotation_seconds = 3600, std::function<int64_t()> now_seconds = nullptr);

  int64_t rotation_seconds() const { return rotation_seconds_; }
  uint64_t CurrentPeriod() const;
  // Derives the key of `period` (three HMACs).
  Key KeyFor(uint64_t period) const;

  // The body of SSL_CTX_set_tlsext_ticket_key_evp_cb's callback (same arguments and results):
  // `encrypt` 1 seals a new ticket with the current key (1: done); 0 opens one: 0 when its key is
  // unknown or retired (full handshake), 1 for the current key, 2 for the previous one (accepted,
  // and a new ticket is issued). -1 on an internal error.
  int OnTicket(unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac,
               int encrypt) const;

 private:
  // KeyFor(period), remembered per thread for the two most recent periods (a handshake then
  // derives nothing).
  const Key& CachedKeyFor(uint64_t period) const;

  uint64_t id_;  // distinguishes instances in the per-thread cache
  unsigned char secret_[32];
  int64_t rotation_seconds_;
  std::function<int64_t()> now_seconds_;
};

}  // namespace portico::dp
