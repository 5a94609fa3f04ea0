#include "data_plane/pipeline/query_arguments.h"

#include "absl/strings/ascii.h"

namespace portico::dp {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void DecodeQueryValue(absl::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && HexValue(in[i + 1]) >= 0 && HexValue(in[i + 2]) >= 0) {
      out->push_back(static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
    } else {
      out->push_back(in[i] == '+' ? ' ' : in[i]);
    }
  }
}

void AppendEscaped(std::string* out, absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out->push_back(static_cast<char>(c));
    } else {
      const char escaped[3] = {'%', kHex[c >> 4], kHex[c & 15]};
      out->append(escaped, 3);
    }
  }
}

}  // namespace portico::dp
