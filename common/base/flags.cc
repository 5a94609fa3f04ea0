#include "common/base/flags.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/base/log.h"

namespace portico {

std::string Flags::EnvName(const std::string& flag) {
  return "PORTICO_" + absl::AsciiStrToUpper(absl::StrReplaceAll(flag, {{"-", "_"}}));
}

const FlagSpec* Flags::Find(const std::string& name) const {
  for (const FlagSpec& s : specs_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

absl::Status Flags::Parse(int argc, char** argv, int first) {
  for (const FlagSpec& s : specs_) {
    const char* env = std::getenv(EnvName(s.name).c_str());
    if (env != nullptr) values_[s.name] = env;
  }
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const FlagSpec* spec = Find(name);
    if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (spec->is_bool) {
      values_[name] = has_value ? value : "true";
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      value = argv[++i];
    }
    values_[name] = value;
  }
  return absl::OkStatus();
}

const std::string& Flags::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  const FlagSpec* spec = Find(name);
  static const std::string kEmpty;
  return spec != nullptr ? spec->default_value : kEmpty;
}

bool Flags::GetBool(const std::string& name) const {
  const std::string& v = Get(name);
  return v == "true" || v == "1" || v == "on" || v == "yes";
}

std::string Flags::Usage() const {
  std::string out;
  for (const FlagSpec& s : specs_) {
    absl::StrAppend(&out, "  --", s.name, s.is_bool ? "" : " VALUE", "\n      ", s.help,
                    s.default_value.empty() ? "" : absl::StrCat(" (default ", s.default_value, ")"),
                    "; env ", EnvName(s.name), "\n");
  }
  return out;
}

absl::Status RequireFlags(const Flags& flags, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (flags.Get(name).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " (or ", Flags::EnvName(name), ") is required"));
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyLogLevelFlag(const Flags& flags) {
  LogLevel level;
  if (!ParseLogLevel(flags.Get("log-level"), &level)) {
    return absl::InvalidArgumentError("--log-level must be debug, info, warn or error");
  }
  SetLogLevel(level);
  return absl::OkStatus();
}

absl::StatusOr<double> NumberFlag(const Flags& flags, const char* name, double min, double max,
                                  absl::string_view unit) {
  double value = 0;
  if (!absl::SimpleAtod(flags.Get(name), &value) || !(value >= min && value <= max)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " must be a number", unit.empty() ? "" : " of ",
                                                   unit, " in ", min, "..", max));
  }
  return value;
}

}  // namespace portico
