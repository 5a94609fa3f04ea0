// The jwt plugin's token decoding (data_plane/plugins/jwt/jwt_token.h) on any bytes, as a client
// can send them in an Authorization header, a query argument or a cookie. Invariants: decoding
// never reads outside the input (ASan), the scratch string never reallocates under the views, a
// decoded token's views point into the token or the scratch, and member values decode.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data_plane/plugins/jwt/jwt_token.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using portico::dp::plugins::jwt::DecodedToken;
using portico::dp::plugins::jwt::JsonMember;

bool Inside(absl::string_view part, absl::string_view whole) {
  return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace jwt = portico::dp::plugins::jwt;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const absl::string_view bearer = jwt::BearerToken(input);
  if (!Inside(bearer, input)) portico::fuzz::Violation("jwt-bearer-outside", std::string(input));
  const absl::string_view token = bearer.empty() ? input : bearer;

  std::string scratch;
  DecodedToken decoded;
  const jwt::TokenError error = jwt::DecodeToken(token, "iss", &scratch, &decoded);
  const char* const buffer = scratch.data();
  if (error == jwt::TokenError::kNone) {
    if (token.substr(0, decoded.signing_input.size()) != decoded.signing_input) {
      portico::fuzz::Violation("jwt-signing-input", std::string(token));
    }
    if (!Inside(decoded.signature, scratch)) portico::fuzz::Violation("jwt-signature-outside", std::string(token));
    std::string storage;
    for (const JsonMember* m : {&decoded.alg, &decoded.claims_key, &decoded.header_key, &decoded.exp, &decoded.nbf}) {
      if (m->type != JsonMember::kString) continue;
      const absl::string_view value = jwt::JsonStringValue(*m, &storage);
      if (!jwt::JsonStringEquals(*m, value)) portico::fuzz::Violation("jwt-unescape-mismatch", std::string(token));
    }
  }
  if (scratch.data() != buffer) portico::fuzz::Violation("jwt-scratch-moved", std::string(token));
  return 0;
}
