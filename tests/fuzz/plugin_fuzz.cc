// Fuzz target: a plugin's config from the wire to a request. The config goes through the schema
// the CP validates with (NormalizePluginConfig); one it accepts is compiled by the DP's factory
// and run on a request whose headers and query come from the input, with consumers and key-auth /
// basic-auth credentials / ACL groups in the snapshot (so the auth parsers see hostile headers).
//
// Input: byte 0 picks the plugin (index into the bundled schemas), then the config as JSON up to
// the first '\n', then the query up to the next '\n', then header lines "name: value".
//
// Invariants (ids as printed):
//   idempotent   an accepted config normalizes to itself, without errors
//   compiles     every config the schema accepts compiles on the DP (else a CP-accepted plugin
//                would be NACKed by every data plane)
//   answer       a plugin that stops the request answered it, with a status in 100..599, and one
//                that continues did not answer
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config/basic_auth_password.h"
#include "common/plugins/plugin_schema.h"
#include "common/snapshot/snapshot.h"
#include "data_plane/pipeline/pipeline.h"
#include "data_plane/plugins/plugin.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_check.h"

namespace {

using nlohmann::json;
using portico::ConfigSet;
using portico::FieldErrors;
using portico::dp::LocalResponse;
using portico::dp::RequestContext;
using portico::dp::StepStatus;

class FuzzContext final : public RequestContext {
 public:
  void Respond(const LocalResponse& response) override {
    ++answers;
    status = response.status;
  }
  void Resume(StepStatus) override {}
  bool ReadRequestBody() override { return true; }  // request_body as the input left it
  int answers = 0;
  int status = 0;
};

const ConfigSet& Snapshot() {
  static const ConfigSet* const snapshot = [] {
    ConfigSet config;
    for (int i = 1; i <= 2; ++i) {
      portico::config::v1::Consumer c;
      c.set_id(absl::StrCat("00000000-0000-4000-8000-00000000000", i));
      c.set_username(absl::StrCat("user", i));
      config.consumers.push_back(c);
    }
    portico::config::v1::KeyAuthCredential key;
    key.set_id("00000000-0000-4000-8000-000000000011");
    key.set_consumer_id(config.consumers[0].id());
    key.set_key("secret");
    config.keyauth_credentials.push_back(key);
    portico::config::v1::BasicAuthCredential basic;
    basic.set_id("00000000-0000-4000-8000-000000000021");
    basic.set_consumer_id(config.consumers[1].id());
    basic.set_username("user");
    basic.set_password(portico::HashBasicAuthPassword("pass"));
    config.basicauth_credentials.push_back(basic);
    portico::config::v1::Acl acl;
    acl.set_id("00000000-0000-4000-8000-000000000031");
    acl.set_consumer_id(config.consumers[1].id());
    acl.set_group("g");
    config.acls.push_back(acl);
    return new ConfigSet(portico::ExportableConfig(std::move(config), std::string(16, 'f')));
  }();
  return *snapshot;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto& schemas = portico::plugins::BundledPluginSchemas();
  const portico::plugins::PluginSchema& schema = *schemas[data[0] % schemas.size()];
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), absl::MaxSplits('\n', 2));
  parts.resize(3);
  const json config = json::parse(parts[0], nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return 0;
  FieldErrors errors;
  const json normalized = portico::plugins::NormalizePluginConfig(schema, config, &errors);
  if (!errors.empty()) return 0;
  FieldErrors again;
  if (portico::plugins::NormalizePluginConfig(schema, normalized, &again) != normalized || !again.empty()) {
    portico::fuzz::Violation("idempotent", absl::StrCat(schema.name, ": ", normalized.dump(), " ", again.KongMessage()));
    return 0;
  }
  const portico::dp::plugins::PluginFactory* factory = portico::dp::plugins::FindPluginFactory(schema.name);
  if (factory == nullptr) {
    portico::fuzz::Violation("compiles", absl::StrCat(schema.name, ": no data-plane factory"));
    return 0;
  }
  portico::config::v1::Plugin entity;
  entity.set_id("00000000-0000-4000-8000-000000000099");
  entity.set_name(schema.name);
  auto handler = factory->compile({normalized, Snapshot(), entity});
  if (!handler.ok()) {
    portico::fuzz::Violation("compiles", absl::StrCat(schema.name, ": ", normalized.dump(), ": ", handler.status().ToString()));
    return 0;
  }

  portico::MessageHead head;
  head.method = "GET";
  for (absl::string_view line : absl::StrSplit(parts[2], '\n', absl::SkipEmpty())) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    head.headers.emplace_back(std::string(line.substr(0, colon)),
                              std::string(absl::StripLeadingAsciiWhitespace(line.substr(colon + 1))));
  }
  FuzzContext context;
  context.head = &head;
  context.target.path = "/";
  context.target.query = parts[1];
  context.target.has_query = !parts[1].empty();
  context.client_ip = "127.0.0.1";
  const StepStatus status = (*handler)->Access(context);
  const bool stopped = status == StepStatus::kStop;
  if (stopped != (context.answers == 1) || context.answers > 1 ||
      (stopped && (context.status < 100 || context.status > 599))) {
    portico::fuzz::Violation("answer", absl::StrCat(schema.name, ": stopped=", stopped, " answers=", context.answers,
                                                    " status=", context.status));
  }
  return 0;
}
