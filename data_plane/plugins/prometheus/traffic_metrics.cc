#include "data_plane/plugins/prometheus/traffic_metrics.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/metrics/metrics.h"

namespace portico::dp::plugins {
namespace {

// A key: route id (24 bits) | consumer id (20 bits) | kind (4 bits) | detail (16 bits). Never 0
// (route ids start at 1).
enum Kind : uint64_t {
  kRequests = 1,   // detail: status | kFromKong
  kIngress = 2,
  kEgress = 3,
  kBucket = 4,     // + LatencyKind; detail: bucket index (the last one is +Inf)
  kSum = 7,        // + LatencyKind; the value holds a double's bits
};
constexpr uint64_t kFromKong = 1u << 15;

uint64_t MakeKey(uint32_t route_id, uint32_t consumer_id, uint64_t kind, uint64_t detail) {
  return (uint64_t{route_id} << 40) | (uint64_t{consumer_id} << 20) | (kind << 16) | (detail & 0xffff);
}
uint32_t KeyRoute(uint64_t key) { return static_cast<uint32_t>(key >> 40); }
uint32_t KeyConsumer(uint64_t key) { return static_cast<uint32_t>((key >> 20) & 0xfffff); }
uint64_t KeyKind(uint64_t key) { return (key >> 16) & 0xf; }
uint64_t KeyDetail(uint64_t key) { return key & 0xffff; }

// Kong's `le` labels (its Lua prometheus library): every bound printed with the same width and
// precision, zero-padded, so that they sort as text: "%0<W>.<P>f" where P is the most decimals
// any bound needs (at least 1) and W fits the longest integer part ({1, 6000} -> "0001.0", "6000.0").
std::vector<std::string> KongBucketLabels(absl::Span<const double> bounds) {
  int max_order = 1;
  int max_precision = 1;
  for (const double bound : bounds) {
    std::string text = absl::StrFormat("%f", bound);
    while (!text.empty() && text.back() == '0') text.pop_back();
    const size_t dot = text.find('.');
    if (dot == std::string::npos) continue;
    max_order = std::max(max_order, static_cast<int>(dot));
    max_precision = std::max(max_precision, static_cast<int>(text.size() - dot - 1));
  }
  std::vector<std::string> labels;
  labels.reserve(bounds.size());
  for (const double bound : bounds) {
    labels.push_back(absl::StrFormat("%0*.*f", max_order + max_precision + 1, max_precision, bound));
  }
  return labels;
}

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

absl::Span<const double> Bounds(int latency_kind) {
  if (latency_kind == static_cast<int>(LatencyKind::kKong)) return kKongLatencyBucketsMs;
  return kUpstreamLatencyBucketsMs;
}

}  // namespace

void AppendSample(std::string* out, absl::string_view name,
                  std::initializer_list<std::pair<absl::string_view, absl::string_view>> labels,
                  absl::string_view value) {
  out->append(name.data(), name.size());
  if (labels.size() > 0) {
    out->push_back('{');
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out->push_back(',');
      first = false;
      out->append(k.data(), k.size());
      out->append("=\"");
      out->append(EscapeLabelValue(std::string(v)));
      out->push_back('"');
    }
    out->push_back('}');
  }
  out->push_back(' ');
  out->append(value.data(), value.size());
  out->push_back('\n');
}

void AppendFamilyHeader(std::string* out, absl::string_view name, absl::string_view help, absl::string_view type) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

TrafficMetrics::TrafficMetrics(size_t cells_per_worker)
    : cells_per_worker_(std::bit_ceil(std::max<size_t>(cells_per_worker, 64))),
      shards_(std::make_unique<Shard[]>(kMaxWorkers)) {}

TrafficMetrics::~TrafficMetrics() {
  for (int w = 0; w < kMaxWorkers; ++w) {
    if (Cell* cells = shards_[w].cells.load(std::memory_order_acquire); cells != nullptr) {
      munmap(cells, cells_per_worker_ * sizeof(Cell));
    }
  }
}

TrafficMetrics& TrafficMetrics::Process() {
  static TrafficMetrics* const store = new TrafficMetrics();  // lives as long as the process
  return *store;
}

uint32_t TrafficMetrics::InternRoute(const std::string& service, const std::string& route) {
  std::lock_guard<std::mutex> lock(labels_mu_);
  auto [it, inserted] = route_ids_.try_emplace(std::make_pair(service, route), 0);
  if (!inserted) return it->second;
  if (routes_.size() >= kMaxRouteIds) {
    route_ids_.erase(it);
    return 0;
  }
  routes_.emplace_back(service, route);
  it->second = static_cast<uint32_t>(routes_.size());
  return it->second;
}

uint32_t TrafficMetrics::InternConsumer(const std::string& consumer) {
  std::lock_guard<std::mutex> lock(labels_mu_);
  auto [it, inserted] = consumer_ids_.try_emplace(consumer, 0);
  if (!inserted) return it->second;
  if (consumers_.size() >= kMaxConsumerIds) {
    consumer_ids_.erase(it);
    return 0;
  }
  consumers_.push_back(consumer);
  it->second = static_cast<uint32_t>(consumers_.size());
  return it->second;
}

