#pragma once
// Helpers shared by the real-process sync tests (sync_fault_test.cc, delta_sync_test.cc): a
// proxied-request loop that counts failures, and Prometheus text lookups.
#include <atomic>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/integration/cluster.h"

namespace portico::testing {

inline size_t CountOccurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

// Value of one Prometheus sample line `series value` (series with its labels, exactly as
// rendered); nullopt if absent.
inline std::optional<double> MetricValue(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.size() > series.size() && line.substr(0, series.size()) == series &&
        line[series.size()] == ' ') {
      double v;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
    }
  }
  return std::nullopt;
}

// Proxied requests in a loop on one thread; counts successes and failures (anything but 200).
class LoadLoop {
 public:
  LoadLoop(Cluster* cluster, const DataPlane* dp, std::string target)
      : cluster_(cluster), dp_(dp), target_(std::move(target)) {
    thread_ = std::thread([this] {
      while (!stop_) {
        HttpResult r = cluster_->Proxy(*dp_, target_);
        if (r.ok && r.status == 200) {
          ++ok_;
        } else if (failed_++ == 0) {
          first_failure_ = absl::StrCat(r.status, " ", r.error, " ", r.body);
        }
      }
    });
  }
  ~LoadLoop() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int ok() const { return ok_.load(); }
  int failed() const { return failed_.load(); }
  const std::string& first_failure() const { return first_failure_; }  // after Stop()

 private:
  Cluster* cluster_;
  const DataPlane* dp_;
  std::string target_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
  std::string first_failure_;
  std::thread thread_;
};

}  // namespace portico::testing
