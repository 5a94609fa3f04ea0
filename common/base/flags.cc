#include "common/base/flags.h"

#include <cstdio>
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

bool ParseBoolValue(absl::string_view text, bool* value) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "1" || lower == "yes" || lower == "on") {
    *value = true;
    return true;
  }
  if (lower == "false" || lower == "0" || lower == "no" || lower == "off") {
    *value = false;
    return true;
  }
  return false;
}

absl::Status Flags::Parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    if ((arg == "--help" || arg == "-h") && Find("help") == nullptr) help_requested_ = true;
    if (arg == "--version" && Find("version") == nullptr) version_requested_ = true;
  }
  if (help_requested_ || version_requested_) return absl::OkStatus();
  for (const FlagSpec& s : specs_) {
    const std::string env_name = EnvName(s.name);
    const char* env = std::getenv(env_name.c_str());
    if (env == nullptr) continue;
    bool ignored;
    if (s.is_bool && !ParseBoolValue(env, &ignored)) {
      return absl::InvalidArgumentError(absl::StrCat(env_name, " must be true or false (or 1/0, yes/no, on/off), not '",
                                                     env, "'"));
    }
    values_[s.name] = env;
  }
  bool only_positional = false;  // after "--"
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (!only_positional && arg == "--") {
      only_positional = true;
      continue;
    }
    if (only_positional || arg.rfind("--", 0) != 0) {
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
      bool ignored;
      if (has_value && !ParseBoolValue(value, &ignored)) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " must be true or false (or 1/0, yes/no, on/off), not '",
                                                       value, "'"));
      }
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
  bool value = false;
  return ParseBoolValue(Get(name), &value) && value;
}

std::string Flags::Usage() const {
  std::string out;
  for (const FlagSpec& s : specs_) {
    absl::StrAppend(&out, "  --", s.name, s.is_bool ? "[=true|false]" : " VALUE", "\n      ", s.help,
                    "\n      default: ", s.default_value.empty() ? (s.is_bool ? "false" : "none") : s.default_value,
                    "; env ", EnvName(s.name), "\n");
  }
  absl::StrAppend(&out, "  --help, -h\n      print this help and exit\n  --version\n      print the version and exit\n");
  return out;
}

bool AnswerHelpOrVersion(const Flags& flags, absl::string_view program, absl::string_view usage,
                         absl::string_view description) {
  if (flags.help_requested()) {
    std::string text = absl::StrCat("usage: ", usage, "\n\n", description, "\n\nflags:\n", flags.Usage());
    std::fwrite(text.data(), 1, text.size(), stdout);
    return true;
  }
  if (flags.version_requested()) {
    std::printf("%.*s %s\n", static_cast<int>(program.size()), program.data(), PORTICO_VERSION);
    return true;
  }
  return false;
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
