#include "data_plane/plugins/key_auth/key_auth.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/sha256.h"
#include "data_plane/plugins/auth_consumer.h"
#include "data_plane/plugins/query_arguments.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

using config::v1::Consumer;

struct Credential {
  const Consumer* consumer;
  absl::string_view id;
};

// The digests of one salt (a snapshot normally has exactly one).
struct SaltGroup {
  absl::string_view salt;
  absl::flat_hash_map<absl::string_view, Credential> by_digest;  // 32-byte digests (snapshot bytes)
};

class KeyAuth final : public PluginHandler {
 public:
  StepStatus Access(RequestContext& request) const override {
    const MessageHead& head = *request.head;
    if (!run_on_preflight_ && head.method == "OPTIONS") return StepStatus::kContinue;
    absl::string_view key;
    int name_index = -1;
    bool in_query = false;
    for (size_t n = 0; n < names_.size() && name_index < 0; ++n) {
      if (key_in_header_) {
        int found = 0;
        for (const auto& [name, value] : head.headers) {
          if (absl::EqualsIgnoreCase(name, names_[n])) {
            ++found;
            key = value;
          }
        }
        if (found > 1) return Fail(request, kDuplicate);
        if (found == 1) name_index = static_cast<int>(n);
      }
      if (name_index < 0 && key_in_query_ && request.target.has_query) {
        int found = 0;
        absl::string_view raw;
        ForEachQueryArgument(request.target.query, [&](absl::string_view name, absl::string_view value,
                                                       absl::string_view) {
          if (name != names_[n]) return;
          ++found;
          raw = value;
        });
        if (found > 1) return Fail(request, kDuplicate);
        if (found == 1) {
          DecodeQueryValue(raw, &request.response_text);  // scratch until a response needs it
          key = request.response_text;
          name_index = static_cast<int>(n);
          in_query = true;
        }
      }
    }
    if (name_index < 0 || key.empty()) return Fail(request, kNoKey);

    const Credential* credential = nullptr;
    for (const SaltGroup& group : groups_) {
      uint8_t digest[Sha256::kDigestBytes];
      Sha256 sha;
      sha.Update(group.salt);
      sha.Update(key);
      sha.Final(digest);
      auto it = group.by_digest.find(absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
      if (it != group.by_digest.end()) {
        credential = &it->second;
        break;
      }
    }
    if (credential == nullptr) return Fail(request, kUnauthorized);
    if (hide_credentials_) Hide(request, name_index, in_query);
    SetAuthenticatedConsumer(request, *credential->consumer, credential->id);
    return StepStatus::kContinue;
  }

  std::vector<std::string> names_;
  std::vector<std::string> names_lower_;
  bool hide_credentials_ = false;
  bool key_in_header_ = true;
  bool key_in_query_ = true;
  bool run_on_preflight_ = true;
  std::string www_authenticate_;
  AnonymousConsumer anonymous_;
  std::vector<SaltGroup> groups_;

 private:
  static constexpr absl::string_view kNoKey = "No API key found in request";
  static constexpr absl::string_view kDuplicate = "Duplicate API key found";
  static constexpr absl::string_view kUnauthorized = "Unauthorized";

  StepStatus Fail(RequestContext& request, absl::string_view message) const {
    return anonymous_.Fail(request, 401, message, www_authenticate_);
  }

  void Hide(RequestContext& request, int name_index, bool in_query) const {
    if (!in_query) {
      request.upstream_headers_removed.push_back(names_lower_[name_index]);
      return;
    }
    // The query without the key's argument (the other arguments as sent).
    std::string& out = request.upstream_query;
    out.clear();
    ForEachQueryArgument(request.target.query, [&](absl::string_view name, absl::string_view,
                                                   absl::string_view pair) {
      if (name == names_[name_index]) return;
      if (!out.empty()) out.push_back('&');
      out.append(pair.data(), pair.size());
    });
    request.upstream_query_set = true;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileKeyAuth(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  const ConfigSet& snapshot = context.snapshot;
  auto handler = std::make_unique<KeyAuth>();
  for (const nlohmann::json& name : config["key_names"]) {
    handler->names_.push_back(name.get<std::string>());
    handler->names_lower_.push_back(absl::AsciiStrToLower(handler->names_.back()));
  }
  handler->hide_credentials_ = config["hide_credentials"].get<bool>();
  handler->key_in_header_ = config["key_in_header"].get<bool>();
  handler->key_in_query_ = config["key_in_query"].get<bool>();
  handler->run_on_preflight_ = config["run_on_preflight"].get<bool>();
  handler->www_authenticate_ = absl::StrCat(
      "Key realm=\"", config["realm"].is_string() ? config["realm"].get<std::string>() : std::string("kong"), "\"");
  absl::flat_hash_map<absl::string_view, const Consumer*> consumers;
  for (const Consumer& c : snapshot.consumers) consumers.emplace(c.id(), &c);
  handler->anonymous_ = AnonymousConsumer(config["anonymous"], snapshot);
  for (const config::v1::KeyAuthDigest& d : snapshot.keyauth_digests) {
    auto consumer = consumers.find(d.consumer_id());
    if (consumer == consumers.end()) continue;  // the validator refuses such a snapshot
    SaltGroup* group = nullptr;
    for (SaltGroup& g : handler->groups_) {
      if (g.salt == d.salt()) group = &g;
    }
    if (group == nullptr) {
      group = &handler->groups_.emplace_back();
      group->salt = d.salt();
    }
    group->by_digest.emplace(d.key_sha256(), Credential{consumer->second, d.id()});
  }
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
