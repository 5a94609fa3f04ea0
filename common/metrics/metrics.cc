#include "common/metrics/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace portico {
namespace {

void AtomicAdd(std::atomic<double>& a, double d) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

std::string FormatDouble(double v) { return FormatSampleValue(v); }

std::string RenderLabels(const Labels& labels, const std::string& extra_name = "",
                         const std::string& extra_value = "") {
  if (labels.empty() && extra_name.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ",";
    first = false;
    out += k + "=\"" + EscapeLabelValue(v) + "\"";
  }
  if (!extra_name.empty()) {
    if (!first) out += ",";
    out += extra_name + "=\"" + extra_value + "\"";
  }
  return out + "}";
}

}  // namespace

std::string FormatSampleValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.15g", v);  // shortest form that reads back exactly
  if (std::strtod(buf, nullptr) != v) std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}


Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

Registry::Series* Registry::FindOrAdd(const std::string& name, const std::string& help, Kind kind,
                                      const Labels& labels, bool* created) {
  Family& family = families_[name];
  if (family.series.empty()) {
    family.help = help;
    family.kind = kind;
  }
  for (Series& s : family.series) {
    if (s.labels == labels) {
      *created = false;
      return &s;
    }
  }
  family.series.push_back(Series{labels});
  *created = true;
  return &family.series.back();
}

Counter* Registry::AddCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool created;
  Series* s = FindOrAdd(name, help, Kind::kCounter, labels, &created);
  if (created) s->counter = &counters_.emplace_back();
  return s->counter;
}

Gauge* Registry::AddGauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool created;
  Series* s = FindOrAdd(name, help, Kind::kGauge, labels, &created);
  if (created) s->gauge = &gauges_.emplace_back();
  return s->gauge;
}

Histogram* Registry::AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> upper_bounds, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool created;
  Series* s = FindOrAdd(name, help, Kind::kHistogram, labels, &created);
  if (created) {
    histograms_.push_back(std::make_unique<Histogram>(std::move(upper_bounds)));
    s->histogram = histograms_.back().get();
  }
  return s->histogram;
}

void Registry::AddCallbackGauge(const std::string& name, const std::string& help,
                                std::function<double()> read, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool created;
  Series* s = FindOrAdd(name, help, Kind::kGauge, labels, &created);
  s->callback = std::move(read);
}

void Registry::AddCallbackCounter(const std::string& name, const std::string& help,
                                  std::function<double()> read, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool created;
  Series* s = FindOrAdd(name, help, Kind::kCounter, labels, &created);
  s->callback = std::move(read);
}

std::string Registry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    const char* type = family.kind == Kind::kCounter   ? "counter"
                       : family.kind == Kind::kGauge   ? "gauge"
                                                       : "histogram";
    out += "# HELP " + name + " " + family.help + "\n# TYPE " + name + " " + type + "\n";
    for (const Series& s : family.series) {
      if (s.counter != nullptr) {
        out += name + RenderLabels(s.labels) + " " + std::to_string(s.counter->value()) + "\n";
      } else if (s.callback) {
        out += name + RenderLabels(s.labels) + " " + FormatDouble(s.callback()) + "\n";
      } else if (s.gauge != nullptr) {
        out += name + RenderLabels(s.labels) + " " + FormatDouble(s.gauge->value()) + "\n";
      } else if (s.histogram != nullptr) {
        std::vector<uint64_t> counts = s.histogram->CumulativeCounts();
        const std::vector<double>& bounds = s.histogram->bounds();
        for (size_t i = 0; i < bounds.size(); ++i) {
          out += name + "_bucket" + RenderLabels(s.labels, "le", FormatDouble(bounds[i])) + " " +
                 std::to_string(counts[i]) + "\n";
        }
        out += name + "_bucket" + RenderLabels(s.labels, "le", "+Inf") + " " +
               std::to_string(counts.back()) + "\n";
        out += name + "_sum" + RenderLabels(s.labels) + " " + FormatDouble(s.histogram->sum()) + "\n";
        out += name + "_count" + RenderLabels(s.labels) + " " + std::to_string(s.histogram->count()) + "\n";
      }
    }
  }
  return out;
}

}  // namespace portico
