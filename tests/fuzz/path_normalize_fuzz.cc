// Fuzz target: the request path normaliser and what the proxy sends upstream from its result.
// The input is the path part of a request-target, as the proxy hands it to the router
// (SplitRequestTarget, then dp::NormalizeRequestPath).
//
// Invariants (each id is what FUZZ_CHECK prints):
//   same-as-config      dp::NormalizeRequestPath == common/config NormalizeUriPath (one rule
//                       for routing and for validating route paths) when every '%' starts a %XX
//                       triplet (the router first writes a bare '%' as %25)
//   idempotent          normalising the result again changes nothing
//   shrinks             the result is never longer than the input (plus 2 bytes per bare '%')
//   leading-slash       "/..." stays "/..."
//   no-dot-segment      (input starting with '/') no "." or ".." segment left
//   no-double-slash     (input starting with '/') no "//" left
//   no-new-delimiter    decoding never creates '/', '?' or '#' (reserved stay encoded): each occurs
//                       at most as often as in the input
//   escape-legal        dp::EscapeUpstreamPath(result) holds only bytes a request-target may
//                       carry (RFC 3986 pchar, '/', '?', '%', and '[' ']', which Kong's escape keeps
//                       and servers accept): no SP, CTL, DEL, '#', byte >= 0x80, nor any of "<>\^`{|}
//   escape-slash        the escaped path starts with '/' exactly when the normalised one does
//   escape-idempotent   escaping the escaped path changes nothing
//   escape-roundtrip    normalising the escaped path gives the normalised path back (an upstream
//                       applying the same rules sees the path the router matched; a raw '#' comes
//                       back as %23)
//   upstream-*          for service paths "", "/", "/base", "/b.c/" and a few prefixes of the
//                       result (what a plain route can match: "", "/", up to the first and the last
//                       inner '/', all of it), with or without strip_path (one service path and
//                       strip mode per input, picked from its length and last byte):
//                       dp::BuildUpstreamPath + EscapeUpstreamPath is a legal target starting
//                       with '/', has no dot segment, and, normalised, still starts with the
//                       service path (no escape above the service path)
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/config/validate.h"
#include "data_plane/router/router.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using portico::fuzz::Show;

// Bytes an origin-form request-target may carry (RFC 9112 §3.2.1, RFC 3986 pchar + "/" + "?"),
// '%' also alone (checked by escape-roundtrip instead), and '[' ']' (gen-delims that RFC 3986 keeps
// for IP literals; Kong's escape leaves them in paths and servers accept them).
bool LegalTargetByte(unsigned char c) {
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  if (c >= '0' && c <= '9') return true;
  return c < 0x80 && absl::StrContains("-._~!$&'()*+,;=:@/?%[]", static_cast<char>(c));
}

bool HasDotSegment(absl::string_view path) {
  for (absl::string_view segment : absl::StrSplit(path, '/')) {
    if (segment == "." || segment == "..") return true;
  }
  return false;
}

bool EveryPercentStartsTriplet(absl::string_view s) {
  for (size_t i = s.find('%'); i != absl::string_view::npos; i = s.find('%', i + 1)) {
    if (i + 2 >= s.size() || !absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      return false;
    }
  }
  return true;
}

size_t Count(absl::string_view s, char c) {
  size_t n = 0;
  for (char x : s) n += x == c;
  return n;
}

struct UpstreamCase {
  absl::string_view service_path;
  absl::string_view normalized;
  absl::string_view matched;
  bool strip;
  std::string Describe(absl::string_view target) const {
    return absl::StrCat("service path ", Show(service_path), " path ", Show(normalized), " matched ", Show(matched),
                        " strip ", strip, " gave ", Show(target));
  }
};

void CheckUpstreamTarget(const UpstreamCase& c, const std::string& target) {
  for (unsigned char ch : target) {
    if (!FUZZ_CHECK(LegalTargetByte(ch), "upstream-legal", absl::StrCat("byte ", int{ch}, ": ", c.Describe(target)))) {
      return;
    }
  }
  FUZZ_CHECK(absl::StartsWith(target, "/"), "upstream-slash", c.Describe(target));
  FUZZ_CHECK(!HasDotSegment(target), "upstream-no-dot-segment", c.Describe(target));
}

