#include "data_plane/balancer/balancer.h"

#include <arpa/inet.h>
#include <uv.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "data_plane/balancer/smooth_weights.h"

namespace portico::dp {
namespace {

constexpr uint16_t kDefaultTargetPort = 8000;  // Kong's
// Longest round-robin sequence; larger weight sums are scaled down to it (each weight keeps its
// share within half an entry).
constexpr uint64_t kMaxSequence = 1 << 16;

struct HostPort {
  std::string host;  // without brackets
  uint16_t port = kDefaultTargetPort;
  bool bracketed = false;
};

absl::StatusOr<HostPort> SplitTarget(absl::string_view text) {
  HostPort out;
  absl::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos) return absl::InvalidArgumentError("unterminated '['");
    out.host = std::string(text.substr(1, close - 1));
    out.bracketed = true;
    absl::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return absl::InvalidArgumentError("expected ':' after ']'");
      port_text = rest.substr(1);
    }
  } else {
    const size_t colon = text.rfind(':');
    if (colon != absl::string_view::npos && text.find(':') == colon) {
      out.host = std::string(text.substr(0, colon));
      port_text = text.substr(colon + 1);
    } else {
      out.host = std::string(text);  // no port, or a bare IPv6 address
    }
  }
  if (!port_text.empty()) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(port_text, &port) || port > 65535) return absl::InvalidArgumentError("invalid port");
    out.port = static_cast<uint16_t>(port);
  }
  if (out.host.empty()) return absl::InvalidArgumentError("empty host");
  return out;
}

// The address of an IP literal or localhost; false for a name that needs DNS.
bool ResolveLiteral(const HostPort& hp, Target* out) {
  in6_addr v6;
  in_addr v4;
  std::string ip = hp.host;
  if (absl::AsciiStrToLower(ip) == "localhost") ip = "127.0.0.1";
  if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
    out->ip = ip;
    out->port = hp.port;
    out->pool_key = absl::StrCat(ip, ":", hp.port);
    uv_ip4_addr(ip.c_str(), hp.port, reinterpret_cast<sockaddr_in*>(&out->address));
    return true;
  }
  if (inet_pton(AF_INET6, ip.c_str(), &v6) == 1) {
    out->ip = ip;
    out->port = hp.port;
    out->pool_key = absl::StrCat("[", ip, "]:", hp.port);
    uv_ip6_addr(ip.c_str(), hp.port, reinterpret_cast<sockaddr_in6*>(&out->address));
    return true;
  }
  return false;
}

HashSource ReadHashSource(absl::string_view input, const config::v1::Upstream& u, bool fallback) {
  HashSource s;
  auto text = [](bool has, const std::string& value) { return has ? value : std::string(); };
  if (input == "consumer") {
    s.input = HashInput::kConsumer;
  } else if (input == "ip") {
    s.input = HashInput::kIp;
  } else if (input == "header") {
    s.input = HashInput::kHeader;
    s.name = absl::AsciiStrToLower(fallback ? text(u.has_hash_fallback_header(), u.hash_fallback_header())
                                            : text(u.has_hash_on_header(), u.hash_on_header()));
  } else if (input == "cookie") {
    s.input = HashInput::kCookie;
    s.name = text(u.has_hash_on_cookie(), u.hash_on_cookie());
    s.cookie_path = u.hash_on_cookie_path().empty() ? "/" : u.hash_on_cookie_path();
  } else if (input == "path") {
    s.input = HashInput::kPath;
  } else if (input == "query_arg") {
    s.input = HashInput::kQueryArg;
    s.name = fallback ? text(u.has_hash_fallback_query_arg(), u.hash_fallback_query_arg())
                      : text(u.has_hash_on_query_arg(), u.hash_on_query_arg());
  } else if (input == "uri_capture") {
    s.input = HashInput::kUriCapture;
    s.name = fallback ? text(u.has_hash_fallback_uri_capture(), u.hash_fallback_uri_capture())
                      : text(u.has_hash_on_uri_capture(), u.hash_on_uri_capture());
  }
  return s;
}

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

bool Tried(absl::Span<const uint32_t> tried, uint32_t target) {
  return std::find(tried.begin(), tried.end(), target) != tried.end();
}

}  // namespace

