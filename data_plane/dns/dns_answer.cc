#include "data_plane/dns/dns_answer.h"

#include <arpa/inet.h>
#include <uv.h>

#include <algorithm>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"

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
  uint64_t divisor = 0;
  for (uint32_t i = 0; i < records_.size(); ++i) {
    if (records_[i].priority != best) continue;
    chosen.push_back(i);
    divisor = std::gcd(divisor, static_cast<uint64_t>(std::max<uint16_t>(1, records_[i].weight)));
  }
  uint64_t sum = 0;
  std::vector<int64_t> weights;
  for (uint32_t i : chosen) {
    weights.push_back(static_cast<int64_t>(std::max<uint16_t>(1, records_[i].weight) / divisor));
    sum += static_cast<uint64_t>(weights.back());
  }
  if (sum > kMaxSchedule) {  // scale down, every record keeps at least one entry
    uint64_t scaled = 0;
    for (int64_t& w : weights) {
      w = std::max<int64_t>(1, w * static_cast<int64_t>(kMaxSchedule) / static_cast<int64_t>(sum));
      scaled += static_cast<uint64_t>(w);
    }
    sum = scaled;
  }
  // nginx's smooth weighted round-robin, as the balancer does.
  std::vector<int64_t> current(weights.size(), 0);
  for (uint64_t step = 0; step < sum; ++step) {
    size_t pick = 0;
    for (size_t i = 0; i < weights.size(); ++i) {
      current[i] += weights[i];
      if (current[i] > current[pick]) pick = i;
    }
    current[pick] -= static_cast<int64_t>(sum);
    schedule_.push_back(chosen[pick]);
  }
}

}  // namespace portico::dp