void CheckUpstream(const std::string& normalized) {
  static const char* const kServicePaths[] = {"", "/", "/base", "/b.c/"};
  // What a plain route path can have matched: a prefix (the router is not segment-aware). Every
  // length would be quadratic; take the empty one, "/", the ends before the first and the last
  // inner '/', and the whole path.
  const size_t first_slash = normalized.find('/', 1);
  const size_t last_slash = normalized.rfind('/');
  std::vector<size_t> ends = {0, std::min<size_t>(1, normalized.size()), normalized.size()};
  if (first_slash != std::string::npos) ends.push_back(first_slash);
  if (last_slash != std::string::npos && last_slash > 0 && last_slash != first_slash) ends.push_back(last_slash);
  // One service path and strip mode per input (from its length), all the prefixes: checking every
  // combination for every input made the target 8 times slower for little more coverage.
  const size_t pick = normalized.size() + static_cast<unsigned char>(normalized.empty() ? 0 : normalized.back());
  {
    const char* service_path = kServicePaths[pick % 4];
    const absl::string_view base = absl::StripSuffix(service_path, "/");
    for (size_t end : ends) {
      for (bool strip : {(pick / 4) % 2 == 0}) {
        const UpstreamCase c{service_path, normalized, absl::string_view(normalized).substr(0, end), strip};
        const std::string joined = portico::dp::BuildUpstreamPath(c.service_path, normalized, c.matched, strip);
        const std::string target = portico::dp::EscapeUpstreamPath(joined);
        CheckUpstreamTarget(c, target);
        const std::string renormalized = portico::dp::NormalizeRequestPath(target);
        FUZZ_CHECK(absl::StartsWith(renormalized, base), "upstream-below-service-path",
                   absl::StrCat(c.Describe(target), " normalised ", Show(renormalized)));
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string normalized = portico::dp::NormalizeRequestPath(input);

  if (EveryPercentStartsTriplet(input)) {
    FUZZ_CHECK(normalized == portico::NormalizeUriPath(input), "same-as-config", Show(input));
  }
  const std::string twice = portico::dp::NormalizeRequestPath(normalized);
  FUZZ_CHECK(twice == normalized, "idempotent",
             absl::StrCat(Show(input), " -> ", Show(normalized), " -> ", Show(twice)));
  size_t stray_percents = 0;  // each written as %25 first: two bytes more
  for (size_t i = input.find('%'); i != absl::string_view::npos; i = input.find('%', i + 1)) {
    stray_percents += !EveryPercentStartsTriplet(input.substr(i, 3));
  }
  FUZZ_CHECK(normalized.size() <= input.size() + 2 * stray_percents, "shrinks",
             absl::StrCat(Show(input), " -> ", Show(normalized)));
  // The proxy hands over only paths that start with '/' (SplitRequestTarget/ParseRequestTarget),
  // so the shape checks apply to those; idempotence above holds for any input.
  const bool absolute = absl::StartsWith(input, "/");
  if (absolute) {
    FUZZ_CHECK(absl::StartsWith(normalized, "/"), "leading-slash", absl::StrCat(Show(input), " -> ", Show(normalized)));
    FUZZ_CHECK(!HasDotSegment(normalized), "no-dot-segment", absl::StrCat(Show(input), " -> ", Show(normalized)));
    FUZZ_CHECK(!absl::StrContains(normalized, "//"), "no-double-slash",
               absl::StrCat(Show(input), " -> ", Show(normalized)));
  }
  for (char c : {'/', '?', '#'}) {
    FUZZ_CHECK(Count(normalized, c) <= Count(input, c), "no-new-delimiter",
               absl::StrCat("'", std::string(1, c), "' in ", Show(input), " -> ", Show(normalized)));
  }

  const std::string escaped = portico::dp::EscapeUpstreamPath(normalized);
  bool legal = true;
  for (unsigned char c : escaped) {
    legal = FUZZ_CHECK(LegalTargetByte(c), "escape-legal",
                       absl::StrCat("byte ", int{c}, " in ", Show(escaped), " from ", Show(input)));
    if (!legal) break;
  }
  FUZZ_CHECK(absl::StartsWith(escaped, "/") == absl::StartsWith(normalized, "/"), "escape-slash",
             absl::StrCat(Show(normalized), " -> ", Show(escaped)));
  FUZZ_CHECK(portico::dp::EscapeUpstreamPath(escaped) == escaped, "escape-idempotent", Show(escaped));
  // A raw '#' (the proxy refuses it in a request-target) goes up as %23, which stays encoded.
  const std::string renormalized = portico::dp::NormalizeRequestPath(escaped);
  FUZZ_CHECK(renormalized == absl::StrReplaceAll(twice, {{"#", "%23"}}), "escape-roundtrip",
             absl::StrCat(Show(input), " -> ", Show(normalized), " escaped ", Show(escaped), " -> ",
                          Show(renormalized)));

  if (absolute) CheckUpstream(normalized);
  return 0;
}