struct alignas(64) Balancer::WorkerSlot {
  uint64_t position = 0;  // round-robin: next index into sequence_
  uint64_t rotation = 0;  // least-connections: where ties start
  uint64_t random = 0;    // latency: xorshift64 state for the two random candidates
  uint64_t health_epoch = UINT64_MAX;  // the registry epoch `available` was computed at
  bool available = true;
};

Balancer::~Balancer() = default;

uint64_t Balancer::HashKey(absl::string_view key) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then mixed
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return Mix(h);
}

absl::StatusOr<std::unique_ptr<const Balancer>> Balancer::Compile(
    const config::v1::Upstream& upstream, const std::vector<const config::v1::Target*>& targets, int workers,
    HealthRegistry* health) {
  std::unique_ptr<Balancer> b(new Balancer());
  b->upstream_name_ = upstream.name();
  b->upstream_id_ = upstream.id();
  absl::StatusOr<std::shared_ptr<const HealthConfig>> health_config = ParseHealthConfig(upstream.healthchecks());
  if (!health_config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream ", upstream.id(), ": ", health_config.status().message()));
  }
  b->health_config_ = *std::move(health_config);
  if (health != nullptr) {
    b->health_on_ = b->health_config_->enabled();
    const PassiveHealthConfig& passive = b->health_config_->passive;
    b->passive_on_ = b->health_on_ && (b->health_config_->passive_enabled() || passive.limits.successes > 0);
    b->health_epoch_ = &health->epoch();
  }
  const std::string& algorithm = upstream.algorithm();
  if (algorithm.empty() || algorithm == "round-robin") {
    b->algorithm_ = Algorithm::kRoundRobin;
  } else if (algorithm == "consistent-hashing") {
    b->algorithm_ = Algorithm::kConsistentHashing;
  } else if (algorithm == "least-connections") {
    b->algorithm_ = Algorithm::kLeastConnections;
  } else if (algorithm == "latency") {
    b->algorithm_ = Algorithm::kLatency;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("upstream ", upstream.id(), ": algorithm: unknown '", algorithm, "'"));
  }
  b->hash_on_ = ReadHashSource(upstream.hash_on(), upstream, false);
  b->hash_fallback_ = ReadHashSource(upstream.hash_fallback(), upstream, true);
  b->workers_ = std::max(1, workers);

  std::vector<const config::v1::Target*> sorted = targets;  // the same order on every DP
  std::sort(sorted.begin(), sorted.end(),
            [](const config::v1::Target* a, const config::v1::Target* c) { return a->target() < c->target(); });
  for (const config::v1::Target* t : sorted) {
    absl::StatusOr<HostPort> hp = SplitTarget(t->target());
    if (!hp.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("target ", t->id(), " of upstream ", upstream.name(), ": target: ", hp.status().message()));
    }
    if (t->weight() < 0 || t->weight() > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("target ", t->id(), ": weight: value should be between 0 and 65535"));
    }
    BalancerTarget bt;
    bt.name = t->target();
    bt.weight = static_cast<uint32_t>(t->weight());
    const bool resolved = ResolveLiteral(*hp, &bt.address);
    if (!resolved) {  // a hostname: resolved per worker (data_plane/dns)
      bt.dns_name = absl::AsciiStrToLower(hp->host);
      if (!bt.dns_name.empty() && bt.dns_name.back() == '.') bt.dns_name.pop_back();
      bt.dns_port = hp->port;
    }
    const std::string host = hp->bracketed ? absl::StrCat("[", hp->host, "]") : hp->host;
    bt.host_header = upstream.has_host_header() && !upstream.host_header().empty() ? upstream.host_header()
                     : (hp->port == 80 || hp->port == 443)                      ? host
                                                                                : absl::StrCat(host, ":", hp->port);
    if (health != nullptr) bt.health = health->Acquire(upstream.id(), upstream.name(), t->target(), upstream.healthchecks());
    if (bt.weight > 0) b->eligible_.push_back(static_cast<uint32_t>(b->targets_.size()));
    b->targets_.push_back(std::move(bt));
  }

  // Round-robin: nginx's smooth weighted order over weights scaled so that the sequence has at
  // most kMaxSequence entries.
  if (!b->eligible_.empty() && b->algorithm_ == Algorithm::kRoundRobin) {
    std::vector<uint64_t> weights;
    for (uint32_t i : b->eligible_) weights.push_back(b->targets_[i].weight);
    for (uint32_t k : SmoothWeightedSequence(weights, kMaxSequence)) b->sequence_.push_back(b->eligible_[k]);
  }

  // Consistent hashing: a target's points are hashes of its name and their number, as many as its
  // weight asks for, whatever the other targets are (slots / 100 for the default weight 100): a
  // target added or removed takes or gives back only the keys of its own points.
  if (!b->eligible_.empty() && b->algorithm_ == Algorithm::kConsistentHashing) {
    const uint64_t slots = upstream.slots() > 0 ? static_cast<uint64_t>(upstream.slots()) : 10000;
    for (uint32_t i : b->eligible_) {
      const uint64_t points =
          std::clamp<uint64_t>((slots * b->targets_[i].weight + 5000) / 10000, 1, kMaxSequence);
      for (uint64_t p = 0; p < points; ++p) {
        b->continuum_.push_back(Point{HashKey(absl::StrCat(b->targets_[i].name, "#", p)), i});
      }
    }
    std::sort(b->continuum_.begin(), b->continuum_.end(), [](const Point& x, const Point& y) {
      return x.hash != y.hash ? x.hash < y.hash : x.target < y.target;
    });
  }

  b->slots_ = std::make_unique<WorkerSlot[]>(static_cast<size_t>(b->workers_));
  for (int w = 0; w < b->workers_; ++w) {
    // Workers start at different places of the sequence, so their first requests spread.
    b->slots_[w].position = b->sequence_.empty() ? 0 : (b->sequence_.size() * static_cast<size_t>(w)) / b->workers_;
    b->slots_[w].rotation = static_cast<uint64_t>(w);
    b->slots_[w].random = Mix(0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(w + 1)) | 1;
  }
  if (b->algorithm_ == Algorithm::kLeastConnections || b->algorithm_ == Algorithm::kLatency) {
    b->connections_stride_ = (b->targets_.size() + 15) / 16 * 16;  // whole cache lines per worker
    b->connections_ = std::make_unique<uint32_t[]>(b->connections_stride_ * static_cast<size_t>(b->workers_));
  }
  if (b->algorithm_ == Algorithm::kLatency) {
    b->latency_ = std::make_unique<LatencyEstimate[]>(b->connections_stride_ * static_cast<size_t>(b->workers_));
  }
  return std::unique_ptr<const Balancer>(std::move(b));
}

