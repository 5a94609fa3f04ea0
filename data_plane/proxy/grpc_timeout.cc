#include "data_plane/proxy/grpc_timeout.h"

namespace portico::dp {

std::optional<int64_t> ParseGrpcTimeoutMs(absl::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  int64_t amount = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    amount = amount * 10 + (c - '0');
  }
  switch (value.back()) {
    case 'H':
      return amount * 3600 * 1000;
    case 'M':
      return amount * 60 * 1000;
    case 'S':
      return amount * 1000;
    case 'm':
      return amount;
    case 'u':
      return (amount + 999) / 1000;
    case 'n':
      return (amount + 999999) / 1000000;
    default:
      return std::nullopt;
  }
}

}  // namespace portico::dp
