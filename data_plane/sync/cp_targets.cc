#include "data_plane/sync/cp_targets.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/host_port.h"

namespace portico::dp {

absl::StatusOr<std::vector<ControlPlaneEntry>> ParseControlPlaneList(absl::string_view text) {
  std::vector<ControlPlaneEntry> entries;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    piece = absl::StripAsciiWhitespace(piece);
    if (piece.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("empty entry in '", text, "': want host:port[,host:port...]"));
    }
    absl::StatusOr<HostPort> parsed = ParseHostPort(piece);
    if (!parsed.ok()) return parsed.status();
    if (parsed->host.empty()) return absl::InvalidArgumentError(absl::StrCat("no host in '", piece, "'"));
    if (parsed->port == 0) return absl::InvalidArgumentError(absl::StrCat("port 0 in '", piece, "'"));
    entries.push_back(ControlPlaneEntry{parsed->host, parsed->port, std::string(piece)});
  }
  return entries;
}

absl::StatusOr<std::vector<std::string>> ResolveHostAddresses(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &result);
  if (rc != 0) {
    const std::string why = absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc));
    return rc == EAI_NONAME ? absl::NotFoundError(why) : absl::UnavailableError(why);
  }
  std::vector<std::string> out;
  for (const addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN] = {0};
    if (ai->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr, text, sizeof(text));
    } else if (ai->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr, text, sizeof(text));
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), text) == out.end()) out.emplace_back(text);
  }
  freeaddrinfo(result);
  if (out.empty()) return absl::NotFoundError(absl::StrCat("'", host, "' has no IPv4 or IPv6 address"));
  return out;
}

ControlPlaneRotation::ControlPlaneRotation(std::vector<ControlPlaneEntry> entries, std::string server_name_override,
                                           ResolveHostFn resolve, uint64_t start)
    : entries_(std::move(entries)),
      server_name_override_(std::move(server_name_override)),
      resolve_(std::move(resolve)),
      start_(start) {}

DialTarget ControlPlaneRotation::Make(const ControlPlaneEntry& entry, const std::string& ip) const {
  const bool v6 = ip.find(':') != std::string::npos;
  DialTarget t;
  t.entry = entry.text;
  t.address = v6 ? absl::StrCat("[", ip, "]:", entry.port) : absl::StrCat(ip, ":", entry.port);
  t.grpc_target = absl::StrCat(v6 ? "ipv6:" : "ipv4:", t.address);
  t.server_name = server_name_override_.empty() ? entry.host : server_name_override_;
  return t;
}

absl::StatusOr<DialTarget> ControlPlaneRotation::Next() {
  if (entries_.empty()) return absl::FailedPreconditionError("no control plane address");
  if (started_ && address_ + 1 < addresses_.size()) {
    ++address_;
    return Make(entries_[entry_], addresses_[address_]);
  }
  const bool first = !started_;
  entry_ = first ? static_cast<size_t>(start_ % entries_.size()) : (entry_ + 1) % entries_.size();
  started_ = true;
  const ControlPlaneEntry& entry = entries_[entry_];
  absl::StatusOr<std::vector<std::string>> resolved = resolve_(entry.host);
  if (!resolved.ok() || resolved->empty()) {
    addresses_.clear();
    address_ = 0;
    return absl::Status(resolved.ok() ? absl::StatusCode::kNotFound : resolved.status().code(),
                        absl::StrCat("control plane ", entry.text, ": ",
                                     resolved.ok() ? "no address" : resolved.status().message()));
  }
  addresses_ = *std::move(resolved);
  address_ = first ? static_cast<size_t>((start_ / entries_.size()) % addresses_.size()) : 0;
  return Make(entry, addresses_[address_]);
}

}  // namespace portico::dp
