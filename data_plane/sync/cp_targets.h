#pragma once
// The control planes a data plane may dial (--control-plane a:8005,b:8005) and the order it dials
// them in (docs/operations.md "Several control planes"). No gRPC types here.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace portico::dp {

// One entry of the --control-plane list, as given.
struct ControlPlaneEntry {
  std::string host;  // name or IP literal (IPv6 without brackets)
  uint16_t port = 0;
  std::string text;  // "host:port" as written
};

// Parses "host:port[,host:port...]" (spaces around entries ignored). Every entry must parse as
// ParseHostPort does, with a port other than 0. InvalidArgument names the entry at fault; the
// caller prefixes the flag name.
absl::StatusOr<std::vector<ControlPlaneEntry>> ParseControlPlaneList(absl::string_view text);

// One attempt's destination.
struct DialTarget {
  std::string entry;        // the list entry it comes from ("cp.example:8005")
  std::string address;      // the address dialled: "10.0.0.2:8005", "[::1]:8005"
  std::string grpc_target;  // "ipv4:10.0.0.2:8005" / "ipv6:[::1]:8005"
  std::string server_name;  // the name the CP certificate must match: the override, else the entry's host
};

// IP literals (textual, IPv6 without brackets) a host resolves to, in the resolver's order.
using ResolveHostFn = std::function<absl::StatusOr<std::vector<std::string>>(const std::string& host)>;

// getaddrinfo (TCP, any family): an IP literal resolves to itself without a lookup. Duplicates
// are dropped; NotFound/Unavailable when the name has no address.
absl::StatusOr<std::vector<std::string>> ResolveHostAddresses(const std::string& host);

// Round robin over every address of every entry: the addresses of one entry's resolution in
// turn, then the next entry, resolved again when the rotation comes to it (so DNS changes are
// seen). Not thread-safe (the sync client's thread owns it).
class ControlPlaneRotation {
 public:
  // `entries` non-empty. `server_name_override` (--cluster-server-name) replaces each entry's host
  // as the TLS name when not empty. `start` picks the first entry (start % entries) and, in its
  // first resolution, the first address ((start / entries) % addresses), so that the DPs of one
  // list spread over the CPs.
  ControlPlaneRotation(std::vector<ControlPlaneEntry> entries, std::string server_name_override,
                       ResolveHostFn resolve, uint64_t start = 0);

  // The next attempt's target. An entry that does not resolve gives its error (naming the entry);
  // the call after that moves on to the next entry.
  absl::StatusOr<DialTarget> Next();

  size_t size() const { return entries_.size(); }

 private:
  DialTarget Make(const ControlPlaneEntry& entry, const std::string& ip) const;

  const std::vector<ControlPlaneEntry> entries_;
  const std::string server_name_override_;
  const ResolveHostFn resolve_;
  const uint64_t start_;
  bool started_ = false;
  size_t entry_ = 0;                    // current entry
  std::vector<std::string> addresses_;  // its last resolution (empty after a failure)
  size_t address_ = 0;                  // index into addresses_ of the last target given
};

}  // namespace portico::dp
