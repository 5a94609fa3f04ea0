#include "control_plane/store/store.h"

#include <atomic>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "control_plane/store/postgres_store.h"
#include "control_plane/store/sqlite_store.h"
#include "nlohmann/json.hpp"

namespace portico::cp {
namespace {

constexpr char kConflictPayloadUrl[] = "type.portico.dev/store-conflict";
constexpr char kConflictSubjectPayloadUrl[] = "type.portico.dev/store-conflict-subject";
constexpr char kCorruptRowPayloadUrl[] = "type.portico.dev/corrupt-row-id";

thread_local VersionFence* active_fence = nullptr;

}  // namespace

VersionFence::VersionFence(uint64_t expected) : expected_(expected), outer_(active_fence) { active_fence = this; }

VersionFence::~VersionFence() { active_fence = outer_; }

VersionFence* VersionFence::Active() { return active_fence; }

absl::Status VersionFence::Refuse(uint64_t found) {
  stale_ = true;
  return absl::AbortedError(absl::StrCat("the config version is ", found, ", not ", expected_,
                                         ": another write committed after this one's checks; nothing written"));
}

void VersionFence::TransactionEnded(bool committed) {
  if (committed && pending_ != 0) {
    expected_ = pending_;
    ++committed_writes_;
  }
  pending_ = 0;
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& location, const Clock& clock,
                                                   const EntityRegistry& kinds) {
  if (IsPostgresLocation(location)) return OpenPostgresStore(location, clock, kinds);
  return OpenSqliteStore(location, clock, kinds);
}

namespace {
std::atomic<uint64_t> keep_versions{ChangeLogRetention().keep_versions};
std::atomic<uint64_t> prune_every{ChangeLogRetention().prune_every};
}  // namespace

ChangeLogRetention GetChangeLogRetention() { return ChangeLogRetention{keep_versions.load(), prune_every.load()}; }

void SetChangeLogRetentionForTest(ChangeLogRetention retention) {
  keep_versions = retention.keep_versions > 0 ? retention.keep_versions : 1;
  prune_every = retention.prune_every > 0 ? retention.prune_every : 1;
}

std::string EncodeDataPlaneLabels(const std::map<std::string, std::string>& labels) {
  nlohmann::json object = nlohmann::json::object();
  for (const auto& [key, value] : labels) object[key] = value;
  // Labels come from DP Hellos: bytes that are not UTF-8 are replaced, never an exception.
  return object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::map<std::string, std::string> DecodeDataPlaneLabels(absl::string_view text) {
  std::map<std::string, std::string> out;
  nlohmann::json object = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!object.is_object()) return out;
  for (const auto& [key, value] : object.items()) {
    if (value.is_string()) out[key] = value.get<std::string>();
  }
  return out;
}

absl::Status WithStoreConflict(absl::Status status, StoreConflict conflict, absl::string_view subject) {
  const char* name = "";
  switch (conflict) {
    case StoreConflict::kPrimaryKey: name = "primary_key"; break;
    case StoreConflict::kUniqueName: name = "unique"; break;
    case StoreConflict::kForeignKeyMissing: name = "foreign_key"; break;
    case StoreConflict::kReferenced: name = "referenced"; break;
    case StoreConflict::kNone: return status;
  }
  status.SetPayload(kConflictPayloadUrl, absl::Cord(name));
  status.SetPayload(kConflictSubjectPayloadUrl, absl::Cord(subject));
  return status;
}

StoreConflict GetStoreConflict(const absl::Status& status) {
  auto payload = status.GetPayload(kConflictPayloadUrl);
  if (!payload) return StoreConflict::kNone;
  std::string name(*payload);
  if (name == "primary_key") return StoreConflict::kPrimaryKey;
  if (name == "unique") return StoreConflict::kUniqueName;
  if (name == "foreign_key") return StoreConflict::kForeignKeyMissing;
  if (name == "referenced") return StoreConflict::kReferenced;
  return StoreConflict::kNone;
}

std::string StoreConflictSubject(const absl::Status& status) {
  auto payload = status.GetPayload(kConflictSubjectPayloadUrl);
  return payload ? std::string(*payload) : std::string();
}

absl::Status CorruptRowError(absl::string_view kind, const std::string& id) {
  absl::Status status =
      absl::DataLossError(absl::StrCat("corrupt ", kind, " row ", absl::CHexEscape(id), ": ", kCorruptEntityReason));
  status.SetPayload(kCorruptRowPayloadUrl, absl::Cord(id));
  return status;
}

std::optional<std::string> CorruptRowId(const absl::Status& status) {
  if (!absl::IsDataLoss(status)) return std::nullopt;
  auto payload = status.GetPayload(kCorruptRowPayloadUrl);
  if (!payload) return std::nullopt;
  return std::string(*payload);
}

}  // namespace portico::cp
