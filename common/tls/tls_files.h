#pragma once
// Cluster TLS material: reading PEM files, generating the cluster CA and leaf certificates, and
// reading identity facts out of a certificate. OpenSSL types stay in the .cc file.
//
// Data-plane identity: a DP client certificate carries exactly one URI SAN
// `spiffe://portico/dp/<node_id>`; `CertificateInfo::node_id` is that <node_id>. The CP compares it
// with Hello.node_id. Node ids are 1..128 characters of [A-Za-z0-9._-] (UUIDs fit).
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/file.h"  // ReadFileToString, used with these files

namespace portico {

inline constexpr char kDataPlaneUriPrefix[] = "spiffe://portico/dp/";

// True if `node_id` is acceptable as a DP identity (see above).
bool IsValidNodeId(absl::string_view node_id);

// Creates `dir` (and missing parents, 0700) and writes into it a new cluster:
//   ca.crt, ca.key        cluster CA (EC P-256, 10 years); ca.key is kept to issue more DP certs
//   cp.crt, cp.key        CP server cert: SAN DNS:localhost, IP:127.0.0.1, IP:::1 + extra_cp_names
//                         (an entry that parses as an IP address becomes an IP SAN, else a DNS SAN)
//   dp.crt, dp.key        DP client cert with identity `dp_node_id`
// Leaves are valid ~3 years, serials are 128-bit random, SHA-256 signatures, *.key files mode 0600.
// Overwrites existing files (the gen-certs command decides whether that is allowed).
absl::Status GenerateClusterCertificates(const std::string& dir,
                                         const std::vector<std::string>& extra_cp_names,
                                         const std::string& dp_node_id);

// Issues another DP client certificate from `dir`/ca.crt + `dir`/ca.key. Writes
// `out_prefix`.crt and `out_prefix`.key (0600); `out_prefix` is a path, e.g. "/tmp/certs/dp2".
absl::Status IssueDataPlaneCertificate(const std::string& dir, const std::string& node_id,
                                       const std::string& out_prefix);

// Issues a new CP server certificate from `dir`/ca.crt + `dir`/ca.key (same SANs rule as above)
// into `dir`/`name`.crt. The key in `dir`/`name`.key is kept and certified again unless `new_key`
// is true or there is none; then a new key is written (0600). FailedPrecondition if ca.key does not
// match ca.crt.
absl::Status IssueControlPlaneCertificate(const std::string& dir,
                                          const std::vector<std::string>& extra_cp_names,
                                          bool new_key, const std::string& name = "cp");

// A certificate's validity window, as Unix seconds (notBefore, notAfter). notAfter in the past
// gives an expired certificate, notBefore in the future a not-yet-valid one (for tests).
struct CertificateValidity {
  int64_t not_before = 0;
  int64_t not_after = 0;
};

// As above, with an explicit validity window. InvalidArgument if not_after < not_before.
absl::Status IssueDataPlaneCertificate(const std::string& dir, const std::string& node_id,
                                       const std::string& out_prefix,
                                       const CertificateValidity& validity);

struct CertificateInfo {
  std::string node_id;                 // from the URI SAN spiffe://portico/dp/<id>; "" if none
  std::string subject;                 // RFC 2253 form, e.g. "CN=portico-dp,O=Portico"
  int64_t not_after = 0;               // seconds since epoch
  std::string serial_hex;              // lowercase hex
  std::vector<std::string> dns_names;  // DNS SANs
  std::vector<std::string> ip_addresses;  // IP SANs, textual
  std::vector<std::string> uris;       // URI SANs
};

// Parses the first certificate of a PEM text. InvalidArgument if it is not one.
absl::StatusOr<CertificateInfo> InspectCertificate(absl::string_view pem);

// A certificate, its private key and a CA bundle, read and checked together (cluster TLS at
// start and on every SIGHUP reload; the Admin API's TLS listener).
struct TlsMaterial {
  std::string cert_pem;  // the certificate (chain) as read
  std::string key_pem;   // never logged, never put into a message
  std::string ca_pem;    // one or more CA certificates (empty when none was asked for)
  int64_t not_after = 0;  // the first certificate's notAfter, Unix seconds
};

// Checks that `cert_pem` starts with a certificate, `key_pem` is a private key, and the key
// belongs to the certificate. InvalidArgument naming `cert_name`/`key_name` (file names or flags)
// otherwise; the message never contains key material. Returns the certificate's notAfter.
absl::StatusOr<int64_t> CheckCertificateAndKey(absl::string_view cert_pem, absl::string_view key_pem,
                                               absl::string_view cert_name, absl::string_view key_name);

// The number of certificates in a PEM bundle; InvalidArgument (naming `name`) if there is none or
// a block does not parse.
absl::StatusOr<int> CountCertificates(absl::string_view pem, absl::string_view name);

// Reads and checks cert + key (CheckCertificateAndKey) and, when `ca_file` is not empty, the CA
// bundle (CountCertificates). Nothing is kept from a failed read.
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const std::string& cert_file, const std::string& key_file,
                                            const std::string& ca_file);

// A self-signed server certificate (EC P-256, ~1 year) for `common_name` with SANs
// DNS:localhost, IP:127.0.0.1, IP:::1 and `extra_names`: the default certificate of a TLS
// listener when the operator gives none (as Kong does). Kept in memory only.
absl::StatusOr<TlsMaterial> GenerateSelfSignedServerCertificate(const std::string& common_name,
                                                                const std::vector<std::string>& extra_names);

// The SHA-256 fingerprint of the first certificate of `pem` (DER), as "AB:CD:..."; "" if none.
std::string CertificateSha256Fingerprint(absl::string_view pem);

// Verifies `leaf_pem` against the single trust anchor `ca_pem` (X509_verify_cert, current time).
// OK, or Unauthenticated with OpenSSL's reason.
absl::Status VerifyCertificateChain(absl::string_view leaf_pem, absl::string_view ca_pem);

}  // namespace portico
