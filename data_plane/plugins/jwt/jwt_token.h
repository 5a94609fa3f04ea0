#pragma once
// A compact JWT decoded the way Kong's jwt_parser.lua decodes it, without building a JSON tree:
// the three segments are base64-decoded into one caller-kept scratch string and the JSON texts
// are scanned for the few members the jwt plugin reads. Never allocates once the scratch string
// has the capacity (token length + 16); never reads outside its input; any byte string is a valid
// input (tests/fuzz/jwt_token_fuzz.cc).
#include <string>

#include "absl/strings/string_view.h"

namespace portico::dp::plugins::jwt {

// Kong's base64 decoding (nginx's decoder after '-' -> '+' and '_' -> '/'): input stops at the
// first '=', a character outside the alphabet before it or a length of 4n+1 fails. Appends the
// bytes to `out`.
bool DecodeBase64(absl::string_view in, std::string* out);

// A top-level member of a JSON object as found in the text.
struct JsonMember {
  enum Type { kMissing, kString, kNumber, kOther };
  Type type = kMissing;
  absl::string_view raw;  // kString: the characters between the quotes, escapes not decoded
  bool escaped = false;   // kString: raw contains a backslash escape
  double number = 0;      // kNumber
};

// The decoded text of a JSON string member (raw unescaped into `storage` when it has escapes).
absl::string_view JsonStringValue(const JsonMember& member, std::string* storage);
// Whether the decoded text of a string member equals `text` (ASCII case-insensitively with
// `ignore_case`). No allocation.
bool JsonStringEquals(const JsonMember& member, absl::string_view text, bool ignore_case = false);

enum class TokenError {
  kNone,
  kInvalidJson,       // a segment is missing, not base64, or not JSON
  kInvalidTyp,        // a `typ` other than "JWT" (any case)
  kInvalidAlg,        // no `alg`, or one not in Kong's list
  kInvalidSignature,  // the signature segment is not base64
};
// Kong's text after "Bad token; ".
absl::string_view TokenErrorText(TokenError error);

struct DecodedToken {
  absl::string_view signing_input;  // "<header>.<claims>" as sent
  absl::string_view signature;      // decoded bytes
  JsonMember alg;                   // header
  JsonMember header_key;            // header[key_claim_name]
  JsonMember claims_key;            // claims[key_claim_name]
  JsonMember exp, nbf;              // claims
};

// Decodes `token` into `scratch` (overwritten; the views in `out` point into it and into `token`).
// A JSON text that is an array or a scalar has no members (Kong indexes it and finds nothing).
TokenError DecodeToken(absl::string_view token, absl::string_view key_claim_name, std::string* scratch,
                       DecodedToken* out);

// The token of an Authorization-style value, as Kong's `\s*[Bb]earer\s+(.+)` finds it (unanchored);
// empty when it does not match.
absl::string_view BearerToken(absl::string_view value);

}  // namespace portico::dp::plugins::jwt
