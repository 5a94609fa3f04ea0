#include "data_plane/plugins/opentelemetry/trace_context.h"

#include <random>

namespace portico::dp::plugins {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase is invalid in traceparent
}

// `2 * n` lowercase hex characters into `out`; false on any other character.
bool HexDecode(absl::string_view hex, uint8_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const int hi = HexValue(hex[2 * i]), lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& id) {
  for (uint8_t b : id) {
    if (b != 0) return false;
  }
  return true;
}

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

std::optional<TraceParent> ParseTraceparent(absl::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.size() < kTraceparentLength) return std::nullopt;
  uint8_t version = 0;
  if (!HexDecode(value.substr(0, 2), &version, 1) || version == 0xff) return std::nullopt;
  if (version == 0 && value.size() != kTraceparentLength) return std::nullopt;
  if (version != 0 && value.size() > kTraceparentLength && value[kTraceparentLength] != '-') return std::nullopt;
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') return std::nullopt;
  TraceParent parsed;
  if (!HexDecode(value.substr(3, 32), parsed.trace_id.data(), 16) ||
      !HexDecode(value.substr(36, 16), parsed.parent_id.data(), 8) ||
      !HexDecode(value.substr(53, 2), &parsed.flags, 1)) {
    return std::nullopt;
  }
  if (AllZero(parsed.trace_id) || AllZero(parsed.parent_id)) return std::nullopt;
  return parsed;
}

void HexEncode(const uint8_t* bytes, size_t n, char* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
}

void FormatTraceparent(const TraceId& trace_id, const SpanId& span_id, uint8_t flags, char* out) {
  out[0] = '0';
  out[1] = '0';
  out[2] = '-';
  HexEncode(trace_id.data(), 16, out + 3);
  out[35] = '-';
  HexEncode(span_id.data(), 8, out + 36);
  out[52] = '-';
  HexEncode(&flags, 1, out + 53);
}

IdGenerator::IdGenerator(uint64_t seed) {
  for (uint64_t& s : s_) s = SplitMix64(seed);
}

uint64_t IdGenerator::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

TraceId IdGenerator::NewTraceId() {
  TraceId id;
  do {
    const uint64_t hi = Next(), lo = Next();
    for (int i = 0; i < 8; ++i) {
      id[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
      id[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
    }
  } while (AllZero(id));
  return id;
}

SpanId IdGenerator::NewSpanId() {
  SpanId id;
  do {
    const uint64_t v = Next();
    for (int i = 0; i < 8; ++i) id[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
  } while (AllZero(id));
  return id;
}

IdGenerator& ThreadIdGenerator() {
  thread_local IdGenerator generator{(static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}()};
  return generator;
}

bool SampleByTraceId(const TraceId& trace_id, double rate) {
  if (rate >= 1.0) return true;
  if (rate <= 0.0) return false;
  uint64_t low = 0;
  for (int i = 8; i < 16; ++i) low = low << 8 | trace_id[i];
  // Compare the top 63 bits with rate * 2^63 (exact enough, no overflow).
  return static_cast<double>(low >> 1) < rate * 9223372036854775808.0;
}

namespace {

bool KeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/';
}

bool ValidTracestateKey(absl::string_view key) {
  const size_t at = key.find('@');
  if (at == absl::string_view::npos) {
    if (key.empty() || key.size() > 256 || !(key[0] >= 'a' && key[0] <= 'z')) return false;
  } else {
    const absl::string_view tenant = key.substr(0, at), system = key.substr(at + 1);
    if (tenant.empty() || tenant.size() > 241 || !(KeyChar(tenant[0]) && tenant[0] != '_' && tenant[0] != '-' &&
                                                   tenant[0] != '*' && tenant[0] != '/')) {
      return false;
    }
    if (system.empty() || system.size() > 14 || !(system[0] >= 'a' && system[0] <= 'z')) return false;
  }
  for (char c : key) {
    if (c != '@' && !KeyChar(c)) return false;
  }
  return true;
}

bool ValidTracestateValue(absl::string_view value) {
  if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
  for (char c : value) {
    if (c < 0x20 || c > 0x7e || c == ',' || c == '=') return false;
  }
  return true;
}

}  // namespace

bool ValidTracestate(absl::string_view value) {
  if (value.size() > kMaxTracestateLength) return false;
  size_t members = 0;
  for (size_t start = 0; start <= value.size();) {
    size_t end = value.find(',', start);
    if (end == absl::string_view::npos) end = value.size();
    absl::string_view member = value.substr(start, end - start);
    while (!member.empty() && (member.front() == ' ' || member.front() == '\t')) member.remove_prefix(1);
    while (!member.empty() && (member.back() == ' ' || member.back() == '\t')) member.remove_suffix(1);
    if (!member.empty()) {
      const size_t eq = member.find('=');
      if (eq == absl::string_view::npos || !ValidTracestateKey(member.substr(0, eq)) ||
          !ValidTracestateValue(member.substr(eq + 1)) || ++members > 32) {
        return false;
      }
    }
    start = end + 1;
  }
  return true;
}

}  // namespace portico::dp::plugins
