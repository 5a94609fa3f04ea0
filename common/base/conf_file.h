#pragma once
// The configuration file of portico-cp and portico-dp (`--conf FILE`), in the syntax of kong.conf:
//
//   # a comment          (a line starting with ';' is one too)
//   key = value            # surrounding whitespace is trimmed; '#' starts a comment...
//   some_key = a\#b        # ...unless escaped as \#, which gives '#'
//   other_key =            # an empty value is no value: the default applies
//
// Keys are lower case letters, digits and '_'. A key may appear once. A UTF-8 byte order mark
// before the first line is skipped. Errors never show the text of a line that is not
// `key = value` (it may be key material: a PEM file given as the configuration file). Flags (common/base/flags.h)
// read the file: every flag `--foo-bar` is the key `foo_bar`, and each binary adds Kong's names as
// ConfKeys (control_plane/conf_keys.h, data_plane/conf_keys.h). docs/operations.md, "Configuration
// file", lists them.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace portico {

struct ConfLine {
  std::string key;
  std::string value;  // trimmed, comment removed, \# unescaped; never empty
  int line = 0;       // 1-based
};

struct ConfText {
  std::vector<ConfLine> lines;      // every well-formed line with a value, in order (duplicates excluded)
  std::vector<std::string> errors;  // "PATH:LINE: message", one per bad line
};

// Parses the text of a configuration file; `path` only names it in errors. Never fails as a whole:
// every malformed line and every repeated key is one error, and the good lines are still returned.
// Text that looks like a PEM file (a line starting with "-----BEGIN") gives one error and no lines.
ConfText ParseConfText(absl::string_view text, absl::string_view path);

// For error messages: the printable ASCII of `text` (other bytes as '?'), at most 80 characters
// (then "...").
std::string PrintableExcerpt(absl::string_view text);

// Flag values a configuration key sets: (flag name without "--", value).
using FlagValues = std::vector<std::pair<std::string, std::string>>;

// A configuration key that is not simply a flag's name, or whose value syntax differs (Kong's
// names): `translate` turns the file's value into values of `flags` (it may set some or none of
// them), or an error that names neither the file nor the line (the caller adds them).
struct ConfKey {
  std::string key;                 // "cluster_cert_key"
  std::vector<std::string> flags;  // the flags it may set: {"cluster-key"}
  std::function<absl::StatusOr<FlagValues>(absl::string_view value)> translate;
};

// `key` sets `flag` to the value as written.
ConfKey RenamedKey(std::string key, std::string flag);

// `key` sets `flag`, a file path, to the value as written. Kong also takes the PEM text itself (or
// its base64) in such keys; Portico takes a path only: a value that looks like key material (starts
// with "-----BEGIN", decodes as base64 of a PEM, or is 100+ characters without '/') is refused,
// without being shown.
ConfKey PathKey(std::string key, std::string flag);
bool LooksLikeInlinePem(absl::string_view value);

// Kong's listener list, "ADDR [flag...][, ADDR [flag...]]" (proxy_listen = 0.0.0.0:8000 reuseport
// backlog=16384, 0.0.0.0:8443 http2 ssl): the entry without `ssl` sets `plain_flag`, the one with
// `ssl` sets `ssl_flag` (which becomes "off" when no entry has it). An empty `ssl_flag` refuses
// `ssl`. Exactly one plain entry is required (Portico's listeners of this kind cannot be off).
// Flags accepted and without effect: reuseport (Portico always sets SO_REUSEPORT), backlog=N,
// deferred, bind, http2 (HTTP/2 is the binary's own setting); any other flag, `off`, or an
// address ParseHostPort refuses is an error.
ConfKey KongListenKey(std::string key, std::string plain_flag, std::string ssl_flag);

// Kong's `role`: `expected` (control_plane or data_plane) is accepted and sets nothing; anything
// else is an error naming `binary`.
ConfKey KongRoleKey(std::string expected, std::string binary);

// Kong's `log_level` onto --log-level: nginx's levels notice -> info, crit/alert/emerg -> error;
// the others as written (--log-level validates them).
ConfKey KongLogLevelKey();

// Kong's `cluster_mtls`: `pki` (certificates chained to a CA, which is what Portico's cluster
// does) is accepted and sets nothing; `shared` (one certificate for every node) is refused.
ConfKey KongClusterMtlsKey();

// nginx's size syntax (Kong's nginx_*_client_max_body_size): N, Nk, Nm or Ng (any case) in bytes,
// N > 0. False if malformed or above 2^53.
bool ParseNginxSize(absl::string_view text, uint64_t* bytes);

}  // namespace portico