int Balancer::Pick(int worker, uint64_t key_hash, absl::Span<const uint32_t> tried, uint64_t now_ns) const {
  if (eligible_.empty()) return kNoTarget;
  if (worker < 0 || worker >= workers_) worker = 0;  // REQUIRES broken; stay in bounds
  if (health_on_ && !Available(worker)) return kNoTarget;
  switch (algorithm_) {
    case Algorithm::kRoundRobin:
      return PickRoundRobin(worker, tried);
    case Algorithm::kConsistentHashing:
      return PickHashed(key_hash, tried);
    case Algorithm::kLeastConnections:
      return PickLeastConnections(worker, tried);
    case Algorithm::kLatency:
      return PickLatency(worker, tried, now_ns != 0 ? now_ns : uv_hrtime());
  }
  return kNoTarget;
}

bool Balancer::Available(int worker) const {
  WorkerSlot& slot = slots_[worker];
  const uint64_t epoch = health_epoch_->load(std::memory_order_acquire);
  if (slot.health_epoch == epoch) return slot.available;
  uint64_t total = 0, healthy = 0;
  for (uint32_t i : eligible_) {
    total += targets_[i].weight;
    if (targets_[i].health->healthy()) healthy += targets_[i].weight;
  }
  slot.available = healthy > 0 && static_cast<double>(healthy) * 100 >= health_config_->threshold * static_cast<double>(total);
  slot.health_epoch = epoch;
  return slot.available;
}

