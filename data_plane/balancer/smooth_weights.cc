#include "data_plane/balancer/smooth_weights.h"

#include <algorithm>
#include <numeric>

namespace portico::dp {

std::vector<uint32_t> SmoothWeightedSequence(absl::Span<const uint64_t> weights, uint64_t max_length) {
  std::vector<uint32_t> sequence;
  if (weights.empty()) return sequence;
  uint64_t divisor = 0;
  for (uint64_t w : weights) divisor = std::gcd(divisor, std::max<uint64_t>(1, w));
  std::vector<int64_t> scaled;
  uint64_t sum = 0;
  for (uint64_t w : weights) {
    scaled.push_back(static_cast<int64_t>(std::max<uint64_t>(1, w) / divisor));
    sum += static_cast<uint64_t>(scaled.back());
  }
  if (sum > max_length) {  // each keeps its share within half an entry, and at least one
    uint64_t scaled_sum = 0;
    for (int64_t& w : scaled) {
      w = std::max<int64_t>(1, (w * static_cast<int64_t>(max_length) + static_cast<int64_t>(sum) / 2) /
                                   static_cast<int64_t>(sum));
      scaled_sum += static_cast<uint64_t>(w);
    }
    sum = scaled_sum;
  }
  std::vector<int64_t> current(scaled.size(), 0);
  sequence.reserve(sum);
  for (uint64_t step = 0; step < sum; ++step) {
    size_t best = 0;
    for (size_t i = 0; i < scaled.size(); ++i) {
      current[i] += scaled[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= static_cast<int64_t>(sum);
    sequence.push_back(static_cast<uint32_t>(best));
  }
  return sequence;
}

}  // namespace portico::dp
