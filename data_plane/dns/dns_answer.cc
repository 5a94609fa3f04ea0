#include "data_plane/dns/dns_answer.h"

#include <arpa/inet.h>
#include <uv.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "data_plane/balancer/smooth_weights.h"

namespace portico::dp {

bool MakeTarget(absl::string_view ip_view, uint16_t port, Target* out) {
  const std::string ip(ip_view);
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
    out->ip = ip;
    out->port = port;
    out->pool_key = absl::StrCat(ip, ":", port);
    out->address = sockaddr_storage{};
    uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in*>(&out->address));
    return true;
  }
  if (inet_pton(AF_INET6, ip.c_str(), &v6) == 1) {
    out->ip = ip;
    out->port = port;
    out->pool_key = absl::StrCat("[", ip, "]:", port);
    out->address = sockaddr_storage{};
    uv_ip6_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in6*>(&out->address));
    return true;
  }
  return false;
}

DnsAnswer::DnsAnswer(std::vector<Record> records, bool from_srv) : records_(std::move(records)), from_srv_(from_srv) {
  if (!from_srv_) {
    for (uint32_t i = 0; i < records_.size(); ++i) schedule_.push_back(i);
    return;
  }
  uint16_t best = UINT16_MAX;
  for (const Record& r : records_) best = std::min(best, r.priority);
  std::vector<uint32_t> chosen;
  std::vector<uint64_t> weights;
  for (uint32_t i = 0; i < records_.size(); ++i) {
    if (records_[i].priority != best) continue;
    chosen.push_back(i);
    weights.push_back(records_[i].weight);  // weight 0 counts as 1
  }
  for (uint32_t k : SmoothWeightedSequence(weights, kMaxSchedule)) schedule_.push_back(chosen[k]);
}

}  // namespace portico::dp
