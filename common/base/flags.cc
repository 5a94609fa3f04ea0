#include "common/base/flags.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/base/log.h"

namespace portico {
namespace {

constexpr size_t kMaxConfErrors = 20;  // then "... and N more errors"

// The file's text if it is a regular file of at most `max_bytes`. Opened without blocking, so that
// a named pipe or a device is refused instead of waited on.
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return absl::Status(err == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kFailedPrecondition,
                        std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError("not a regular file");
  }
  std::string text;
  char buf[65536];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof(buf))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || text.size() + static_cast<size_t>(n) > max_bytes) break;
    text.append(buf, static_cast<size_t>(n));
  }
  const int err = errno;
  ::close(fd);
  if (n < 0) return absl::InternalError(absl::StrCat("read: ", std::strerror(err)));
  if (n > 0) return absl::FailedPreconditionError(absl::StrCat("larger than ", max_bytes, " bytes"));
  return text;
}

}  // namespace

std::string Flags::EnvName(const std::string& flag) {
  return "PORTICO_" + absl::AsciiStrToUpper(absl::StrReplaceAll(flag, {{"-", "_"}}));
}

void Flags::EnableConfFile(std::vector<ConfKey> keys) {
  if (!conf_enabled_) {
    specs_.push_back({"conf", "", "configuration file (kong.conf syntax: key = value, # comments; keys are the "
                                  "flags' names with '_', and Kong's: docs/operations.md); the command line "
                                  "and the environment win over it"});
  }
  conf_enabled_ = true;
  conf_keys_ = std::move(keys);
}

std::vector<std::string> Flags::ConfKeysOf(const std::string& flag) const {
  std::vector<std::string> keys;
  if (!conf_enabled_ || flag == "conf") return keys;
  std::string own = absl::StrReplaceAll(flag, {{"-", "_"}});
  bool own_taken = false;  // a ConfKey with the flag's own name replaces it
  for (const ConfKey& k : conf_keys_) {
    if (k.key == own) own_taken = true;
    for (const std::string& f : k.flags) {
      if (f == flag) keys.push_back(k.key);
    }
  }
  if (!own_taken) keys.insert(keys.begin(), own);
  return keys;
}

std::string Flags::OtherSources(const std::string& flag) const {
  std::string out = EnvName(flag);
  const std::vector<std::string> keys = ConfKeysOf(flag);
  if (!keys.empty()) absl::StrAppend(&out, " or ", absl::StrJoin(keys, "/"), " in --conf");
  return out;
}

// Values of the file go where neither the command line nor the environment put one.
absl::Status Flags::ReadConfFile(const std::string& path) {
  constexpr size_t kMaxConfBytes = 1 << 20;
  absl::StatusOr<std::string> text = ReadRegularFile(path, kMaxConfBytes);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat("--conf ", path, ": ", text.status().message()));
  ConfText parsed = ParseConfText(*text, path);
  std::vector<std::string> errors = std::move(parsed.errors);
  std::map<std::string, ConfOrigin> set_by;  // flag -> the line that set it, overridden or not
  for (const ConfLine& line : parsed.lines) {
    const std::string where = absl::StrCat(path, ":", line.line);
    auto error = [&](auto&&... parts) { errors.push_back(absl::StrCat(where, ": ", parts...)); };
    const ConfKey* alias = nullptr;
    for (const ConfKey& k : conf_keys_) {
      if (k.key == line.key) alias = &k;
    }
    FlagValues values;
    if (alias != nullptr) {
      absl::StatusOr<FlagValues> translated = alias->translate(line.value);
      if (!translated.ok()) {
        error(line.key, ": ", translated.status().message());
        continue;
      }
      values = *std::move(translated);
    } else {
      const std::string flag = absl::StrReplaceAll(line.key, {{"_", "-"}});
      if (flag == "conf") {
        error("conf cannot be set in the configuration file");
        continue;
      }
      if (Find(flag) == nullptr) {
        error("unknown key '", PrintableExcerpt(line.key), "'");
        continue;
      }
      values.emplace_back(flag, line.value);
    }
    for (auto& [flag, value] : values) {
      const FlagSpec* spec = Find(flag);
      bool ignored;
      if (spec != nullptr && spec->is_bool && !ParseBoolValue(value, &ignored)) {
        error(line.key, " must be true or false (or on/off, yes/no, 1/0), not '", PrintableExcerpt(value), "'");
        continue;
      }
      if (auto [it, inserted] = set_by.emplace(flag, ConfOrigin{where, line.key}); !inserted) {
        error(line.key, " sets --", flag, ", already set by ", it->second.key, " (", it->second.where, ")");
        continue;
      }
      if (values_.count(flag) > 0) continue;  // the command line or the environment gave it
      values_[flag] = value;
      conf_origins_[flag] = ConfOrigin{where, line.key};
    }
  }
  if (errors.empty()) return absl::OkStatus();
  if (errors.size() > kMaxConfErrors) {
    const size_t more = errors.size() - kMaxConfErrors;
    errors.resize(kMaxConfErrors);
    errors.push_back(absl::StrCat(path, ": ... and ", more, " more error", more == 1 ? "" : "s"));
  }
  return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
}

std::vector<std::string> Flags::ConfFlagsNamedIn(absl::string_view message) const {
  std::vector<std::string> named;
  for (size_t at = message.find("--"); at != absl::string_view::npos; at = message.find("--", at + 2)) {
    size_t end = at + 2;
    while (end < message.size() && (absl::ascii_isalnum(message[end]) || message[end] == '-')) ++end;
    std::string name(message.substr(at + 2, end - at - 2));
    if (conf_origins_.count(name) > 0 && std::find(named.begin(), named.end(), name) == named.end()) {
      named.push_back(std::move(name));
    }
  }
  return named;
}