int Balancer::PickRoundRobin(int worker, absl::Span<const uint32_t> tried) const {
  WorkerSlot& slot = slots_[worker];
  const size_t n = sequence_.size();
  // Pass 0: the next entry of a healthy target not tried yet; pass 1 (only with tried targets):
  // the next healthy one.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t step = 0; step < n; ++step) {
      const uint32_t chosen = sequence_[(slot.position + step) % n];
      if (!Healthy(chosen) || (pass == 0 && !tried.empty() && Tried(tried, chosen))) continue;
      slot.position += step + 1;
      return static_cast<int>(chosen);
    }
    if (tried.empty()) break;
  }
  return kNoTarget;
}

int Balancer::PickHashed(uint64_t key_hash, absl::Span<const uint32_t> tried) const {
  auto it = std::lower_bound(continuum_.begin(), continuum_.end(), key_hash,
                             [](const Point& p, uint64_t h) { return p.hash < h; });
  const size_t first = it == continuum_.end() ? 0 : static_cast<size_t>(it - continuum_.begin());
  const size_t n = continuum_.size();
  // The key's point, else (an unhealthy or, on a retry, tried target) the next point of another.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t step = 0; step < n; ++step) {
      const uint32_t target = continuum_[(first + step) % n].target;
      if (!Healthy(target) || (pass == 0 && !tried.empty() && Tried(tried, target))) continue;
      return static_cast<int>(target);
    }
    if (tried.empty()) break;
  }
  return kNoTarget;
}

int Balancer::PickLeastConnections(int worker, absl::Span<const uint32_t> tried) const {
  uint32_t* open = &connections_[connections_stride_ * static_cast<size_t>(worker)];
  WorkerSlot& slot = slots_[worker];
  const size_t n = eligible_.size();
  const size_t start = static_cast<size_t>(slot.rotation++ % n);  // ties go round
  int best = kNoTarget;
  double best_load = 0;
  for (int pass = 0; pass < 2 && best == kNoTarget; ++pass) {  // pass 1 allows tried targets
    for (size_t k = 0; k < n; ++k) {
      const uint32_t i = eligible_[(start + k) % n];
      if (!Healthy(i) || (pass == 0 && Tried(tried, i))) continue;
      const double load = static_cast<double>(open[i] + 1) / targets_[i].weight;
      if (best == kNoTarget || load < best_load) {
        best = static_cast<int>(i);
        best_load = load;
      }
    }
  }
  if (best == kNoTarget) return kNoTarget;
  ++open[best];
  return best;
}

double Balancer::LatencyScore(int worker, uint32_t target, uint64_t now_ns) const {
  const size_t at = connections_stride_ * static_cast<size_t>(worker) + target;
  const LatencyEstimate& estimate = latency_[at];
  // The estimate decays toward 0 while no answer refreshes it, so a target that was slow once
  // is tried again later (finagle's peak EWMA, which Kong's latency balancer follows).
  double ewma = estimate.ewma_ns;
  if (ewma > 0 && now_ns > estimate.stamp_ns) {
    ewma *= std::exp(-static_cast<double>(now_ns - estimate.stamp_ns) / kLatencyDecayNs);
  }
  return ewma * (connections_[at] + 1) / targets_[target].weight;
}

int Balancer::PickLatency(int worker, absl::Span<const uint32_t> tried, uint64_t now_ns) const {
  WorkerSlot& slot = slots_[worker];
  auto next_random = [&slot] {
    slot.random ^= slot.random << 13;
    slot.random ^= slot.random >> 7;
    slot.random ^= slot.random << 17;
    return slot.random;
  };
  const size_t n = eligible_.size();
  int best = kNoTarget;
  double best_score = 0;
  auto consider = [&](uint32_t i) {
    const double score = LatencyScore(worker, i, now_ns);
    if (best == kNoTarget || score < best_score) {
      best = static_cast<int>(i);
      best_score = score;
    }
  };
  // Two random candidates that earlier attempts did not use (a few draws), else every untried
  // target, else (all tried) every target.
  int drawn = 0;
  for (int draw = 0; draw < 4 && drawn < 2 && n > 1; ++draw) {
    const uint32_t i = eligible_[next_random() % n];
    if (!Healthy(i) || Tried(tried, i) || static_cast<int>(i) == best) continue;
    consider(i);
    ++drawn;
  }
  if (drawn < 2) {
    best = kNoTarget;
    for (int pass = 0; pass < 2 && best == kNoTarget; ++pass) {
      for (uint32_t i : eligible_) {
        if (!Healthy(i) || (pass == 0 && Tried(tried, i))) continue;
        consider(i);
      }
    }
  }
  if (best == kNoTarget) return kNoTarget;
  ++connections_[connections_stride_ * static_cast<size_t>(worker) + static_cast<size_t>(best)];
  return best;
}

