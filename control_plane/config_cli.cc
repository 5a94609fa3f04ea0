#include "control_plane/config_cli.h"

#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/clock.h"
#include "common/base/file.h"
#include "common/base/flags.h"
#include "common/base/log.h"
#include "common/declarative/declarative.h"
#include "control_plane/store/postgres_store.h"
#include "control_plane/store/store.h"

namespace portico::cp {
namespace {

constexpr char kUsage[] =
    "portico-cp config validate FILE\n"
    "       portico-cp config import FILE [--db DB]\n"
    "       portico-cp config export [FILE] [--db DB]";
constexpr char kDescription[] =
    "Declarative configuration files (Kong's kong.yml, YAML or JSON; docs/declarative.md).\n"
    "  validate FILE   checks FILE as POST /config would (syntax, every entity, references,\n"
    "                  uniqueness) and prints every error; exit 0 when valid.\n"
    "  import FILE     upserts FILE's entities into --db in one transaction, parents first;\n"
    "                  entities not in FILE are kept (POST /config replaces instead). A running\n"
    "                  portico-cp on the same database notices the import within about two\n"
    "                  seconds and sends it to its data planes.\n"
    "  export [FILE]   writes --db's configuration as _format_version 3.0 YAML to FILE (which\n"
    "                  must not exist yet), or to stdout.";

int Usage() {
  std::fprintf(stderr, "usage: %s\n(portico-cp config --help describes every command)\n", kUsage);
  return 2;
}

// Loads FILE and prints what is wrong with it; nullopt when it cannot be used. `previous`: the
// config FILE is loaded over (basic-auth hashes that still match are kept).
std::optional<DeclarativeConfig> LoadFile(const std::string& path, const ConfigSet* previous = nullptr) {
  absl::StatusOr<std::string> text = ReadFileToString(path, kDefaultMaxDeclarativeBytes);
  if (!text.ok()) {
    std::fprintf(stderr, "portico-cp config: cannot read %s: %s\n", path.c_str(), std::string(text.status().message()).c_str());
    return std::nullopt;
  }
  DeclarativeOptions options;
  options.previous = previous;
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> loaded = LoadDeclarativeText(*text, options, &errors);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s: invalid declarative configuration\n", path.c_str());
    if (!errors.syntax.empty()) std::fprintf(stderr, "  %s\n", errors.syntax.c_str());
    for (const std::string& line : errors.lines) std::fprintf(stderr, "  %s\n", line.c_str());
    return std::nullopt;
  }
  return *std::move(loaded);
}

std::string Summary(const DeclarativeConfig& config) {
  std::vector<std::string> parts;
  for (const DeclarativeConfig::KindEntities& list : config.kinds) {
    if (!list.entities.empty()) parts.push_back(absl::StrCat(list.entities.size(), " ", list.kind->name()));
  }
  return absl::StrCat(config.entity_count(), " entities", parts.empty() ? "" : ": ", absl::StrJoin(parts, ", "));
}

int Validate(const std::string& path) {
  std::optional<DeclarativeConfig> loaded = LoadFile(path);
  if (!loaded) return 1;
  std::printf("%s: valid (_format_version %s, %s)\n", path.c_str(), loaded->format_version.c_str(),
              Summary(*loaded).c_str());
  return 0;
}

int Import(const std::string& path, const std::string& db) {
  const std::string shown = RedactedLocation(db);  // no password in messages
  // The file is checked before the database is opened (opening creates or migrates it).
  std::optional<DeclarativeConfig> loaded = LoadFile(path);
  if (!loaded) return 1;
  RealClock clock;
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(db, clock);
  if (!store.ok()) {
    std::fprintf(stderr, "portico-cp config import: cannot open %s: %s\n", shown.c_str(), store.status().ToString().c_str());
    return 1;
  }
  // What the database holds: entities the file leaves unchanged keep their timestamps (and
  // basic-auth hashes), so importing the same file twice changes nothing but the version.
  absl::StatusOr<StoredConfig> stored = (*store)->ReadConfig();
  if (!stored.ok()) {
    std::fprintf(stderr, "portico-cp config import: reading %s failed: %s\n", shown.c_str(),
                 stored.status().ToString().c_str());
    return 1;
  }
  // Loaded again over what is stored when basic-auth hashes may be kept (same password).
  if (!stored->config.basicauth_credentials.empty() && !loaded->config.basicauth_credentials.empty()) {
    loaded = LoadFile(path, &stored->config);
    if (!loaded) return 1;
  }
  CarryOverStoredTimestamps(stored->config, &*loaded);
  std::vector<Store::BatchStep> steps;
  for (const DeclarativeConfig::KindEntities& list : loaded->kinds) {
    for (const auto& entity : list.entities) {
      steps.push_back(Store::BatchStep{list.kind, entity.get(), WriteMode::kUpsert, "", /*keep_timestamps=*/true});
    }
  }
  absl::StatusOr<std::vector<EntityPtr>> written = (*store)->WriteBatch(steps);
  if (!written.ok()) {
    std::string why(written.status().message());
    if (GetStoreConflict(written.status()) == StoreConflict::kUniqueName) {
      why = absl::StrCat("an entity of ", shown, " with another id already has the same ",
                         StoreConflictSubject(written.status()), " as one of ", path, " (", why, ")");
    }
    std::fprintf(stderr, "portico-cp config import: nothing imported: %s\n", why.c_str());
    return 1;
  }
  std::printf("imported %s into %s (config version %llu)\n", Summary(*loaded).c_str(), shown.c_str(),
              static_cast<unsigned long long>((*store)->CurrentVersion()));
  return 0;
}

int Export(const std::string& path, const std::string& db) {
  const std::string shown = RedactedLocation(db);  // no password in messages
  struct stat st;
  if (!path.empty() && ::stat(path.c_str(), &st) == 0) {
    std::fprintf(stderr, "portico-cp config export: %s already exists; not overwritten\n", path.c_str());
    return 1;
  }
  if (db != ":memory:" && !IsPostgresLocation(db) && ::stat(db.c_str(), &st) != 0) {
    std::fprintf(stderr, "portico-cp config export: no database at %s\n", shown.c_str());
    return 1;
  }
  RealClock clock;
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(db, clock);
  if (!store.ok()) {
    std::fprintf(stderr, "portico-cp config export: cannot open %s: %s\n", shown.c_str(), store.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<StoredConfig> stored = (*store)->ReadConfig();
  if (!stored.ok()) {
    std::fprintf(stderr, "portico-cp config export: reading %s failed: %s\n", shown.c_str(), stored.status().ToString().c_str());
    return 1;
  }
  if (!stored->corrupt.empty()) {
    std::fprintf(stderr, "portico-cp config export: %zu rows of %s cannot be read (first: %s %s); repair them first\n",
                 stored->corrupt.size(), shown.c_str(), stored->corrupt[0].kind.c_str(), stored->corrupt[0].id.c_str());
    return 1;
  }
  const std::string yaml = ExportDeclarativeYaml(EntitiesByKind(stored->config, (*store)->kinds()));
  if (yaml.empty()) {
    std::fprintf(stderr, "portico-cp config export: writing the config as YAML failed\n");
    return 1;
  }
  if (path.empty()) {
    std::fwrite(yaml.data(), 1, yaml.size(), stdout);
    return 0;
  }
  if (absl::Status s = WriteFileDurably(path, yaml, 0600); !s.ok()) {
    std::fprintf(stderr, "portico-cp config export: %s\n", s.ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "exported config version %llu of %s to %s\n",
               static_cast<unsigned long long>(stored->version.version), shown.c_str(), path.c_str());
  return 0;
}

}  // namespace

int RunConfigCommand(int argc, char** argv) {
  Flags flags({{"db", "portico.db",
                "SQLite database file or PostgreSQL URI/conninfo (import, export)"},
               {"log-level", "warn", "debug|info|warn|error"}});
  if (absl::Status s = flags.Parse(argc, argv, 2); !s.ok()) {
    std::fprintf(stderr, "portico-cp config: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (AnswerHelpOrVersion(flags, "portico-cp config", kUsage, kDescription)) return 0;
  if (absl::Status s = ApplyLogLevelFlag(flags); !s.ok()) {
    std::fprintf(stderr, "portico-cp config: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (flags.Get("db").empty()) {
    std::fprintf(stderr, "portico-cp config: --db must name a file or a PostgreSQL database (an empty path is a throwaway "
                 "database)\n");
    return 2;
  }
  const std::vector<std::string>& args = flags.positional();
  if (args.empty()) return Usage();
  const std::string& command = args[0];
  if (command == "validate" && args.size() == 2) return Validate(args[1]);
  if (command == "import" && args.size() == 2) return Import(args[1], flags.Get("db"));
  if (command == "export" && args.size() <= 2) return Export(args.size() == 2 ? args[1] : "", flags.Get("db"));
  return Usage();
}

}  // namespace portico::cp
