// The descriptors of Portico's entity kinds (Kong 3.x schemas, KONG-REFERENCE.md §2.2) and the
// default registry. To add a kind: its proto message, its descriptor here (and a line in
// EntityRegistry::Default), its rules in validate.cc; docs/architecture.md "How to add an entity
// kind".
#include "common/config/entities.h"

#include <ctime>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "common/base/uuid.h"
#include "common/config/basic_auth_password.h"
#include "common/config/config_set.h"
#include "common/config/upstreams.h"
#include "common/config/validate.h"
#include "nlohmann/json.hpp"
#include "portico/config/v1/config.pb.h"

namespace portico {
namespace {

using config::v1::CaCertificate;
using config::v1::Certificate;
using config::v1::Consumer;
using config::v1::Acl;
using config::v1::Sni;
using config::v1::BasicAuthCredential;
using config::v1::JwtSecret;
using config::v1::KeyAuthCredential;
using config::v1::Plugin;
using config::v1::Route;
using config::v1::Service;
using config::v1::Target;
using config::v1::Upstream;
using nlohmann::json;

// ConfigSet hook: parses one serialized entity onto the end of `Member`'s list.
template <auto Member>
bool AppendParsed(ConfigSet* config, absl::string_view serialized) {
  auto& list = config->*Member;
  if (!list.emplace_back().ParseFromArray(serialized.data(), static_cast<int>(serialized.size()))) {
    list.pop_back();
    return false;
  }
  return true;
}

// A service's `url` shorthand, "scheme://host[:port][/path]": sets protocol, host, port (443 for
// https/grpcs/tls, else 80 when absent) and path. Refused together with any of those fields.
void ApplyServiceUrl(const json& body, const json& value, google::protobuf::Message* entity, FieldErrors* errors) {
  for (const char* part : {"protocol", "host", "port", "path"}) {
    if (body.contains(part)) {
      errors->Add("url", "cannot be combined with 'protocol', 'host', 'port' or 'path'");
      return;
    }
  }
  if (!value.is_string()) {
    errors->Add("url", "expected a string");
    return;
  }
  const std::string url = value.get<std::string>();
  auto* service = static_cast<Service*>(entity);
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos || scheme_end == 0) {
    errors->Add("url", "missing scheme in url");
    return;
  }
  std::string scheme = absl::AsciiStrToLower(url.substr(0, scheme_end));
  std::string rest = url.substr(scheme_end + 3);
  size_t path_start = rest.find('/');
  std::string authority = rest.substr(0, path_start);
  std::string path = path_start == std::string::npos ? "" : rest.substr(path_start);
  // Query and fragment are not part of a service.
  if (size_t q = path.find_first_of("?#"); q != std::string::npos) path.resize(q);
  std::string host = authority;
  std::string port_text;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) {
      errors->Add("url", "invalid url");
      return;
    }
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        errors->Add("url", "invalid url");
        return;
      }
      port_text = authority.substr(close + 2);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
  }
  if (host.empty()) {
    errors->Add("url", "missing host in url");
    return;
  }
  int32_t port = 0;
  if (!port_text.empty()) {
    if (!absl::SimpleAtoi(port_text, &port)) {
      errors->Add("url", "invalid port in url");
      return;
    }
  } else {
    port = (scheme == "https" || scheme == "grpcs" || scheme == "tls" || scheme == "wss") ? 443 : 80;
  }
  service->set_protocol(scheme);
  service->set_host(host);
  service->set_port(port);
  if (path.empty()) {
    service->clear_path();
  } else {
    service->set_path(path);
  }
}

}  // namespace

namespace {

int64_t WallClockSeconds() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

const EntityDescriptor& CertificatesKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "certificates",
          .fields =
              {
                  {.name = "cert", .type = FieldType::kString, .required = true},
                  {.name = "key", .type = FieldType::kString, .required = true, .secret = true},
                  {.name = "cert_alt", .type = FieldType::kString},
                  {.name = "key_alt", .type = FieldType::kString, .secret = true},
                  {.name = "tags", .type = FieldType::kSet},
              },
          // Written through the Admin API: an expired certificate is refused too.
          .validate = [](const google::protobuf::Message& m) {
            return ValidateCertificateFields(static_cast<const Certificate&>(m), WallClockSeconds());
          },
          .append_to_config = &AppendParsed<&ConfigSet::certificates>,
          .child_keys_field = "snis",
          .child_keys_kind = "snis",
      },
      Certificate::default_instance());
  return *kind;
}