void Balancer::RecordLatency(int worker, int target, uint64_t elapsed_ns, uint64_t now_ns) const {
  if (latency_ == nullptr || target < 0 || static_cast<size_t>(target) >= targets_.size()) return;
  if (worker < 0 || worker >= workers_) worker = 0;
  LatencyEstimate& estimate = latency_[connections_stride_ * static_cast<size_t>(worker) + static_cast<size_t>(target)];
  const double sample = std::max(1.0, static_cast<double>(elapsed_ns));
  if (estimate.ewma_ns == 0 || sample > estimate.ewma_ns) {
    estimate.ewma_ns = sample;  // the peak is taken at once
  } else {
    const double age = now_ns > estimate.stamp_ns ? static_cast<double>(now_ns - estimate.stamp_ns) : 0;
    const double keep = std::exp(-age / kLatencyDecayNs);
    estimate.ewma_ns = estimate.ewma_ns * keep + sample * (1 - keep);
  }
  estimate.stamp_ns = now_ns;
}

bool Balancer::HasUntriedTarget(absl::Span<const uint32_t> tried) const {
  for (uint32_t i : eligible_) {
    if (Healthy(i) && !Tried(tried, i)) return true;
  }
  return false;
}

void Balancer::ReportPassive(int target, HealthEvent event, int status) const {
  if (!passive_on_ || target < 0 || static_cast<size_t>(target) >= targets_.size()) return;
  targets_[target].health->Report(event, health_config_->passive.limits, "passive", status);
}

void Balancer::ReportHttpStatus(int target, int status) const {
  if (!passive_on_) return;
  const PassiveHealthConfig& passive = health_config_->passive;
  if (passive.type == HealthCheckType::kTcp) return;
  if (passive.unhealthy_statuses.Contains(status)) {
    ReportPassive(target, HealthEvent::kHttpFailure, status);
  } else if (passive.healthy_statuses.Contains(status)) {
    ReportPassive(target, HealthEvent::kSuccess, status);
  }
}

void Balancer::AttemptAnswered(int worker, int target, int status, uint64_t picked_ns) const {
  if (algorithm_ == Algorithm::kLatency) {
    const uint64_t now_ns = uv_hrtime();
    RecordLatency(worker, target, now_ns - picked_ns, now_ns);
  }
  ReportHttpStatus(target, status);
}

void Balancer::AttemptFailed(int worker, int target, HealthEvent failure, uint64_t picked_ns) const {
  if (algorithm_ == Algorithm::kLatency) {  // a dead target is not a fast one
    const uint64_t now_ns = uv_hrtime();
    RecordLatency(worker, target, std::max<uint64_t>(now_ns - picked_ns, kLatencyFailurePenaltyNs), now_ns);
  }
  ReportPassive(target, failure, 0);
}

void Balancer::AppendHealthTargets(std::vector<HealthTarget>* out) const {
  for (const BalancerTarget& t : targets_) {
    if (t.health == nullptr) continue;
    HealthTarget h;
    h.upstream_id = upstream_id_;
    h.upstream_name = upstream_name_;
    h.target = t.name;
    h.config = health_config_;
    h.record = t.health;
    h.has_address = !t.address.ip.empty();
    h.address = t.address.address;
    h.dns_name = t.dns_name;
    h.dns_port = t.dns_port;
    h.host_header = t.host_header;
    h.weight = t.weight;
    out->push_back(std::move(h));
  }
}

void Balancer::Release(int worker, int target) const {
  if (connections_ == nullptr || target < 0 || static_cast<size_t>(target) >= targets_.size()) return;
  if (worker < 0 || worker >= workers_) worker = 0;
  uint32_t& open = connections_[connections_stride_ * static_cast<size_t>(worker) + static_cast<size_t>(target)];
  if (open > 0) --open;
}

}  // namespace portico::dp
