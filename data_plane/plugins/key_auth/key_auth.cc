#include "data_plane/plugins/key_auth/key_auth.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/sha256.h"
#include "data_plane/plugins/auth_consumer.h"
#include "data_plane/plugins/body_forms.h"
#include "data_plane/pipeline/query_arguments.h"
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
  // Kong's do_authentication: for each of key_names in turn, a header, else a query argument, else
  // (key_in_body) a body field; the first string found is the key, two values under the name are
  // a duplicate, anything else (a query flag, a JSON number) moves on to the next name. The body
  // is read only when a name is looked up in it, or to hide the key: until then nothing has
  // changed, so the rerun after the read starts clean.
  StepStatus Access(RequestContext& request) const override {
    const MessageHead& head = *request.head;
    if (!run_on_preflight_ && head.method == "OPTIONS") return StepStatus::kContinue;
    absl::string_view key;
    int name_index = -1;
    std::optional<ParsedBody> body;  // key_in_body only (Kong's get_body; nullopt: unparsable)
    bool body_loaded = false;
    for (size_t n = 0; n < names_.size() && name_index < 0; ++n) {
      bool present = false;  // Kong's v ~= nil: a value that is not a string ends the search for this name
      if (key_in_header_) {
        int found = 0;
        for (const auto& [name, value] : head.headers) {
          if (absl::EqualsIgnoreCase(name, names_[n])) {
            ++found;
            key = value;
          }
        }
        if (found > 1) return Fail(request, kDuplicate);
        if (found == 1) {
          name_index = static_cast<int>(n);
          break;
        }
      }
      if (key_in_query_ && request.target.has_query) {
        int found = 0;
        absl::string_view raw, pair;
        ForEachQueryArgument(request.target.query, [&](absl::string_view name, absl::string_view value,
                                                       absl::string_view whole) {
          if (name != names_[n]) return;
          ++found;
          raw = value;
          pair = whole;
        });
        if (found > 1) return Fail(request, kDuplicate);
        if (found == 1 && pair.find('=') == absl::string_view::npos) {
          present = true;  // a flag is Kong's `true`
        } else if (found == 1) {
          DecodeQueryValue(raw, &request.response_text);  // scratch until a response needs it
          key = request.response_text;
          name_index = static_cast<int>(n);
          break;
        }
      }
      if (present || !key_in_body_) continue;
      if (!body_loaded) {
        if (!request.ReadRequestBody()) return StepStatus::kSuspend;
        body = ParseRequestBody(head.Find("content-type"), CurrentBody(request), request.request_body_too_large);
        body_loaded = true;
      }
      switch (BodyValue(body, names_[n], &request.response_text)) {
        case Found::kString:
          key = request.response_text;
          name_index = static_cast<int>(n);
          break;
        case Found::kSeveral:
          return Fail(request, kDuplicate);
        case Found::kNothing:
          break;
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
    if (hide_credentials_ && key_in_body_ && !body_loaded) {
      if (!request.ReadRequestBody()) return StepStatus::kSuspend;
      body = ParseRequestBody(head.Find("content-type"), CurrentBody(request), request.request_body_too_large);
    }
    if (hide_credentials_) Hide(request, name_index, body);
    SetAuthenticatedConsumer(request, *credential->consumer, credential->id);
    return StepStatus::kContinue;
  }

  std::vector<std::string> names_;
  std::vector<std::string> names_lower_;
  bool hide_credentials_ = false;
  bool key_in_header_ = true;
  bool key_in_query_ = true;
  bool key_in_body_ = false;
  bool run_on_preflight_ = true;
  std::string www_authenticate_;
  AnonymousConsumer anonymous_;
  std::vector<SaltGroup> groups_;

 private:
  static constexpr absl::string_view kNoKey = "No API key found in request";
  static constexpr absl::string_view kDuplicate = "Duplicate API key found";
  static constexpr absl::string_view kUnauthorized = "Unauthorized";

  enum class Found { kNothing, kString, kSeveral };

  static absl::string_view CurrentBody(const RequestContext& r) {
    return CurrentRequestBody(r.request_body, r.upstream_body, r.upstream_body_set);
  }

  // body[name] as Kong's key-auth reads it: a string (copied to *out), a table (a JSON array or
  // object, or repeated form fields: a duplicate), or nothing usable (absent, a JSON number,
  // boolean or null, a form flag, or a body Kong's get_body cannot parse).
  static Found BodyValue(const std::optional<ParsedBody>& body, const std::string& name, std::string* out) {
    if (!body) return Found::kNothing;
    if (body->type == BodyType::kForm) {
      const FormArgument* arg = FindFormArgument(body->form, name);
      if (arg == nullptr || (arg->values.size() == 1 && arg->values[0].flag)) return Found::kNothing;
      if (arg->values.size() > 1) return Found::kSeveral;
      *out = arg->values[0].text;
      return Found::kString;
    }
    if (!body->json.is_object()) return Found::kNothing;
    auto it = body->json.find(name);
    if (it == body->json.end()) return Found::kNothing;
    if (it->is_array() || it->is_object()) return Found::kSeveral;
    if (!it->is_string()) return Found::kNothing;
    *out = it->get_ref<const std::string&>();
    return Found::kString;
  }

  StepStatus Fail(RequestContext& request, absl::string_view message) const {
    return anonymous_.Fail(request, 401, message, www_authenticate_);
  }

  // Kong clears the key's header and query argument wherever the key was found and, with
  // key_in_body, removes the field from a body it could parse and re-encodes that body.
  void Hide(RequestContext& request, int name_index, std::optional<ParsedBody>& body) const {
    const std::string& name = names_[name_index];
    request.upstream_headers_removed.push_back(names_lower_[name_index]);
    bool in_query = false;
    if (request.target.has_query) {
      ForEachQueryArgument(request.target.query, [&](absl::string_view n, absl::string_view, absl::string_view) {
        in_query |= n == name;
      });
    }
    if (in_query) {  // the query without the key's argument (the other arguments as sent)
      std::string& out = request.upstream_query;
      out.clear();
      ForEachQueryArgument(request.target.query, [&](absl::string_view n, absl::string_view, absl::string_view pair) {
        if (n == name) return;
        if (!out.empty()) out.push_back('&');
        out.append(pair.data(), pair.size());
      });
      request.upstream_query_set = true;
    }
    if (!key_in_body_ || !body) return;
    if (body->type == BodyType::kForm) {
      EraseFormArgument(body->form, name);
      request.upstream_body = EncodeFormSorted(body->form);
    } else {
      if (body->json.is_object()) body->json.erase(name);
      request.upstream_body = DumpJson(body->json);
    }
    request.upstream_body_set = true;
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
  handler->key_in_body_ = config["key_in_body"].get<bool>();
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
