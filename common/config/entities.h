#pragma once
// Portico's entity kinds, each declared once by its descriptor (entity_descriptor.h).
#include "common/config/entity_descriptor.h"

namespace portico {

const EntityDescriptor& CertificatesKind();    // "certificates": config::v1::Certificate (+ transient `snis`)
const EntityDescriptor& CaCertificatesKind();  // "ca_certificates": config::v1::CaCertificate
const EntityDescriptor& SnisKind();            // "snis": config::v1::Sni
const EntityDescriptor& ServicesKind();  // "services": config::v1::Service
const EntityDescriptor& UpstreamsKind();  // "upstreams": config::v1::Upstream
const EntityDescriptor& TargetsKind();    // "targets" (only under /upstreams/{u}/targets): config::v1::Target
const EntityDescriptor& RoutesKind();    // "routes": config::v1::Route
const EntityDescriptor& ConsumersKind();           // "consumers": config::v1::Consumer
const EntityDescriptor& PluginsKind();             // "plugins": config::v1::Plugin
const EntityDescriptor& KeyAuthCredentialsKind();  // "keyauth_credentials" (/key-auths): config::v1::KeyAuthCredential
const EntityDescriptor& BasicAuthCredentialsKind();  // "basicauth_credentials" (/basic-auths): config::v1::BasicAuthCredential
const EntityDescriptor& AclsKind();                  // "acls": config::v1::Acl
const EntityDescriptor& JwtSecretsKind();          // "jwt_secrets" (/jwts): config::v1::JwtSecret

}  // namespace portico