const EntityDescriptor& CaCertificatesKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "ca_certificates",
          .fields =
              {
                  {.name = "cert", .type = FieldType::kString, .required = true},
                  {.name = "cert_digest", .type = FieldType::kString, .unique = true},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) {
            return ValidateCaCertificateFields(static_cast<const CaCertificate&>(m), WallClockSeconds());
          },
          .normalize = [](google::protobuf::Message* m, FieldErrors*) {
            // Kong computes cert_digest on write; a given one is replaced.
            NormalizeCaCertificate(static_cast<CaCertificate*>(m));
          },
          .append_to_config = &AppendParsed<&ConfigSet::ca_certificates>,
      },
      CaCertificate::default_instance());
  return *kind;
}

const EntityDescriptor& SnisKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "snis",
          .endpoint_key = "name",
          .fields =
              {
                  {.name = "name", .type = FieldType::kString, .required = true, .unique = true},
                  {.name = "certificate",
                   .type = FieldType::kForeignKey,
                   .required = true,
                   .references = "certificates",
                   .on_delete = OnDelete::kCascade},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) { return ValidateSniFields(static_cast<const Sni&>(m)); },
          .normalize = [](google::protobuf::Message* m, FieldErrors*) { NormalizeSni(static_cast<Sni*>(m)); },
          .append_to_config = &AppendParsed<&ConfigSet::snis>,
      },
      Sni::default_instance());
  return *kind;
}

const EntityDescriptor& ServicesKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "services",
          .endpoint_key = "name",
          .fields =
              {
                  {.name = "name", .type = FieldType::kString, .unique = true},
                  {.name = "retries", .type = FieldType::kInteger, .default_json = "5"},
                  {.name = "protocol", .type = FieldType::kString, .default_json = R"("http")", .required = true},
                  {.name = "host", .type = FieldType::kString, .required = true},
                  {.name = "port", .type = FieldType::kInteger, .default_json = "80"},
                  {.name = "path", .type = FieldType::kString},
                  {.name = "connect_timeout", .type = FieldType::kInteger, .default_json = "60000"},
                  {.name = "write_timeout", .type = FieldType::kInteger, .default_json = "60000"},
                  {.name = "read_timeout", .type = FieldType::kInteger, .default_json = "60000"},
                  {.name = "tags", .type = FieldType::kSet},
                  // Kong: deleting a certificate a service uses is refused.
                  {.name = "client_certificate",
                   .type = FieldType::kForeignKey,
                   .references = "certificates",
                   .on_delete = OnDelete::kRestrict},
                  {.name = "tls_verify", .type = FieldType::kBoolean},
                  {.name = "tls_verify_depth", .type = FieldType::kInteger},
                  {.name = "ca_certificates", .type = FieldType::kArray, .references = "ca_certificates"},
                  {.name = "enabled", .type = FieldType::kBoolean, .default_json = "true"},
              },
          .shorthands = {{.name = "url", .type = FieldType::kString, .apply = &ApplyServiceUrl}},
          .validate = [](const google::protobuf::Message& m) {
            return ValidateServiceFields(static_cast<const Service&>(m));
          },
          .append_to_config = &AppendParsed<&ConfigSet::services>,
      },
      Service::default_instance());
  return *kind;
}

const EntityDescriptor& UpstreamsKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "upstreams",
          .endpoint_key = "name",
          .fields =
              {
                  {.name = "name", .type = FieldType::kString, .required = true, .unique = true},
                  {.name = "algorithm", .type = FieldType::kString, .default_json = R"("round-robin")"},
                  {.name = "hash_on", .type = FieldType::kString, .default_json = R"("none")"},
                  {.name = "hash_fallback", .type = FieldType::kString, .default_json = R"("none")"},
                  {.name = "hash_on_header", .type = FieldType::kString},
                  {.name = "hash_fallback_header", .type = FieldType::kString},
                  {.name = "hash_on_cookie", .type = FieldType::kString},
                  {.name = "hash_on_cookie_path", .type = FieldType::kString, .default_json = R"("/")"},
                  {.name = "hash_on_query_arg", .type = FieldType::kString},
                  {.name = "hash_fallback_query_arg", .type = FieldType::kString},
                  {.name = "hash_on_uri_capture", .type = FieldType::kString},
                  {.name = "hash_fallback_uri_capture", .type = FieldType::kString},
                  {.name = "slots", .type = FieldType::kInteger, .default_json = "10000"},
                  // Every field of Kong's record, defaults filled (upstreams.h).
                  {.name = "healthchecks",
                   .type = FieldType::kJsonRecord,
                   .default_json = DefaultUpstreamHealthchecksJson(),
                   .merge = &MergeUpstreamHealthchecks},
                  {.name = "host_header", .type = FieldType::kString},
                  {.name = "client_certificate",
                   .type = FieldType::kForeignKey,
                   .references = "certificates",
                   .on_delete = OnDelete::kRestrict},
                  {.name = "use_srv_name", .type = FieldType::kBoolean, .default_json = "false"},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) {
            return ValidateUpstreamFields(static_cast<const Upstream&>(m));
          },
          .normalize = [](google::protobuf::Message* m, FieldErrors* errors) {
            NormalizeUpstream(static_cast<Upstream*>(m), errors);
          },
          .append_to_config = &AppendParsed<&ConfigSet::upstreams>,
          .rewrite_body = &RewriteUpstreamBody,
      },
      Upstream::default_instance());
  return *kind;
}

