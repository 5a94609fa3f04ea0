#pragma once
// Prometheus metrics (text exposition format 0.0.4). Counters, gauges and histograms are lock-free
// to update (relaxed atomics); registration and Render() take a mutex. Metric objects live as long
// as the Registry and their addresses never change.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace portico {

// Content-Type of Registry::Render() output (Prometheus text format 0.0.4).
inline constexpr char kTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

using Labels = std::map<std::string, std::string>;

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // sorted ascending; +Inf is implicit
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative count per bound, then the +Inf count; and the sum.
  std::vector<uint64_t> CumulativeCounts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

class Registry {
 public:
  // Same name + labels returns the same object. Name and label names must match
  // [a-zA-Z_:][a-zA-Z0-9_:]*; the caller is trusted (names are compile-time constants).
  Counter* AddCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge* AddGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram* AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> upper_bounds, const Labels& labels = {});
  // A gauge whose value is read at Render() time (called with the registry mutex held: must not
  // call back into the registry).
  void AddCallbackGauge(const std::string& name, const std::string& help,
                        std::function<double()> read, const Labels& labels = {});
  // The same for a counter kept elsewhere (`read` must never decrease).
  void AddCallbackCounter(const std::string& name, const std::string& help,
                          std::function<double()> read, const Labels& labels = {});

  std::string Render() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Series {
    Labels labels;
    Counter* counter = nullptr;
    Gauge* gauge = nullptr;
    Histogram* histogram = nullptr;
    std::function<double()> callback;
  };
  struct Family {
    std::string help;
    Kind kind;
    std::vector<Series> series;
  };
  Series* FindOrAdd(const std::string& name, const std::string& help, Kind kind,
                    const Labels& labels, bool* created);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  std::deque<Counter> counters_;
  std::deque<Gauge> gauges_;
  std::deque<std::unique_ptr<Histogram>> histograms_;
};

// Prometheus text escaping of a label value (backslash, double quote, newline).
std::string EscapeLabelValue(const std::string& value);
// A sample value as Prometheus text: the shortest decimal that reads back exactly, +Inf, -Inf, NaN.
std::string FormatSampleValue(double v);

}  // namespace portico
