#pragma once
// Command-line flags that can also come from the environment: `--admin-listen X` or
// `--admin-listen=X` or PORTICO_ADMIN_LISTEN=X (the command line wins). Boolean flags take no value.
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

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

  // Parses argv[first..argc); positional arguments are kept in order. Unknown flags are errors.
  absl::Status Parse(int argc, char** argv, int first = 1);

  const std::string& Get(const std::string& name) const;  // value, env value or default
  bool GetBool(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  std::string Usage() const;

  // "admin-listen" -> "PORTICO_ADMIN_LISTEN"
  static std::string EnvName(const std::string& flag);

 private:
  const FlagSpec* Find(const std::string& name) const;
  std::vector<FlagSpec> specs_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// Error naming the first of `names` that has no value (flag or environment variable).
absl::Status RequireFlags(const Flags& flags, std::initializer_list<const char*> names);
// Reads --log-level (debug|info|warn|error) and sets the process log level.
absl::Status ApplyLogLevelFlag(const Flags& flags);
// The value of --`name` as a finite number in [min, max] (NaN and infinities refused); the error
// names the flag, the range and `unit` (for example "seconds", may be empty).
absl::StatusOr<double> NumberFlag(const Flags& flags, const char* name, double min, double max,
                                  absl::string_view unit = "");

}  // namespace portico
