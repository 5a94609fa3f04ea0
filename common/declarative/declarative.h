#pragma once
// Declarative configuration (Kong's kong.yml, KONG-REFERENCE.md §5; docs/declarative.md): a
// whole config as one document, turned into validated entities of every registered kind by the
// same descriptors, normalizers and validators as the Admin API (common/config), then checked as
// a set (ValidateConfigSet) as the CP's snapshot builder and the DP check it. One code path for
// POST /config, `portico-cp config validate|import`, and `portico-dp --declarative-config`.
//
// What a document may hold:
//  - `_format_version` (required): "3.0", or "1.1"/"2.1", migrated as Kong migrates them (a route
//    path that is not plain text becomes a `~` regex path); `_transform` (default true: basic-auth
//    passwords are hashed on load; false: they are already hashed); `_comment`; `_workspace`
//    (ignored);
//  - a top-level list per kind, by Kong's entity name ("services", "keyauth_credentials", ...);
//  - nested lists wherever the child kind has a foreign key to the parent's kind
//    (services -> routes -> plugins, consumers -> credentials/plugins, upstreams -> targets,
//    certificates -> snis (names or objects)); the nesting sets the foreign key;
//  - references by id or by endpoint key: `service: my-service`, `service: {name: my-service}`,
//    `service: {id: ...}`. Every reference must name an entity of the same document.
// Ids left out are derived from the entity's identity (its endpoint key, its cache key, its
// parent and position), so loading the same document twice gives the same ids. Endpoint keys,
// unique fields, cache keys and ids are unique across the document.
//
// Thread-safe (no shared state).
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/config_set.h"
#include "common/config/entity_descriptor.h"
#include "common/config/field_errors.h"
#include "nlohmann/json.hpp"

namespace portico {

inline constexpr size_t kDefaultMaxDeclarativeBytes = size_t{64} << 20;  // 64 MiB of text

struct DeclarativeOptions {
  size_t max_bytes = kDefaultMaxDeclarativeBytes;  // a longer text is refused before parsing
  int max_depth = 64;                              // nesting of the document
  size_t max_nodes = 4'000'000;                    // values in the document, aliases expanded
  const EntityRegistry* kinds = nullptr;           // null = EntityRegistry::Default()
  // The config this document replaces, if any: a basic-auth credential whose plain password
  // matches its hash there keeps that hash (same salt), so reloading a file changes nothing.
  const ConfigSet* previous = nullptr;
};

// Why a document was refused. `syntax` (the text does not parse, or is too big: with line and
// column) or the entity errors, never both.
struct DeclarativeErrors {
  std::string syntax;
  // Kong's nested `fields`: {"services":[{"host":"required field missing"}]} mirrors the
  // document, arrays padded with null; document-level problems under "@entity" or their key.
  nlohmann::json fields = nlohmann::json::object();
  // Kong's `flattened_errors`: one object per entity at fault (entity_type, entity_name,
  // entity_id, entity_tags, entity, errors: [{type: "field"|"entity", field, message}]).
  nlohmann::json flattened = nlohmann::json::array();
  // One readable line per error ("services[0] (name 'a'): host: required field missing"), for
  // logs and the CLI.
  std::vector<std::string> lines;

  bool empty() const { return syntax.empty() && lines.empty(); }
  // Kong's 400 body: code 14 "invalid declarative configuration" (with flattened_errors when
  // `flatten`).
  nlohmann::json KongBody(bool flatten) const;
};

// A loaded document: every entity validated, ids set, references resolved to ids.
struct DeclarativeConfig {
  std::string format_version;  // as written ("1.1" and "2.1" were migrated)
  // Per registered kind, in registry order (parents first), each list sorted by id. Timestamps
  // are the document's (0 when it has none).
  struct KindEntities {
    const EntityDescriptor* kind = nullptr;
    std::vector<std::unique_ptr<google::protobuf::Message>> entities;
    // Parallel to `entities`: true when the document gave no id (it was derived). Empty for
    // lists that do not come from a document (EntitiesByKind).
    std::vector<bool> derived_ids;
  };
  std::vector<KindEntities> kinds;
  // The same entities as a ConfigSet in the CP's form (key-auth credentials with their keys):
  // ExportableConfig() turns it into what a data plane runs.
  ConfigSet config;

  size_t entity_count() const;
};

// Loads a parsed document. On refusal returns InvalidArgument and fills `errors`.
absl::StatusOr<DeclarativeConfig> LoadDeclarativeDocument(const nlohmann::json& document,
                                                          const DeclarativeOptions& options,
                                                          DeclarativeErrors* errors);

// Parses `text` (YAML or JSON, within the options' limits), then loads it.
absl::StatusOr<DeclarativeConfig> LoadDeclarativeText(absl::string_view text, const DeclarativeOptions& options,
                                                      DeclarativeErrors* errors);

// Carries what `stored` already holds over to `loaded`, so that loading the same or a reordered
// document changes nothing that did not change:
//  - a credential whose key is secret (key-auth) and whose id the document did not give, takes
//    the stored id of the credential with the same key (its derived id follows its position);
//  - entities with the same id keep created_at (unless the document set one), and updated_at
//    when they are otherwise unchanged.
// True when `loaded` then equals `stored` exactly (nothing would change).
bool CarryOverStoredTimestamps(const ConfigSet& stored, DeclarativeConfig* loaded);

// The entities of `config` per kind of `kinds` (registry order; each list in `config`'s order).
std::vector<DeclarativeConfig::KindEntities> EntitiesByKind(const ConfigSet& config, const EntityRegistry& kinds);

// The document of a config, as Kong's `db_export` writes it: `_format_version: "3.0"`,
// `_transform: false`, one flat list per kind (registry order, each by id), foreign keys as ids,
// null fields left out. `kinds` lists every exported kind in registry order. The result loads
// back (LoadDeclarativeDocument) into the same entities.
nlohmann::json ExportDeclarativeDocument(const std::vector<DeclarativeConfig::KindEntities>& kinds);

// The same as YAML text (what GET /config and `portico-cp config export` write); "" when the
// YAML writer fails.
std::string ExportDeclarativeYaml(const std::vector<DeclarativeConfig::KindEntities>& kinds);

// The id a document gives an entity without one: a name-based UUID (version 8, SHA-256) of
// `identity`, e.g. "services\x1fname\x1fmy-service".
std::string DeclarativeEntityId(absl::string_view identity);

}  // namespace portico