const EntityDescriptor& TargetsKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "targets",
          .endpoint_key = "target",
          .fields =
              {
                  {.name = "upstream",
                   .type = FieldType::kForeignKey,
                   .required = true,
                   .references = "upstreams",
                   .on_delete = OnDelete::kCascade},
                  {.name = "target", .type = FieldType::kString, .required = true},
                  {.name = "weight", .type = FieldType::kInteger, .default_json = "100"},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) {
            return ValidateTargetFields(static_cast<const Target&>(m));
          },
          .normalize = [](google::protobuf::Message* m, FieldErrors*) {
            // Kong stores "host:port", port 8000 when none is given.
            NormalizeTarget(static_cast<Target*>(m));
          },
          .append_to_config = &AppendParsed<&ConfigSet::targets>,
          .top_level_endpoints = false,  // Kong: only /upstreams/{u}/targets[/{t}]
          .cache_key_fields = {"target", "upstream"},
          .endpoint_key_scope = "upstream",
      },
      Target::default_instance());
  return *kind;
}

const EntityDescriptor& RoutesKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "routes",
          .endpoint_key = "name",
          .fields =
              {
                  {.name = "name", .type = FieldType::kString, .unique = true},
                  {.name = "protocols", .type = FieldType::kSet, .default_json = R"(["http","https"])"},
                  {.name = "methods", .type = FieldType::kSet},
                  {.name = "hosts", .type = FieldType::kArray},
                  {.name = "paths", .type = FieldType::kArray},
                  {.name = "headers", .type = FieldType::kStringArrayMap, .lowercase_keys = true},
                  {.name = "snis", .type = FieldType::kSet},
                  {.name = "sources", .type = FieldType::kRecordSet},
                  {.name = "destinations", .type = FieldType::kRecordSet},
                  {.name = "https_redirect_status_code", .type = FieldType::kInteger, .default_json = "426"},
                  {.name = "regex_priority", .type = FieldType::kInteger, .default_json = "0"},
                  {.name = "strip_path", .type = FieldType::kBoolean, .default_json = "true"},
                  {.name = "preserve_host", .type = FieldType::kBoolean, .default_json = "false"},
                  {.name = "request_buffering", .type = FieldType::kBoolean, .default_json = "true"},
                  {.name = "response_buffering", .type = FieldType::kBoolean, .default_json = "true"},
                  {.name = "path_handling", .type = FieldType::kString, .default_json = R"("v0")"},
                  {.name = "service",
                   .type = FieldType::kForeignKey,
                   .references = "services",
                   .on_delete = OnDelete::kRestrict},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) {
            return ValidateRouteFields(static_cast<const Route&>(m));
          },
          .append_to_config = &AppendParsed<&ConfigSet::routes>,
      },
      Route::default_instance());
  return *kind;
}

const EntityDescriptor& ConsumersKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "consumers",
          .endpoint_key = "username",
          .fields =
              {
                  {.name = "username", .type = FieldType::kString, .unique = true},
                  {.name = "custom_id", .type = FieldType::kString, .unique = true},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) {
            return ValidateConsumerFields(static_cast<const Consumer&>(m));
          },
          .append_to_config = &AppendParsed<&ConfigSet::consumers>,
      },
      Consumer::default_instance());
  return *kind;
}

namespace {

// A credential's (or ACL group's) consumer: required, and deleting the consumer deletes it.
FieldSpec OwningConsumerField() {
  return {.name = "consumer",
          .type = FieldType::kForeignKey,
          .required = true,
          .references = "consumers",
          .on_delete = OnDelete::kCascade};
}

}  // namespace

const EntityDescriptor& KeyAuthCredentialsKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "keyauth_credentials",
          .admin_name = "key-auths",
          .nested_admin_name = "key-auth",
          .endpoint_key = "key",
          .fields =
              {
                  OwningConsumerField(),
                  {.name = "key", .type = FieldType::kString, .unique = true, .secret = true},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) {
            return ValidateKeyAuthCredentialFields(static_cast<const KeyAuthCredential&>(m));
          },
          .normalize = [](google::protobuf::Message* m, FieldErrors*) {
            // Kong generates a key when none is given.
            auto* credential = static_cast<KeyAuthCredential*>(m);
            if (credential->key().empty()) credential->set_key(absl::StrReplaceAll(NewUuid(), {{"-", ""}}));
          },
          .append_to_config = &AppendParsed<&ConfigSet::keyauth_credentials>,
      },
      KeyAuthCredential::default_instance());
  return *kind;
}

