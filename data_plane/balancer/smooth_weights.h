#pragma once
// nginx's smooth weighted round-robin as a precomputed sequence, shared by the balancer's
// round-robin and the SRV schedule of a DNS answer.
#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace portico::dp {

// Indexes into `weights` (each > 0) in nginx's smooth weighted order: over the sequence each
// index appears in proportion to its weight, never in a burst. The weights are divided by their
// GCD; when they still sum to more than `max_length`, they are scaled down to about that sum,
// each keeping at least one entry.
std::vector<uint32_t> SmoothWeightedSequence(absl::Span<const uint64_t> weights, uint64_t max_length);

}  // namespace portico::dp