void Flags::DropConfValue(const std::string& flag) {
  if (conf_origins_.erase(flag) > 0) values_.erase(flag);
}

absl::Status Flags::Explain(const absl::Status& status) const {
  if (status.ok() || conf_origins_.empty()) return status;
  const absl::string_view message = status.message();
  if (absl::StartsWith(message, Get("conf") + ":")) return status;  // already located
  std::vector<std::string> located;
  for (const std::string& flag : ConfFlagsNamedIn(message)) {
    const ConfOrigin& origin = conf_origins_.find(flag)->second;  // ConfFlagsNamedIn: present
    std::string where = absl::StrCat(origin.where, " (", origin.key, ")");
    // One line may set several flags (admin_listen: --admin-listen and --admin-ssl-listen).
    if (std::find(located.begin(), located.end(), where) == located.end()) located.push_back(std::move(where));
  }
  if (located.empty()) return status;
  return absl::Status(status.code(), absl::StrCat(absl::StrJoin(located, ", "), ": ", message));
}

int ConfCheck::Main(absl::string_view program, int argc, char** argv,
                    const std::function<int(int, char**, ConfCheck*)>& serve) {
  bool help = false;
  std::string problem;  // a usage error
  for (int i = 2; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    help = help || arg == "--help" || arg == "-h" || arg == "--version";
    // The file checked is CONF_FILE: a second one would be validated in its place.
    if (i > 2 && (arg == "--conf" || absl::StartsWith(arg, "--conf="))) {
      problem = "--conf cannot follow CONF_FILE (the file checked)";
    }
  }
  if (argc < 3) {
    problem = "CONF_FILE is missing";
  } else if (argv[2][0] == '\0') {
    problem = "CONF_FILE is empty";
  } else if (argv[2][0] == '-' && !help) {
    problem = "CONF_FILE comes first, before the flags";
  }
  if (!problem.empty() || help) {
    std::string text = absl::StrCat(
        "usage: ", program, " check CONF_FILE [flags]\n\nValidates a ", program,
        " configuration file (kong.conf syntax) as a start would, with the\nPORTICO_* environment and the flags "
        "given after it, without starting: prints\n'configuration at FILE is valid' and exits 0, or prints "
        "every error and exits 1.\n(", program, " --help lists the flags and their keys.)\n");
    if (!help) text = absl::StrCat(program, " check: ", problem, "\n", text);
    std::fwrite(text.data(), 1, text.size(), help ? stdout : stderr);
    return help ? 0 : 2;
  }
  std::vector<char*> args = {argv[0], const_cast<char*>("--conf"), argv[2]};
  args.insert(args.end(), argv + 3, argv + argc);
  return Run(program, argv[2], [&args, &serve](ConfCheck* check) {
    return serve(static_cast<int>(args.size()), args.data(), check);
  });
}

int ConfCheck::Run(absl::string_view program, absl::string_view path, const Round& round) {
  ConfCheck check;
  int code = 0;
  for (int i = 0; i < 64; ++i) {
    const size_t recorded = check.errors_.size();
    code = round(&check);
    // A failure the round did not record (a usage error, printed by the round) ends the check too.
    if (code == 0 || check.done_ || check.errors_.size() == recorded) break;
  }
  for (const std::string& error : check.errors_) {
    std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(program.size()), program.data(), error.c_str());
  }
  if (!check.errors_.empty()) return 1;
  if (code == 0) std::printf("configuration at %.*s is valid\n", static_cast<int>(path.size()), path.data());
  return code;
}

void ConfCheck::Prepare(Flags& flags) const {
  for (const std::string& flag : dropped_) flags.DropConfValue(flag);
}

int ConfCheck::Record(const Flags& flags, const absl::Status& error) {
  const absl::string_view message = error.message();
  for (const std::string& flag : dropped_) {
    const std::string mention = "--" + flag;
    for (size_t at = message.find(mention); at != absl::string_view::npos; at = message.find(mention, at + 1)) {
      const size_t end = at + mention.size();
      if (end == message.size() || !(absl::ascii_isalnum(message[end]) || message[end] == '-')) {
        done_ = true;  // a consequence of the dropped value
        return 1;
      }
    }
  }
  const std::vector<std::string> named = flags.ConfFlagsNamedIn(message);
  if (!dropped_.empty() && named.empty()) {
    done_ = true;  // may follow from a dropped value (a dropped declarative_config asks for cluster_*)
    return 1;
  }
  errors_.emplace_back(flags.Explain(error).message());
  // An error located by the file itself (syntax, keys) or naming no file value: nothing to drop.
  done_ = named.empty() || absl::StartsWith(message, flags.Get("conf") + ":");
  dropped_.insert(dropped_.end(), named.begin(), named.end());
  return 1;
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
                                                     PrintableExcerpt(env), "'"));
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
    if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", PrintableExcerpt(name)));
    if (spec->is_bool) {
      bool ignored;
      if (has_value && !ParseBoolValue(value, &ignored)) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " must be true or false (or 1/0, yes/no, on/off), not '",
                                                       PrintableExcerpt(value), "'"));
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
  if (conf_enabled_ && !Get("conf").empty()) return ReadConfFile(Get("conf"));
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
    if (std::vector<std::string> keys = ConfKeysOf(s.name); !keys.empty()) {
      absl::StrAppend(&out, "      in --conf: ", absl::StrJoin(keys, ", "), "\n");
    }
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
          absl::StrCat("--", name, " (or ", flags.OtherSources(name), ") is required"));
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
