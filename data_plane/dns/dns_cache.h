#pragma once
// The resolver's cache, without any I/O: which answer a name has, when to ask again, and what a
// query's outcome does to it. Time is passed in (milliseconds of any monotonic clock), so tests
// drive it with a fake clock. One per worker; single-threaded.
//
// Rules (docs/load-balancing.md, "DNS"):
// - an answer is kept for its TTL (clamped to [min_ttl_ms, max_ttl_ms]); a refresh starts a little
//   before it expires (at 3/4 of the TTL, at most 1 s early), and until the refresh completes the
//   old answer is still served (stale while refreshing);
// - a failed query (timeout, refused, server failure) keeps the last good answer and is retried
//   after a backoff (error_retry_ms, doubling up to max_error_retry_ms); there is no limit on how
//   long a stale answer is served while the resolver keeps failing;
// - NXDOMAIN or no records of the asked kind (an authoritative "no") drops the answer and is
//   remembered for not_found_ttl_ms (Kong's dns_not_found_ttl): requests get 503 meanwhile.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "data_plane/dns/dns_answer.h"

namespace portico::dp {

// A name to resolve and the port its addresses get (SRV names bring their own ports). Names are
// lowercase, without a trailing dot.
struct DnsKeyView {
  absl::string_view name;
  uint16_t port = 0;
};
struct DnsKey {
  std::string name;
  uint16_t port = 0;
  DnsKeyView view() const { return {name, port}; }
};
struct DnsKeyHash {
  using is_transparent = void;
  size_t operator()(DnsKeyView k) const { return absl::HashOf(k.name, k.port); }
  size_t operator()(const DnsKey& k) const { return (*this)(k.view()); }
};
struct DnsKeyEq {
  using is_transparent = void;
  static DnsKeyView V(DnsKeyView k) { return k; }
  static DnsKeyView V(const DnsKey& k) { return k.view(); }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return V(a).port == V(b).port && V(a).name == V(b).name;
  }
};

enum class DnsOutcome {
  kAnswer,    // records found
  kNotFound,  // NXDOMAIN, or no records of the kind asked for
  kError,     // the resolver failed: timeout, refused, server failure, ...
};

struct DnsCacheOptions {
  int64_t min_ttl_ms = 1000;               // TTL 0 (and anything shorter) counts as 1 s
  int64_t max_ttl_ms = 24 * 3600 * 1000;   // and anything longer as a day
  int64_t not_found_ttl_ms = 30 * 1000;    // Kong's dns_not_found_ttl
  int64_t error_retry_ms = 1000;           // first retry after a failure
  int64_t max_error_retry_ms = 16 * 1000;  // the backoff doubles up to this
  int64_t keep_unused_ms = 10 * 60 * 1000; // an entry not used (nor in the config) this long is evicted
  int64_t refresh_unused_ms = 60 * 1000;   // names not in the config are refreshed while used this recently
};

class DnsCache {
 public:
  // Called once when a query completes, for each request that waited for it.
  using Waiter = std::function<void()>;

  explicit DnsCache(DnsCacheOptions options = {}) : options_(options) {}

  struct Result {
    const DnsAnswerPtr* answer = nullptr;  // null: no answer (none yet, or not found)
    bool start_query = false;              // the caller must start a query now (then Complete)
    bool pending = false;                  // a query is in flight (after start_query too)
  };
  // The current answer for `key` (possibly stale); creates the entry when missing. When the entry
  // has no query in flight and is due (new, expired, or the retry time of a failure passed),
  // marks a query in flight and says so: the caller starts it. Allocates only for a new entry.
  Result Get(DnsKeyView key, int64_t now_ms);
  // A query for `key` ended. For kAnswer `answer` is the new answer and `ttl_s` its TTL.
  // Returns the waiters to call (the entry no longer has them).
  std::vector<Waiter> Complete(DnsKeyView key, DnsOutcome outcome, DnsAnswerPtr answer, int64_t ttl_s,
                               int64_t now_ms);

  // Waits for the query in flight for `key` (REQUIRES: Get said pending). Returns a ticket for
  // CancelWait.
  uint64_t Wait(DnsKeyView key, Waiter waiter);
  void CancelWait(uint64_t ticket);

  // The names the current config uses: refreshed whether or not requests use them, never evicted.
  // Creates their entries. Returns those due for a query now (marked in flight: start them).
  std::vector<DnsKey> SetConfigNames(const std::vector<DnsKey>& names, int64_t now_ms);
  // Periodic work: returns the keys due for a refresh (in the config, or used within
  // refresh_unused_ms), marked in flight; evicts entries unused for keep_unused_ms.
  std::vector<DnsKey> Maintain(int64_t now_ms);
  // Every entry is due again (the hosts file changed).
  void ExpireAll();
  // Forgets every query in flight without calling waiters (the resolver is stopping).
  void AbandonQueries();

  size_t size() const { return entries_.size(); }
  // For tests: the entry's current answer (null when none).
  DnsAnswerPtr Peek(DnsKeyView key) const;

 private:
  struct Entry {
    DnsAnswerPtr answer;
    int64_t refresh_at_ms = 0;  // a query is due from here
    int64_t error_retry_ms = 0; // the current failure backoff (0: last query did not fail)
    int64_t last_used_ms = 0;
    bool in_flight = false;
    bool in_config = false;
    std::vector<std::pair<uint64_t, Waiter>> waiters;
  };
  DnsCacheOptions options_;
  absl::flat_hash_map<DnsKey, Entry, DnsKeyHash, DnsKeyEq> entries_;
  absl::flat_hash_map<uint64_t, DnsKey> tickets_;  // ticket -> its entry
  uint64_t next_ticket_ = 1;
};

}  // namespace portico::dp