TrafficMetrics::Cell* TrafficMetrics::FindCell(int worker, uint64_t key) {
  if (worker < 0 || worker >= kMaxWorkers) return nullptr;
  Shard& shard = shards_[worker];
  Cell* cells = shard.cells.load(std::memory_order_relaxed);  // this worker is the only writer
  if (cells == nullptr) {
    if (shard.mapping_failed) return nullptr;
    // Once per worker: zero pages, committed as cells are touched.
    void* mem = mmap(nullptr, cells_per_worker_ * sizeof(Cell), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
      shard.mapping_failed = true;
      return nullptr;
    }
    cells = static_cast<Cell*>(mem);
    shard.cells.store(cells, std::memory_order_release);
  }
  const size_t mask = cells_per_worker_ - 1;
  size_t i = Mix(key) & mask;
  for (int probe = 0; probe < kMaxProbes; ++probe, i = (i + 1) & mask) {
    const uint64_t k = cells[i].key.load(std::memory_order_relaxed);
    if (k == key) return &cells[i];
    if (k == 0) {
      cells[i].value.store(0, std::memory_order_relaxed);
      cells[i].key.store(key, std::memory_order_release);
      return &cells[i];
    }
  }
  return nullptr;
}

void TrafficMetrics::Add(int worker, uint64_t key, uint64_t n) {
  Cell* cell = FindCell(worker, key);
  if (cell == nullptr) {
    if (worker < 0 || worker >= kMaxWorkers) return;
    std::atomic<uint64_t>& dropped = shards_[worker].dropped;
    dropped.store(dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return;
  }
  // Published values only ever grow; a scraper reading concurrently sees the old or the new one.
  cell->value.store(cell->value.load(std::memory_order_relaxed) + n, std::memory_order_release);
}

void TrafficMetrics::AddDouble(int worker, uint64_t key, double d) {
  Cell* cell = FindCell(worker, key);
  if (cell == nullptr) {
    if (worker < 0 || worker >= kMaxWorkers) return;
    std::atomic<uint64_t>& dropped = shards_[worker].dropped;
    dropped.store(dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return;
  }
  const double sum = std::bit_cast<double>(cell->value.load(std::memory_order_relaxed)) + d;
  cell->value.store(std::bit_cast<uint64_t>(sum), std::memory_order_release);
}

void TrafficMetrics::CountRequest(int worker, uint32_t route_id, uint32_t consumer_id, int status, bool from_service) {
  if (status < 0 || status > 999) status = 0;
  Add(worker, MakeKey(route_id, consumer_id, kRequests, static_cast<uint64_t>(status) | (from_service ? 0 : kFromKong)),
      1);
}

void TrafficMetrics::AddBandwidth(int worker, uint32_t route_id, uint32_t consumer_id, uint64_t ingress_bytes,
                                  uint64_t egress_bytes) {
  // Kong counts a direction only when its size is above 0.
  if (ingress_bytes > 0) Add(worker, MakeKey(route_id, consumer_id, kIngress, 0), ingress_bytes);
  if (egress_bytes > 0) Add(worker, MakeKey(route_id, consumer_id, kEgress, 0), egress_bytes);
}

void TrafficMetrics::ObserveLatency(int worker, uint32_t route_id, LatencyKind kind, double ms) {
  if (!(ms >= 0)) return;  // Kong observes only latencies >= 0 (and NaN is none)
  const absl::Span<const double> bounds = Bounds(static_cast<int>(kind));
  size_t bucket = 0;
  while (bucket < bounds.size() && ms > bounds[bucket]) ++bucket;
  Add(worker, MakeKey(route_id, 0, kBucket + static_cast<uint64_t>(kind), bucket), 1);
  AddDouble(worker, MakeKey(route_id, 0, kSum + static_cast<uint64_t>(kind), 0), ms);
}

uint64_t TrafficMetrics::dropped() const {
  uint64_t total = 0;
  for (int w = 0; w < kMaxWorkers; ++w) total += shards_[w].dropped.load(std::memory_order_relaxed);
  return total;
}

void TrafficMetrics::Render(std::string* out) const {
  // Every worker's published cells, summed by key (ordered: route, consumer, kind, detail).
  std::map<uint64_t, uint64_t> counts;
  std::map<uint64_t, double> sums;
  for (int w = 0; w < kMaxWorkers; ++w) {
    const Cell* cells = shards_[w].cells.load(std::memory_order_acquire);
    if (cells == nullptr) continue;
    for (size_t i = 0; i < cells_per_worker_; ++i) {
      const uint64_t key = cells[i].key.load(std::memory_order_acquire);
      if (key == 0) continue;
      const uint64_t value = cells[i].value.load(std::memory_order_acquire);
      if (KeyKind(key) >= kSum) {
        sums[key] += std::bit_cast<double>(value);
      } else {
        counts[key] += value;
      }
    }
  }
  if (counts.empty()) return;
  std::vector<std::pair<std::string, std::string>> routes;
  std::vector<std::string> consumers;
  {
    std::lock_guard<std::mutex> lock(labels_mu_);
    routes = routes_;
    consumers = consumers_;
  }
  static const std::string kNone;
  auto route_labels = [&routes](uint64_t key) -> const std::pair<std::string, std::string>& {
    static const std::pair<std::string, std::string> kUnknown;
    const uint32_t id = KeyRoute(key);
    return id >= 1 && id <= routes.size() ? routes[id - 1] : kUnknown;
  };
  auto consumer_label = [&consumers](uint64_t key) -> const std::string& {
    const uint32_t id = KeyConsumer(key);
    return id >= 1 && id <= consumers.size() ? consumers[id - 1] : kNone;
  };

  bool header = false;
  for (const auto& [key, value] : counts) {
    const uint64_t kind = KeyKind(key);
    if (kind != kIngress && kind != kEgress) continue;
    if (!header) {
      AppendFamilyHeader(out, "kong_bandwidth_bytes", "Total bandwidth (ingress/egress) throughput in bytes", "counter");
      header = true;
    }
    const auto& [service, route] = route_labels(key);
    AppendSample(out, "kong_bandwidth_bytes",
                 {{"service", service}, {"route", route}, {"direction", kind == kIngress ? "ingress" : "egress"},
                  {"workspace", "default"}, {"consumer", consumer_label(key)}},
                 absl::StrCat(value));
  }
  header = false;
  for (const auto& [key, value] : counts) {
    if (KeyKind(key) != kRequests) continue;
    if (!header) {
      AppendFamilyHeader(out, "kong_http_requests_total", "HTTP status codes per consumer/service/route in Kong",
                         "counter");
      header = true;
    }
    const auto& [service, route] = route_labels(key);
    const uint64_t detail = KeyDetail(key);
    AppendSample(out, "kong_http_requests_total",
                 {{"service", service}, {"route", route}, {"code", absl::StrCat(detail & ~kFromKong)},
                  {"source", (detail & kFromKong) != 0 ? "kong" : "service"}, {"workspace", "default"},
                  {"consumer", consumer_label(key)}},
                 absl::StrCat(value));
  }
  struct HistogramFamily {
    LatencyKind kind;
    const char* name;
    const char* help;
  };
  static constexpr HistogramFamily kHistograms[] = {
      {LatencyKind::kKong, "kong_kong_latency_ms", "Latency added by Kong and enabled plugins for each service/route in Kong"},
      {LatencyKind::kRequest, "kong_request_latency_ms", "Total latency incurred during requests for each service/route in Kong"},
      {LatencyKind::kUpstream, "kong_upstream_latency_ms", "Latency added by upstream response for each service/route in Kong"},
  };
  for (const HistogramFamily& family : kHistograms) {
    const uint64_t bucket_kind = kBucket + static_cast<uint64_t>(family.kind);
    const absl::Span<const double> bounds = Bounds(static_cast<int>(family.kind));
    // Per route id: the count of each bucket (the last one +Inf).
    std::map<uint32_t, std::vector<uint64_t>> per_route;
    for (const auto& [key, value] : counts) {
      if (KeyKind(key) != bucket_kind || KeyDetail(key) > bounds.size()) continue;
      std::vector<uint64_t>& buckets = per_route[KeyRoute(key)];
      buckets.resize(bounds.size() + 1);
      buckets[KeyDetail(key)] += value;
    }
    if (per_route.empty()) continue;
    AppendFamilyHeader(out, family.name, family.help, "histogram");
    const std::string bucket_name = absl::StrCat(family.name, "_bucket");
    const std::vector<std::string> le_labels = KongBucketLabels(bounds);
    for (const auto& [route_id, buckets] : per_route) {
      const uint64_t any_key = MakeKey(route_id, 0, 0, 0);
      const auto& [service, route] = route_labels(any_key);
      uint64_t running = 0;
      for (size_t b = 0; b <= bounds.size(); ++b) {
        running += buckets[b];
        AppendSample(out, bucket_name,
                     {{"service", service}, {"route", route}, {"workspace", "default"},
                      {"le", b < bounds.size() ? le_labels[b] : std::string("+Inf")}},
                     absl::StrCat(running));
      }
      auto sum = sums.find(MakeKey(route_id, 0, kSum + static_cast<uint64_t>(family.kind), 0));
      AppendSample(out, absl::StrCat(family.name, "_sum"),
                   {{"service", service}, {"route", route}, {"workspace", "default"}},
                   FormatSampleValue(sum == sums.end() ? 0.0 : sum->second));
      AppendSample(out, absl::StrCat(family.name, "_count"),
                   {{"service", service}, {"route", route}, {"workspace", "default"}}, absl::StrCat(running));
    }
  }
}

}  // namespace portico::dp::plugins
