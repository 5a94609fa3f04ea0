#include "data_plane/plugins/ip_restriction/ip_restriction.h"

#include <arpa/inet.h>

#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

// Parses an IPv4 or IPv6 address into 16 bytes (IPv4 mapped); `is_v4` tells which it was.
bool ParseAddress(absl::string_view text, uint8_t out[16], bool* is_v4) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buf) || text.find('\0') != absl::string_view::npos) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  in_addr v4;
  if (inet_pton(AF_INET, buf, &v4) == 1) {
    std::memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    std::memcpy(out + 12, &v4, 4);
    *is_v4 = true;
    return true;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, buf, &v6) == 1) {
    std::memcpy(out, &v6, 16);
    *is_v4 = false;
    return true;
  }
  return false;
}

class IpRestriction final : public PluginHandler {
 public:
  IpRestriction(IpBlockSet allow, IpBlockSet deny, int status, std::string message)
      : allow_(std::move(allow)), deny_(std::move(deny)), status_(status), message_(std::move(message)) {}

  StepStatus Access(RequestContext& request) const override {
    const bool denied = (!deny_.empty() && deny_.Contains(request.client_ip)) ||
                        (!allow_.empty() && !allow_.Contains(request.client_ip));
    if (!denied) return StepStatus::kContinue;
    LocalResponse response;
    response.status = status_;
    if (message_.empty()) {
      request.response_text.assign("IP address not allowed: ");
      request.response_text.append(request.client_ip.data(), request.client_ip.size());
      response.message = request.response_text;
    } else {
      response.message = message_;
    }
    request.Respond(response);
    return StepStatus::kStop;
  }

 private:
  const IpBlockSet allow_;
  const IpBlockSet deny_;
  const int status_;
  const std::string message_;  // empty: Kong's default with the address
};

}  // namespace

bool IpBlockSet::Add(absl::string_view text) {
  Block block;
  bool is_v4 = false;
  const size_t slash = text.find('/');
  if (!ParseAddress(text.substr(0, slash), block.bytes, &is_v4)) return false;
  int bits = is_v4 ? 32 : 128;
  if (slash != absl::string_view::npos) {
    if (!absl::SimpleAtoi(text.substr(slash + 1), &bits) || bits < 0 || bits > (is_v4 ? 32 : 128)) return false;
  }
  block.prefix_bits = is_v4 ? 96 + bits : bits;
  blocks_.push_back(block);
  return true;
}

bool IpBlockSet::Contains(absl::string_view address) const {
  uint8_t bytes[16];
  bool is_v4 = false;
  if (!ParseAddress(address, bytes, &is_v4)) return false;
  for (const Block& block : blocks_) {
    const int full = block.prefix_bits / 8;
    const int rest = block.prefix_bits % 8;
    if (std::memcmp(bytes, block.bytes, full) != 0) continue;
    if (rest != 0) {
      const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
      if ((bytes[full] & mask) != (block.bytes[full] & mask)) continue;
    }
    return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileIpRestriction(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  IpBlockSet allow, deny;
  for (const char* list : {"allow", "deny"}) {
    if (!config[list].is_array()) continue;
    IpBlockSet& set = std::string(list) == "allow" ? allow : deny;
    int index = 0;
    for (const nlohmann::json& item : config[list]) {
      ++index;
      if (!set.Add(item.get<std::string>())) {
        return absl::InvalidArgumentError(
            absl::StrCat("config.", list, ".", index, ": invalid ip or cidr range: '", item.get<std::string>(), "'"));
      }
    }
  }
  const int status = config["status"].is_number_integer() ? config["status"].get<int>() : 403;
  std::string message = config["message"].is_string() ? config["message"].get<std::string>() : std::string();
  return std::make_unique<const IpRestriction>(std::move(allow), std::move(deny), status, std::move(message));
}

}  // namespace portico::dp::plugins