const EntityDescriptor& BasicAuthCredentialsKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "basicauth_credentials",
          .admin_name = "basic-auths",
          .nested_admin_name = "basic-auth",
          .endpoint_key = "username",
          .fields =
              {
                  OwningConsumerField(),
                  {.name = "username", .type = FieldType::kString, .required = true, .unique = true},
                  {.name = "password", .type = FieldType::kString, .required = true, .secret = true},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) {
            return ValidateBasicAuthCredentialFields(static_cast<const BasicAuthCredential&>(m));
          },
          .normalize = [](google::protobuf::Message* m, FieldErrors*) {
            // Only the hash is stored (a PATCH without a password keeps the stored hash).
            auto* credential = static_cast<BasicAuthCredential*>(m);
            if (!credential->password().empty() && !IsHashedBasicAuthPassword(credential->password())) {
              credential->set_password(HashBasicAuthPassword(credential->password()));
            }
          },
          .append_to_config = &AppendParsed<&ConfigSet::basicauth_credentials>,
      },
      BasicAuthCredential::default_instance());
  return *kind;
}

const EntityDescriptor& AclsKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "acls",
          .fields =
              {
                  OwningConsumerField(),
                  {.name = "group", .type = FieldType::kString, .required = true},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) { return ValidateAclFields(static_cast<const Acl&>(m)); },
          .append_to_config = &AppendParsed<&ConfigSet::acls>,
          .cache_key_fields = {"consumer", "group"},
      },
      Acl::default_instance());
  return *kind;
}

const EntityDescriptor& JwtSecretsKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "jwt_secrets",
          .admin_name = "jwts",
          .nested_admin_name = "jwt",
          .endpoint_key = "key",
          .fields =
              {
                  OwningConsumerField(),
                  {.name = "key", .type = FieldType::kString, .unique = true},
                  {.name = "secret", .type = FieldType::kString, .secret = true},
                  {.name = "rsa_public_key", .type = FieldType::kString},
                  {.name = "algorithm", .type = FieldType::kString, .default_json = R"("HS256")"},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) {
            return ValidateJwtSecretFields(static_cast<const JwtSecret&>(m));
          },
          .normalize = [](google::protobuf::Message* m, FieldErrors*) {
            // Kong generates the key and the secret when they are not given.
            auto* secret = static_cast<JwtSecret*>(m);
            if (secret->key().empty()) secret->set_key(absl::StrReplaceAll(NewUuid(), {{"-", ""}}));
            if (secret->secret().empty()) secret->set_secret(absl::StrReplaceAll(NewUuid(), {{"-", ""}}));
          },
          .append_to_config = &AppendParsed<&ConfigSet::jwt_secrets>,
      },
      JwtSecret::default_instance());
  return *kind;
}

const EntityDescriptor& PluginsKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "plugins",
          .endpoint_key = "instance_name",
          .fields =
              {
                  {.name = "name", .type = FieldType::kString, .required = true},
                  {.name = "instance_name", .type = FieldType::kString, .unique = true},
                  {.name = "config", .type = FieldType::kJsonRecord, .default_json = "{}"},
                  {.name = "service",
                   .type = FieldType::kForeignKey,
                   .references = "services",
                   .on_delete = OnDelete::kCascade},
                  {.name = "route", .type = FieldType::kForeignKey, .references = "routes", .on_delete = OnDelete::kCascade},
                  {.name = "consumer",
                   .type = FieldType::kForeignKey,
                   .references = "consumers",
                   .on_delete = OnDelete::kCascade},
                  {.name = "protocols", .type = FieldType::kSet, .default_json = R"(["grpc","grpcs","http","https"])"},
                  {.name = "enabled", .type = FieldType::kBoolean, .default_json = "true"},
                  {.name = "tags", .type = FieldType::kSet},
              },
          .validate = [](const google::protobuf::Message& m) {
            return ValidatePluginFields(static_cast<const Plugin&>(m));
          },
          .normalize = [](google::protobuf::Message* m, FieldErrors* errors) {
            NormalizePlugin(static_cast<Plugin*>(m), errors);
          },
          .append_to_config = &AppendParsed<&ConfigSet::plugins>,
          .cache_key_fields = {"consumer", "name", "route", "service"},
      },
      Plugin::default_instance());
  return *kind;
}

const EntityRegistry& EntityRegistry::Default() {
  static const EntityRegistry* const registry =
      new EntityRegistry({&CertificatesKind(), &CaCertificatesKind(), &SnisKind(), &ServicesKind(), &UpstreamsKind(), &TargetsKind(), &RoutesKind(), &ConsumersKind(), &PluginsKind(), &KeyAuthCredentialsKind(),
                         &BasicAuthCredentialsKind(), &AclsKind(), &JwtSecretsKind()});
  return *registry;
}

}  // namespace portico
