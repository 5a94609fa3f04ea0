#pragma once
// What one DNS name resolved to, as the proxy uses it: the addresses as Targets (ready to connect,
// with their keep-alive pool key), immutable once built. A request that picked one of its Targets
// holds the answer (shared_ptr) until it ends, so a refresh that replaces the answer in the
// resolver's cache never frees an address in use.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "data_plane/balancer/destinations.h"

namespace portico::dp {

class DnsAnswer {
 public:
  // One address. SRV records give each its port, weight and priority; A/AAAA and hosts-file
  // addresses take the port asked for, weight 1 and priority 0.
  struct Record {
    Target target;
    uint16_t priority = 0;
    uint16_t weight = 1;
  };

  // REQUIRES: !records.empty(). Builds the pick schedule: every address once (A/AAAA), or for SRV
  // only the records of the lowest priority, each as often as its weight asks (weights are
  // reduced by their gcd and the schedule capped at kMaxSchedule entries; weight 0 counts as 1).
  explicit DnsAnswer(std::vector<Record> records, bool from_srv = false);

  // The address for `cursor` (the worker's round-robin counter): never null.
  const Target* Pick(uint64_t cursor) const { return &records_[schedule_[cursor % schedule_.size()]].target; }
  const std::vector<Record>& records() const { return records_; }
  bool from_srv() const { return from_srv_; }
  size_t schedule_size() const { return schedule_.size(); }

  static constexpr size_t kMaxSchedule = 1024;

 private:
  std::vector<Record> records_;
  std::vector<uint32_t> schedule_;  // indexes into records_
  bool from_srv_ = false;
};

using DnsAnswerPtr = std::shared_ptr<const DnsAnswer>;

// A Target for `ip` (numeric, v4 or v6) and `port`; false when `ip` is not an address.
bool MakeTarget(absl::string_view ip, uint16_t port, Target* out);

}  // namespace portico::dp
