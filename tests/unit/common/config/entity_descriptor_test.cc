// Entity descriptors: the built-in kinds are sound and agree with the validator; a declaration
// that does not fit its proto message is refused with the reason; the registry orders kinds and
// finds the references between them.
#include "common/config/entity_descriptor.h"

#include <algorithm>

#include "common/config/entities.h"
#include "common/config/entity_json.h"
#include "common/config/validate.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"

namespace portico {
namespace {

using config::v1::Route;
using config::v1::Service;
using nlohmann::json;

FieldErrors NoRules(const google::protobuf::Message& m) {
  return ValidateEntityUtf8First(m, [](const google::protobuf::Message&) { return FieldErrors(); });
}

// The declared fields of a built kind (without the implied id and timestamps).
std::vector<FieldSpec> DeclaredFields(const EntityDescriptor& kind) {
  std::vector<FieldSpec> out;
  for (const FieldSpec& spec : kind.fields()) {
    if (spec.type == FieldType::kId || spec.type == FieldType::kTimestamp) continue;
    FieldSpec copy = spec;
    copy.proto = nullptr;
    out.push_back(copy);
  }
  return out;
}

// A declaration of services that passes Check; tests break one thing at a time.
EntityKindDeclaration ServiceDeclaration() {
  return {.name = "services", .endpoint_key = "name", .fields = DeclaredFields(ServicesKind()), .validate = &NoRules};
}

TEST(EntityDescriptorTest, BuiltInKindsFitTheirMessages) {
  for (const EntityDescriptor* kind : EntityRegistry::Default().kinds()) {
    EntityKindDeclaration d{.name = kind->name(),
                            .endpoint_key = kind->endpoint_key(),
                            .fields = DeclaredFields(*kind),
                            .shorthands = kind->shorthands(),
                            .validate = &NoRules,
                            .endpoint_key_scope = kind->endpoint_key_scope()};
    d.cache_key_fields.clear();
    for (const FieldSpec* f : kind->cache_key_fields()) d.cache_key_fields.push_back(f->name);
    const google::protobuf::Message& prototype = kind->defaults();  // a message of the kind
    EXPECT_TRUE(EntityDescriptor::Check(d, prototype).ok()) << EntityDescriptor::Check(d, prototype);
    // Every proto field is described, so the codec can never silently drop a new one.
    EXPECT_EQ(static_cast<int>(kind->fields().size()), kind->message_type()->field_count()) << kind->name();
    EXPECT_EQ(kind->fields()[0].name, "id");
  }
  EXPECT_EQ(ServicesKind().message_type(), Service::descriptor());
  EXPECT_EQ(RoutesKind().message_type(), Route::descriptor());
}

TEST(EntityDescriptorTest, CheckRefusesDeclarationsThatDoNotFitTheMessage) {
  const Service& prototype = Service::default_instance();
  ASSERT_TRUE(EntityDescriptor::Check(ServiceDeclaration(), prototype).ok());
  auto refused = [&](const EntityKindDeclaration& d, absl::string_view why) {
    absl::Status s = EntityDescriptor::Check(d, prototype);
    EXPECT_FALSE(s.ok()) << why;
    EXPECT_NE(s.message().find(why), absl::string_view::npos) << s;
  };
  EntityKindDeclaration d = ServiceDeclaration();
  d.fields.push_back({.name = "colour", .type = FieldType::kString});
  refused(d, "field 'colour' has no proto field 'colour'");

  d = ServiceDeclaration();
  for (FieldSpec& f : d.fields) {
    if (f.name == "port") f.type = FieldType::kBoolean;
  }
  refused(d, "field 'port': proto field 'port' does not fit its type");

  d = ServiceDeclaration();
  d.fields.erase(std::find_if(d.fields.begin(), d.fields.end(), [](const FieldSpec& f) { return f.name == "retries"; }));
  refused(d, "proto field 'retries' is not declared");

  d = ServiceDeclaration();
  d.endpoint_key = "host";  // not unique
  refused(d, "the endpoint key must be a unique field");

  d = ServiceDeclaration();
  for (FieldSpec& f : d.fields) {
    if (f.name == "retries") f.default_json = "{not json";
  }
  refused(d, "default is not a JSON value");

  d = ServiceDeclaration();
  for (FieldSpec& f : d.fields) {
    if (f.name == "client_certificate") f.type = FieldType::kString;  // the proto field is client_certificate_id
  }
  refused(d, "field 'client_certificate' has no proto field 'client_certificate'");

  d = ServiceDeclaration();
  d.shorthands.push_back({.name = "host", .type = FieldType::kString, .apply = ServicesKind().shorthands()[0].apply});
  refused(d, "shorthand 'host' collides");

  d = ServiceDeclaration();
  for (FieldSpec& f : d.fields) {
    if (f.name == "port") f.merge = [](json*, const json&) {};
  }
  refused(d, "field 'port': merge is for JSON records");

  d = ServiceDeclaration();
  d.endpoint_key = "host";
  d.endpoint_key_scope = "protocol";  // not a foreign key
  refused(d, "the endpoint key scope must be a foreign key to a registered kind");

  d = ServiceDeclaration();
  d.fields.push_back({.name = "id", .type = FieldType::kId});
  refused(d, "field 'id': id, created_at and updated_at are implied, not declared");
}

// The descriptor's `required` flags and the kind's own rules say the same thing.
TEST(EntityDescriptorTest, RequiredFieldsAreTheOnesTheValidatorReportsMissing) {
  Service service = DefaultService();
  service.set_host("example.com");
  ASSERT_TRUE(ServicesKind().Validate(service).empty());
  int required = 0;
  for (const EntityDescriptor* kind : EntityRegistry::Default().kinds()) {
    for (const FieldSpec& spec : kind->fields()) {
      if (!spec.required) continue;
      ++required;
      if (kind == &KeyAuthCredentialsKind()) {
        ASSERT_EQ(spec.name, "consumer");
        config::v1::KeyAuthCredential credential;
        credential.set_key("k");
        EXPECT_TRUE(KeyAuthCredentialsKind().Validate(credential).Has("consumer"));
        continue;
      }
      if (kind == &JwtSecretsKind()) {
        ASSERT_EQ(spec.name, "consumer");
        config::v1::JwtSecret secret;
        secret.set_key("k");
        secret.set_secret("s");
        secret.set_algorithm("HS256");
        EXPECT_TRUE(JwtSecretsKind().Validate(secret).Has("consumer"));
        continue;
      }
      if (kind == &PluginsKind()) {
        ASSERT_EQ(spec.name, "name");
        config::v1::Plugin plugin;
        plugin.add_protocols("http");
        EXPECT_TRUE(PluginsKind().Validate(plugin).Has("name"));
        plugin.set_name("request-termination");
        EXPECT_TRUE(PluginsKind().Validate(plugin).empty()) << PluginsKind().Validate(plugin).KongMessage();
        continue;
      }
      if (kind == &BasicAuthCredentialsKind() || kind == &AclsKind()) {
        std::unique_ptr<google::protobuf::Message> empty = kind->New();
        EXPECT_TRUE(kind->Validate(*empty).Has(spec.name)) << kind->name() << "." << spec.name;
        continue;
      }
      if (kind == &UpstreamsKind()) {
        ASSERT_EQ(spec.name, "name");
        config::v1::Upstream upstream = static_cast<const config::v1::Upstream&>(kind->defaults());
        EXPECT_TRUE(kind->Validate(upstream).Has("name"));
        upstream.set_name("backend.internal");
        EXPECT_TRUE(kind->Validate(upstream).empty()) << kind->Validate(upstream).KongMessage();
        continue;
      }
      if (kind == &TargetsKind()) {
        config::v1::Target target = static_cast<const config::v1::Target&>(kind->defaults());
        target.set_upstream_id("22222222-2222-4222-8222-222222222222");
        target.set_target("10.0.0.1:8000");
        ASSERT_TRUE(kind->Validate(target).empty()) << kind->Validate(target).KongMessage();
        target.GetReflection()->ClearField(&target, spec.proto);
        EXPECT_TRUE(kind->Validate(target).Has(spec.name)) << spec.name;
        continue;
      }
      if (kind == &CertificatesKind() || kind == &CaCertificatesKind() || kind == &SnisKind()) {
        std::unique_ptr<google::protobuf::Message> empty = kind->New();
        EXPECT_TRUE(kind->Validate(*empty).Has(spec.name)) << kind->name() << "." << spec.name;
        continue;
      }
      ASSERT_EQ(kind, &ServicesKind()) << "a required field of " << kind->name() << " needs a case here";
      Service missing = service;
      missing.GetReflection()->ClearField(&missing, spec.proto);
      FieldErrors errors = kind->Validate(missing);
      EXPECT_TRUE(errors.Has(spec.name)) << spec.name << ": " << errors.KongMessage();
    }
  }
  // services: protocol, host; plugins: name; credentials: consumer (+ basic-auth username, password;
  // acl group); upstreams: name; targets: upstream, target; certificates: cert, key;
  // ca_certificates: cert; snis: name, certificate
  EXPECT_EQ(required, 18);
}

TEST(EntityDescriptorTest, DefaultsAndFormKindsComeFromTheDeclaration) {
  const Route& defaults = static_cast<const Route&>(RoutesKind().defaults());
  EXPECT_EQ(defaults.protocols_size(), 2);
  EXPECT_EQ(defaults.https_redirect_status_code(), 426);
  EXPECT_TRUE(defaults.strip_path());
  EXPECT_FALSE(defaults.has_name());
  EXPECT_TRUE(defaults.id().empty());
  EXPECT_EQ(FormFieldKind(RoutesKind(), "headers"), FieldKind::kStringMap);
  EXPECT_EQ(FormFieldKind(RoutesKind(), "sources"), FieldKind::kRecordArray);
  EXPECT_EQ(FormFieldKind(RoutesKind(), "service"), FieldKind::kRecord);
  EXPECT_EQ(FormFieldKind(ServicesKind(), "url"), FieldKind::kString);  // a shorthand
  EXPECT_EQ(FormFieldKind(ServicesKind(), "port"), FieldKind::kInteger);
  EXPECT_EQ(FormFieldKind(ServicesKind(), "nope"), FieldKind::kUnknown);
  // Null resets to the declared default, whatever the field's type.
  Route r = defaults;
  FieldErrors errors;
  ApplyRouteJson(json::parse(R"({"protocols":["grpc"],"strip_path":false,"regex_priority":9})"), &r, &errors);
  ApplyRouteJson(json::parse(R"({"protocols":null,"strip_path":null,"regex_priority":null})"), &r, &errors);
  ASSERT_TRUE(errors.empty()) << errors.KongMessage();
  EXPECT_EQ(RouteToJson(r), RouteToJson(defaults));
}

TEST(EntityDescriptorTest, ReflectionAccessorsReadAndWriteTheDeclaredFields) {
  const EntityDescriptor& kind = RoutesKind();
  Route r = DefaultRoute();
  kind.SetId(&r, "11111111-1111-4111-8111-111111111111");
  kind.SetCreatedAt(&r, 5);
  kind.SetUpdatedAt(&r, 6);
  EXPECT_EQ(r.id(), "11111111-1111-4111-8111-111111111111");
  EXPECT_EQ(kind.CreatedAt(r), 5);
  EXPECT_EQ(r.updated_at(), 6);
  const FieldSpec& service = *kind.field("service");
  EXPECT_EQ(kind.Text(r, service), std::nullopt);
  kind.SetText(&r, service, "22222222-2222-4222-8222-222222222222");
  EXPECT_EQ(r.service_id(), "22222222-2222-4222-8222-222222222222");
  EXPECT_EQ(kind.Text(r, *kind.field("name")), std::nullopt);
  EXPECT_TRUE(kind.Tags(r).empty());
  r.mutable_tags()->add_values("a");
  r.mutable_tags()->add_values("b");
  EXPECT_EQ(kind.Tags(r), (std::vector<std::string>{"a", "b"}));
  ASSERT_EQ(kind.unique_fields().size(), 1u);
  EXPECT_EQ(kind.unique_fields()[0]->name, "name");
  ASSERT_EQ(kind.stored_foreign_keys().size(), 1u);
  EXPECT_EQ(kind.stored_foreign_keys()[0]->references, "services");
  ASSERT_EQ(ServicesKind().stored_foreign_keys().size(), 1u);
  EXPECT_EQ(ServicesKind().stored_foreign_keys()[0]->references, "certificates");
  // Arrays: a StringList wrapper (null when unset) and a plain repeated string read the same way.
  Service s = DefaultService();
  const FieldSpec& cas = *ServicesKind().field("ca_certificates");
  EXPECT_TRUE(ServicesKind().Strings(s, cas).empty());
  s.mutable_ca_certificates()->add_values("33333333-3333-4333-8333-333333333333");
  EXPECT_EQ(ServicesKind().Strings(s, cas), (std::vector<std::string>{"33333333-3333-4333-8333-333333333333"}));
  EXPECT_EQ(kind.Strings(r, *kind.field("protocols")), (std::vector<std::string>{"http", "https"}));
}

TEST(EntityRegistryTest, FindsKindsAndTheReferencesBetweenThem) {
  const EntityRegistry& kinds = EntityRegistry::Default();
  EXPECT_EQ(kinds.Find("services"), &ServicesKind());
  EXPECT_EQ(kinds.Find(Route::descriptor()), &RoutesKind());
  EXPECT_EQ(kinds.Find("consumers"), &ConsumersKind());
  EXPECT_EQ(kinds.Find("upstreams"), &UpstreamsKind());
  EXPECT_EQ(kinds.Find("certificates"), &CertificatesKind());
  // Certificates: their SNIs cascade; services and upstreams using one restrict its delete.
  std::vector<EntityRegistry::Reference> to_certificates = kinds.ReferencesTo(CertificatesKind());
  ASSERT_EQ(to_certificates.size(), 3u);
  EXPECT_EQ(to_certificates[0].kind, &SnisKind());
  EXPECT_EQ(to_certificates[0].field->on_delete, OnDelete::kCascade);
  EXPECT_EQ(to_certificates[1].kind, &ServicesKind());
  EXPECT_EQ(to_certificates[1].field->on_delete, OnDelete::kRestrict);
  EXPECT_EQ(to_certificates[2].kind, &UpstreamsKind());
  EXPECT_EQ(to_certificates[2].field->on_delete, OnDelete::kRestrict);
  // Targets hang off upstreams (cascade), keyed per upstream, and have no top-level endpoints.
  std::vector<EntityRegistry::Reference> to_upstreams = kinds.ReferencesTo(UpstreamsKind());
  ASSERT_EQ(to_upstreams.size(), 1u);
  EXPECT_EQ(to_upstreams[0].kind, &TargetsKind());
  EXPECT_EQ(to_upstreams[0].field->on_delete, OnDelete::kCascade);
  EXPECT_FALSE(TargetsKind().top_level_endpoints());
  EXPECT_EQ(TargetsKind().endpoint_key_scope(), "upstream");
  EXPECT_TRUE(TargetsKind().has_cache_key());
  EXPECT_TRUE(UpstreamsKind().exported());
  EXPECT_TRUE(TargetsKind().exported());
  EXPECT_EQ(kinds.FindByAdminName("key-auths"), &KeyAuthCredentialsKind());
  EXPECT_EQ(kinds.FindByAdminName("keyauth_credentials"), nullptr);
  EXPECT_EQ(KeyAuthCredentialsKind().nested_admin_name(), "key-auth");
  EXPECT_EQ(ServicesKind().admin_name(), "services");
  std::vector<EntityRegistry::Reference> refs = kinds.ReferencesTo(ServicesKind());
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_EQ(refs[0].kind, &RoutesKind());
  EXPECT_EQ(refs[0].field->name, "service");
  EXPECT_EQ(refs[1].kind, &PluginsKind());
  EXPECT_EQ(refs[1].field->on_delete, OnDelete::kCascade);
  std::vector<EntityRegistry::Reference> to_routes = kinds.ReferencesTo(RoutesKind());
  ASSERT_EQ(to_routes.size(), 1u);
  EXPECT_EQ(to_routes[0].kind, &PluginsKind());
  EXPECT_EQ(to_routes[0].field->name, "route");
  EXPECT_TRUE(kinds.ReferencesTo(PluginsKind()).empty());
  std::vector<EntityRegistry::Reference> to_consumers = kinds.ReferencesTo(ConsumersKind());
  ASSERT_EQ(to_consumers.size(), 5u);
  EXPECT_EQ(to_consumers[0].kind, &PluginsKind());
  EXPECT_EQ(to_consumers[1].kind, &KeyAuthCredentialsKind());
  EXPECT_EQ(to_consumers[2].kind, &BasicAuthCredentialsKind());
  EXPECT_EQ(to_consumers[3].kind, &AclsKind());
  for (const auto& ref : to_consumers) {
    if (ref.kind != &PluginsKind()) EXPECT_EQ(ref.field->on_delete, OnDelete::kCascade) << ref.kind->name();
  }
  EXPECT_EQ(kinds.FindByAdminName("basic-auths"), &BasicAuthCredentialsKind());
  EXPECT_EQ(BasicAuthCredentialsKind().nested_admin_name(), "basic-auth");
  EXPECT_EQ(kinds.FindByAdminName("acls"), &AclsKind());
  EXPECT_EQ(to_consumers[4].kind, &JwtSecretsKind());
  EXPECT_EQ(kinds.FindByAdminName("jwts"), &JwtSecretsKind());
  EXPECT_EQ(JwtSecretsKind().nested_admin_name(), "jwt");
}

TEST(EntityRegistryDeathTest, AReferenceToAKindListedLaterIsAProgrammingError) {
  EXPECT_DEATH(EntityRegistry({&RoutesKind(), &ServicesKind()}), "references 'services', which is not listed before it");
  EXPECT_DEATH(EntityRegistry({&CertificatesKind(), &CaCertificatesKind(), &ServicesKind(), &ServicesKind()}),
               "listed twice");
  EXPECT_DEATH(EntityRegistry({&CaCertificatesKind(), &ServicesKind()}),
               "references 'certificates', which is not listed before it");
  // A kind's child keys need their kind registered.
  EXPECT_DEATH(EntityRegistry({&CertificatesKind()}), "child keys kind 'snis' is not registered");
}

}  // namespace
}  // namespace portico
