#pragma once
// Command-line flags that can also come from the environment: `--admin-listen X` or
// `--admin-listen=X` or PORTICO_ADMIN_LISTEN=X (the command line wins). Boolean flags take no value
// on the command line (`--allow-debug-header`) or an explicit one (`--allow-debug-header=false`);
// boolean values are true/false, 1/0, yes/no, on/off (any case), anything else is an error.
// `--help`, `-h` and `--version` are always understood; the caller asks help_requested() and
// version_requested() and answers them (see AnswerHelpOrVersion).
// With EnableConfFile, `--conf FILE` (or PORTICO_CONF) also reads a configuration file
// (common/base/conf_file.h): command line > environment > file > default, flag by flag.
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/conf_file.h"

namespace portico {

struct FlagSpec {
  std::string name;           // "admin-listen"
  std::string default_value;  // "" = no default
  std::string help;
  bool is_bool = false;
};

class Flags {
 public:
  explicit Flags(std::vector<FlagSpec> specs) : specs_(std::move(specs)) {}

  // Adds the flag --conf FILE. Parse then reads FILE after the command line and the environment,
  // and takes from it the flags neither gave. Its keys: every flag's name with '_' for '-'
  // (admin_listen), and `keys`, which win over those names. Call before Parse.
  void EnableConfFile(std::vector<ConfKey> keys);

  // Parses argv[first..argc); positional arguments are kept in order. Unknown flags and malformed
  // boolean values are errors, unless --help/-h or --version is among the arguments: then parsing
  // stops with OK and the matching *_requested() is true. Then the configuration file, if any (a
  // regular file; a pipe or device is refused, not waited on): its errors (unreadable file, syntax,
  // unknown or repeated keys, keys setting the same flag, bad Kong values, booleans) are returned
  // in one status, one "FILE:LINE: ..." per line, the first 20 then "FILE: ... and N more errors".
  absl::Status Parse(int argc, char** argv, int first = 1);
  bool help_requested() const { return help_requested_; }
  bool version_requested() const { return version_requested_; }

  const std::string& Get(const std::string& name) const;  // value, env value or default
  bool GetBool(const std::string& name) const;
  bool IsSet(const std::string& name) const { return values_.count(name) > 0; }  // flag, env or file
  const std::vector<std::string>& positional() const { return positional_; }
  std::string Usage() const;  // one entry per flag: name, help, default, environment variable

  // "admin-listen" -> "PORTICO_ADMIN_LISTEN"
  static std::string EnvName(const std::string& flag);

  // `status` unchanged, or, when its message names flags (--name) whose values came from the
  // configuration file, that message prefixed with their lines: "FILE:LINE (key)[, ...]: ".
  absl::Status Explain(const absl::Status& status) const;
  // The flags named (--name) in `message` whose values came from the configuration file, in order.
  std::vector<std::string> ConfFlagsNamedIn(absl::string_view message) const;
  // Forgets a value the configuration file gave `flag` (the default applies again); a value from
  // the command line or the environment stays.
  void DropConfValue(const std::string& flag);
  // Where a flag's value may come from, for messages: "PORTICO_CLUSTER_KEY" or, with a
  // configuration file, "PORTICO_CLUSTER_KEY or cluster_key/cluster_cert_key in --conf".
  std::string OtherSources(const std::string& flag) const;

 private:
  struct ConfOrigin {
    std::string where;  // "FILE:LINE"
    std::string key;
  };
  const FlagSpec* Find(const std::string& name) const;
  absl::Status ReadConfFile(const std::string& path);
  std::vector<std::string> ConfKeysOf(const std::string& flag) const;  // keys that may set it
  std::vector<FlagSpec> specs_;
  bool conf_enabled_ = false;
  std::vector<ConfKey> conf_keys_;
  std::map<std::string, std::string> values_;
  std::map<std::string, ConfOrigin> conf_origins_;  // flags whose value came from the file
  std::vector<std::string> positional_;
  bool help_requested_ = false;
  bool version_requested_ = false;
};

// `portico-cp check FILE` / `portico-dp check FILE`: the binary's own start-up validation, run in
// rounds until it passes or finds an error it cannot see past. A round that fails on values from
// the file records the error and the next round runs without those values (defaults instead), so
// every bad value of the file is listed, not only the first. After a value was dropped, an error
// that names no other file value (it may be a consequence of the drop, or come from the
// environment or a flag) ends the rounds unrecorded, as does one about a dropped flag.
class ConfCheck {
 public:
  // A round: the binary's validation with `check` (it calls Prepare after Flags::Parse and Record
  // on its first error). Returns its exit code: 0 when everything it validates is valid.
  using Round = std::function<int(ConfCheck* check)>;

  // `PROGRAM check FILE [flags]` (argv[1] is "check"): usage and --help (exit 2 for a missing or
  // empty FILE, or a --conf after it), then Run with rounds of `serve(argc', argv', check)` where
  // argv' is "PROGRAM --conf FILE [flags]". Returns the exit code.
  static int Main(absl::string_view program, int argc, char** argv,
                  const std::function<int(int, char**, ConfCheck*)>& serve);
  // Runs rounds (at most 64). Prints "configuration at <path> is valid" on stdout and returns 0,
  // or prints "<program>: <error message>" per error on stderr and returns 1, or, when a round fails
  // without recording (a usage error, which prints its own message), returns its code at once.
  static int Run(absl::string_view program, absl::string_view path, const Round& round);

  void Prepare(Flags& flags) const;
  // Records `error` (located with Flags::Explain); returns 1.
  int Record(const Flags& flags, const absl::Status& error);

 private:
  std::vector<std::string> dropped_;  // flags whose file values were found bad
  std::vector<std::string> errors_;
  bool done_ = false;  // the last error named no file value, or one already dropped
};

// Parses a boolean flag value (true/false, 1/0, yes/no, on/off, any case). False if it is none.
bool ParseBoolValue(absl::string_view text, bool* value);

// If --help or --version was given, prints to stdout and returns true (the caller exits 0):
// help is "usage: <usage>\n\n<description>\n\nflags:\n" + the flag list; version is
// "<program> <version>".
bool AnswerHelpOrVersion(const Flags& flags, absl::string_view program, absl::string_view usage,
                         absl::string_view description);

// Error naming the first of `names` that has no value (flag or environment variable).
absl::Status RequireFlags(const Flags& flags, std::initializer_list<const char*> names);
// Reads --log-level (debug|info|warn|error) and sets the process log level.
absl::Status ApplyLogLevelFlag(const Flags& flags);
// The value of --`name` as a finite number in [min, max] (NaN and infinities refused); the error
// names the flag, the range and `unit` (for example "seconds", may be empty).
absl::StatusOr<double> NumberFlag(const Flags& flags, const char* name, double min, double max,
                                  absl::string_view unit = "");

}  // namespace portico
