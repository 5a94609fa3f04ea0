// Session ticket keys: derived per rotation period, the previous period still accepted (and the
// ticket renewed), older ones refused; the same keys on every thread.
#include "data_plane/tls/session_ticket_keys.h"

#include <openssl/evp.h>

#include <cstring>
#include <memory>
#include <thread>

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

struct CipherFree { void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); } };
struct MacFree { void operator()(EVP_MAC_CTX* p) const { EVP_MAC_CTX_free(p); } };
struct MacAlgFree { void operator()(EVP_MAC* p) const { EVP_MAC_free(p); } };

class TicketContexts {
 public:
  TicketContexts() : mac_alg_(EVP_MAC_fetch(nullptr, "HMAC", nullptr)) {}
  // Runs OnTicket with fresh contexts.
  int Run(const SessionTicketKeys& keys, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH], int encrypt) {
    std::unique_ptr<EVP_CIPHER_CTX, CipherFree> cipher(EVP_CIPHER_CTX_new());
    std::unique_ptr<EVP_MAC_CTX, MacFree> mac(EVP_MAC_CTX_new(mac_alg_.get()));
    return keys.OnTicket(name, iv, cipher.get(), mac.get(), encrypt);
  }

 private:
  std::unique_ptr<EVP_MAC, MacAlgFree> mac_alg_;
};

TEST(SessionTicketKeysTest, RotatesAndAcceptsOnlyThePreviousPeriod) {
  int64_t now = 10 * 3600 + 5;
  SessionTicketKeys keys(3600, [&now] { return now; });
  EXPECT_EQ(keys.CurrentPeriod(), 10u);
  TicketContexts contexts;
  unsigned char name[16];
  unsigned char iv[EVP_MAX_IV_LENGTH];
  ASSERT_EQ(contexts.Run(keys, name, iv, 1), 1);
  unsigned char expected_name[16];
  std::memcpy(expected_name, keys.KeyFor(10).name, 16);
  EXPECT_EQ(std::memcmp(name, expected_name, 16), 0);

  EXPECT_EQ(contexts.Run(keys, name, iv, 0), 1);  // current key
  now += 3600;
  EXPECT_EQ(keys.CurrentPeriod(), 11u);
  EXPECT_EQ(contexts.Run(keys, name, iv, 0), 2);  // previous key: accepted, renewed
  now += 3600;
  EXPECT_EQ(contexts.Run(keys, name, iv, 0), 0);  // retired: full handshake

  unsigned char unknown[16] = {1, 2, 3};
  EXPECT_EQ(contexts.Run(keys, unknown, iv, 0), 0);
}

TEST(SessionTicketKeysTest, KeysDependOnPeriodAndSecretAndAgreeAcrossThreads) {
  SessionTicketKeys a;
  SessionTicketKeys b;
  const SessionTicketKeys::Key a1 = a.KeyFor(1);
  EXPECT_NE(std::memcmp(a1.name, a.KeyFor(2).name, 16), 0);
  EXPECT_NE(std::memcmp(a1.aes_key, a.KeyFor(2).aes_key, 32), 0);
  EXPECT_NE(std::memcmp(a1.name, b.KeyFor(1).name, 16), 0);  // another process, another secret
  EXPECT_NE(std::memcmp(a1.aes_key, a1.hmac_key, 32), 0);
  SessionTicketKeys::Key from_thread;
  std::thread([&] { from_thread = a.KeyFor(1); }).join();
  EXPECT_EQ(std::memcmp(&from_thread, &a1, sizeof(a1)), 0);
}

}  // namespace
}  // namespace portico::dp
