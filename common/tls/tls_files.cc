#include "common/tls/tls_files.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/file.h"
#include "common/base/uuid.h"

namespace portico {
namespace {

struct BioFree { void operator()(BIO* p) const { BIO_free(p); } };
struct X509Free { void operator()(X509* p) const { X509_free(p); } };
struct KeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct StoreFree { void operator()(X509_STORE* p) const { X509_STORE_free(p); } };
struct StoreCtxFree { void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); } };
struct ExtFree { void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); } };
struct BnFree { void operator()(BIGNUM* p) const { BN_free(p); } };
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

constexpr int64_t kDay = 24 * 3600;
constexpr int64_t kCaDays = 3650;
constexpr int64_t kLeafDays = 3 * 365;

// Last OpenSSL error as text (and clears the queue).
std::string OpenSslError(absl::string_view what) {
  std::string out(what);
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, ": ", buf);
  }
  return out;
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

KeyPtr NewP256Key() { return KeyPtr(EVP_EC_gen("P-256")); }

absl::StatusOr<std::string> CertToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return absl::InternalError(OpenSslError("PEM_write_bio_X509"));
  }
  return BioToString(bio.get());
}

absl::StatusOr<std::string> KeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return absl::InternalError(OpenSslError("PEM_write_bio_PrivateKey"));
  }
  return BioToString(bio.get());
}

absl::StatusOr<X509Ptr> PemToCert(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) return absl::InvalidArgumentError(OpenSslError("not a PEM certificate"));
  return cert;
}

absl::StatusOr<KeyPtr> PemToKey(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  KeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) return absl::InvalidArgumentError(OpenSslError("not a PEM private key"));
  return key;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtFree> ext(
      X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return absl::InternalError(OpenSslError(absl::StrCat("extension ", OBJ_nid2sn(nid), "=", value)));
  }
  return absl::OkStatus();
}

struct CertSpec {
  std::string common_name;
  int64_t days = kLeafDays;
  bool is_ca = false;
  std::string extended_key_usage;  // "serverAuth", "clientAuth" or ""
  std::string subject_alt_names;   // OpenSSL conf syntax, "" for none
  const CertificateValidity* validity = nullptr;  // absolute window; null = now-1h .. now+days
};

// Signs a new certificate for `key`. `issuer`/`issuer_key` null => self-signed.
absl::StatusOr<X509Ptr> MakeCertificate(const CertSpec& spec, EVP_PKEY* key, X509* issuer,
                                        EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  if (!cert) return absl::InternalError("X509_new");
  X509_set_version(cert.get(), 2);
  // 128-bit random positive serial.
  std::string serial_bytes = RandomBytes(16);
  serial_bytes[0] = static_cast<char>(serial_bytes[0] & 0x7f);
  std::unique_ptr<BIGNUM, BnFree> bn(BN_bin2bn(
      reinterpret_cast<const unsigned char*>(serial_bytes.data()), 16, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()))) {
    return absl::InternalError(OpenSslError("serial"));
  }
  // Backdate by one hour to tolerate small clock skew between hosts.
  if (spec.validity != nullptr) {
    if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(spec.validity->not_before)) == nullptr ||
        ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(spec.validity->not_after)) == nullptr) {
      return absl::InternalError(OpenSslError("validity"));
    }
  } else {
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(spec.days * kDay));
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Portico"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
                             -1, 0);
  X509* issuer_cert = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer_cert));
  if (X509_set_pubkey(cert.get(), key) != 1) return absl::InternalError(OpenSslError("pubkey"));

  absl::Status s;
  if (spec.is_ca) {
    s.Update(AddExtension(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    s.Update(AddExtension(cert.get(), issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else {
    s.Update(AddExtension(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:FALSE"));
    s.Update(AddExtension(cert.get(), issuer_cert, NID_key_usage,
                          "critical,digitalSignature,keyAgreement"));
  }
  if (!spec.extended_key_usage.empty()) {
    s.Update(AddExtension(cert.get(), issuer_cert, NID_ext_key_usage, spec.extended_key_usage));
  }
  s.Update(AddExtension(cert.get(), issuer_cert, NID_subject_key_identifier, "hash"));
  if (!spec.is_ca) {
    s.Update(AddExtension(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always"));
  }
  if (!spec.subject_alt_names.empty()) {
    s.Update(AddExtension(cert.get(), issuer_cert, NID_subject_alt_name, spec.subject_alt_names));
  }
  if (!s.ok()) return s;
  EVP_PKEY* signer = issuer_key != nullptr ? issuer_key : key;
  if (X509_sign(cert.get(), signer, EVP_sha256()) <= 0) {
    return absl::InternalError(OpenSslError("X509_sign"));
  }
  return cert;
}

bool IsIpAddress(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

// Writes `<prefix>.crt` (0644) and `<prefix>.key` (0600).
absl::Status WritePair(const std::string& prefix, X509* cert, EVP_PKEY* key) {
  absl::StatusOr<std::string> cert_pem = CertToPem(cert);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = KeyToPem(key);
  if (!key_pem.ok()) return key_pem.status();
  // Key first, each file replaced atomically: a crash leaves old or new files, never a torn one.
  absl::Status s = WriteFileAtomically(prefix + ".key", *key_pem, 0600);
  if (!s.ok()) return s;
  return WriteFileAtomically(prefix + ".crt", *cert_pem, 0644);
}

absl::Status IssueDpFrom(X509* ca, EVP_PKEY* ca_key, const std::string& node_id,
                         const std::string& out_prefix,
                         const CertificateValidity* validity = nullptr) {
  if (!IsValidNodeId(node_id)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid data plane node id '", node_id,
                                                   "' (1..128 of [A-Za-z0-9._-])"));
  }
  KeyPtr key = NewP256Key();
  if (!key) return absl::InternalError(OpenSslError("EC key generation"));
  CertSpec spec;
  spec.common_name = "portico-dp";
  spec.extended_key_usage = "clientAuth";
  spec.subject_alt_names = absl::StrCat("URI:", kDataPlaneUriPrefix, node_id);
  spec.validity = validity;
  absl::StatusOr<X509Ptr> cert = MakeCertificate(spec, key.get(), ca, ca_key);
  if (!cert.ok()) return cert.status();
  return WritePair(out_prefix, cert->get(), key.get());
}

// Signs a CP server certificate for `key` with SANs localhost, 127.0.0.1, ::1 + `extra_names`.
absl::Status IssueCpFrom(X509* ca, EVP_PKEY* ca_key, EVP_PKEY* key,
                         const std::vector<std::string>& extra_names, const std::string& out_prefix) {
  std::vector<std::string> sans = {"DNS:localhost", "IP:127.0.0.1", "IP:::1"};
  for (const std::string& name : extra_names) {
    if (name.empty() || name.find(',') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("invalid control plane name '", name, "'"));
    }
    sans.push_back(absl::StrCat(IsIpAddress(name) ? "IP:" : "DNS:", name));
  }
  CertSpec spec;
  spec.common_name = "portico-cp";
  spec.extended_key_usage = "serverAuth";
  spec.subject_alt_names = absl::StrJoin(sans, ",");
  absl::StatusOr<X509Ptr> cert = MakeCertificate(spec, key, ca, ca_key);
  if (!cert.ok()) return cert.status();
  return WritePair(out_prefix, cert->get(), key);
}

struct LoadedCa {
  X509Ptr cert;
  KeyPtr key;
};

absl::StatusOr<LoadedCa> LoadCa(const std::string& dir) {
  absl::StatusOr<std::string> ca_pem = ReadFileToString(dir + "/ca.crt");
  if (!ca_pem.ok()) return ca_pem.status();
  absl::StatusOr<std::string> key_pem = ReadFileToString(dir + "/ca.key");
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<X509Ptr> ca = PemToCert(*ca_pem);
  if (!ca.ok()) return ca.status();
  absl::StatusOr<KeyPtr> ca_key = PemToKey(*key_pem);
  if (!ca_key.ok()) return ca_key.status();
  if (X509_check_private_key(ca->get(), ca_key->get()) != 1) {
    return absl::FailedPreconditionError(absl::StrCat(dir, "/ca.key does not belong to ", dir, "/ca.crt"));
  }
  return LoadedCa{*std::move(ca), *std::move(ca_key)};
}

std::string AsciiOf(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

}  // namespace

bool IsValidNodeId(absl::string_view node_id) {
  if (node_id.empty() || node_id.size() > 128) return false;
  for (char c : node_id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

absl::Status GenerateClusterCertificates(const std::string& dir,
                                         const std::vector<std::string>& extra_cp_names,
                                         const std::string& dp_node_id) {
  if (!IsValidNodeId(dp_node_id)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid data plane node id '", dp_node_id, "'"));
  }
  for (const std::string& name : extra_cp_names) {  // checked before anything is written
    if (name.empty() || name.find(',') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("invalid control plane name '", name, "'"));
    }
  }
  absl::Status s = EnsureDirectories(dir, 0700);
  if (!s.ok()) return s;

  KeyPtr ca_key = NewP256Key();
  if (!ca_key) return absl::InternalError(OpenSslError("EC key generation"));
  CertSpec ca_spec;
  ca_spec.common_name = "Portico cluster CA";
  ca_spec.days = kCaDays;
  ca_spec.is_ca = true;
  absl::StatusOr<X509Ptr> ca = MakeCertificate(ca_spec, ca_key.get(), nullptr, nullptr);
  if (!ca.ok()) return ca.status();
  s = WritePair(dir + "/ca", ca->get(), ca_key.get());
  if (!s.ok()) return s;

  KeyPtr cp_key = NewP256Key();
  if (!cp_key) return absl::InternalError(OpenSslError("EC key generation"));
  s = IssueCpFrom(ca->get(), ca_key.get(), cp_key.get(), extra_cp_names, dir + "/cp");
  if (!s.ok()) return s;

  return IssueDpFrom(ca->get(), ca_key.get(), dp_node_id, dir + "/dp");
}

absl::Status IssueDataPlaneCertificate(const std::string& dir, const std::string& node_id,
                                       const std::string& out_prefix) {
  return IssueDataPlaneCertificate(dir, node_id, out_prefix, CertificateValidity{});
}

absl::Status IssueDataPlaneCertificate(const std::string& dir, const std::string& node_id,
                                       const std::string& out_prefix,
                                       const CertificateValidity& validity) {
  const bool explicit_window = validity.not_before != 0 || validity.not_after != 0;
  if (explicit_window && validity.not_after < validity.not_before) {
    return absl::InvalidArgumentError("certificate notAfter is before notBefore");
  }
  absl::StatusOr<LoadedCa> ca = LoadCa(dir);
  if (!ca.ok()) return ca.status();
  return IssueDpFrom(ca->cert.get(), ca->key.get(), node_id, out_prefix,
                     explicit_window ? &validity : nullptr);
}

absl::Status IssueControlPlaneCertificate(const std::string& dir,
                                          const std::vector<std::string>& extra_cp_names,
                                          bool new_key, const std::string& name) {
  absl::StatusOr<LoadedCa> ca = LoadCa(dir);
  if (!ca.ok()) return ca.status();
  KeyPtr key;
  const std::string key_path = dir + "/" + name + ".key";
  if (!new_key && PathExists(key_path)) {
    absl::StatusOr<std::string> key_pem = ReadFileToString(key_path);
    if (!key_pem.ok()) return key_pem.status();
    absl::StatusOr<KeyPtr> existing = PemToKey(*key_pem);
    if (!existing.ok()) return existing.status();
    key = *std::move(existing);
  } else {
    key = NewP256Key();
    if (!key) return absl::InternalError(OpenSslError("EC key generation"));
  }
  return IssueCpFrom(ca->cert.get(), ca->key.get(), key.get(), extra_cp_names, dir + "/" + name);
}

absl::StatusOr<CertificateInfo> InspectCertificate(absl::string_view pem) {
  absl::StatusOr<X509Ptr> cert = PemToCert(pem);
  if (!cert.ok()) return cert.status();
  CertificateInfo info;

  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert->get()), 0, XN_FLAG_RFC2253);
  info.subject = BioToString(bio.get());

  struct tm tm_after;
  std::memset(&tm_after, 0, sizeof(tm_after));
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert->get()), &tm_after) != 1) {
    return absl::InvalidArgumentError("certificate has an unreadable notAfter");
  }
  info.not_after = static_cast<int64_t>(timegm(&tm_after));

  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert->get());
  std::unique_ptr<BIGNUM, BnFree> bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (bn) {
    std::string bytes(static_cast<size_t>(BN_num_bytes(bn.get())), '\0');
    BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(bytes.data()));
    info.serial_hex = ToHex(bytes);
  }

  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert->get(), NID_subject_alt_name, nullptr, nullptr)));
  if (names) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
      if (gn->type == GEN_DNS) {
        info.dns_names.push_back(AsciiOf(gn->d.dNSName));
      } else if (gn->type == GEN_URI) {
        std::string uri = AsciiOf(gn->d.uniformResourceIdentifier);
        absl::string_view prefix = kDataPlaneUriPrefix;
        if (info.node_id.empty() && uri.size() > prefix.size() &&
            absl::string_view(uri).substr(0, prefix.size()) == prefix) {
          std::string id = uri.substr(prefix.size());
          if (IsValidNodeId(id)) info.node_id = id;
        }
        info.uris.push_back(std::move(uri));
      } else if (gn->type == GEN_IPADD) {
        const ASN1_OCTET_STRING* ip = gn->d.iPAddress;
        char text[INET6_ADDRSTRLEN] = {0};
        int len = ASN1_STRING_length(ip);
        const unsigned char* data = ASN1_STRING_get0_data(ip);
        if (len == 4) inet_ntop(AF_INET, data, text, sizeof(text));
        if (len == 16) inet_ntop(AF_INET6, data, text, sizeof(text));
        if (text[0] != '\0') info.ip_addresses.push_back(text);
      }
    }
  }
  return info;
}

absl::StatusOr<int64_t> CheckCertificateAndKey(absl::string_view cert_pem, absl::string_view key_pem,
                                               absl::string_view cert_name, absl::string_view key_name) {
  absl::StatusOr<X509Ptr> cert = PemToCert(cert_pem);
  if (!cert.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(cert_name, ": no PEM certificate (", cert.status().message(), ")"));
  }
  absl::StatusOr<KeyPtr> key = PemToKey(key_pem);
  if (!key.ok()) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(key_name, ": no PEM private key"));
  }
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(key_name, " does not belong to the certificate in ", cert_name));
  }
  absl::StatusOr<CertificateInfo> info = InspectCertificate(cert_pem);
  if (!info.ok()) return absl::InvalidArgumentError(absl::StrCat(cert_name, ": ", info.status().message()));
  return info->not_after;
}

absl::StatusOr<int> CountCertificates(absl::string_view pem, absl::string_view name) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return absl::InternalError("BIO_new_mem_buf");
  int count = 0;
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    ++count;
  }
  const unsigned long last = ERR_peek_last_error();
  const bool clean_end = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  if (count == 0) return absl::InvalidArgumentError(absl::StrCat(name, ": no PEM certificate"));
  if (!clean_end) return absl::InvalidArgumentError(absl::StrCat(name, ": certificate ", count + 1, " does not parse"));
  return count;
}

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const std::string& cert_file, const std::string& key_file,
                                            const std::string& ca_file) {
  TlsMaterial out;
  absl::StatusOr<std::string> cert = ReadFileToString(cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFileToString(key_file);
  if (!key.ok()) return key.status();
  absl::StatusOr<int64_t> not_after = CheckCertificateAndKey(*cert, *key, cert_file, key_file);
  if (!not_after.ok()) return not_after.status();
  if (!ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadFileToString(ca_file);
    if (!ca.ok()) return ca.status();
    absl::StatusOr<int> count = CountCertificates(*ca, ca_file);
    if (!count.ok()) return count.status();
    out.ca_pem = *std::move(ca);
  }
  out.cert_pem = *std::move(cert);
  out.key_pem = *std::move(key);
  out.not_after = *not_after;
  return out;
}

absl::StatusOr<TlsMaterial> GenerateSelfSignedServerCertificate(const std::string& common_name,
                                                                const std::vector<std::string>& extra_names) {
  std::vector<std::string> sans = {"DNS:localhost", "IP:127.0.0.1", "IP:::1"};
  for (const std::string& name : extra_names) {
    if (name.empty() || name.find(',') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("invalid certificate name '", name, "'"));
    }
    sans.push_back(absl::StrCat(IsIpAddress(name) ? "IP:" : "DNS:", name));
  }
  KeyPtr key = NewP256Key();
  if (!key) return absl::InternalError(OpenSslError("EC key generation"));
  CertSpec spec;
  spec.common_name = common_name;
  spec.days = 365;
  spec.extended_key_usage = "serverAuth";
  spec.subject_alt_names = absl::StrJoin(sans, ",");
  absl::StatusOr<X509Ptr> cert = MakeCertificate(spec, key.get(), nullptr, nullptr);
  if (!cert.ok()) return cert.status();
  TlsMaterial out;
  absl::StatusOr<std::string> cert_pem = CertToPem(cert->get());
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = KeyToPem(key.get());
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<CertificateInfo> info = InspectCertificate(*cert_pem);
  if (!info.ok()) return info.status();
  out.cert_pem = *std::move(cert_pem);
  out.key_pem = *std::move(key_pem);
  out.not_after = info->not_after;
  return out;
}

std::string CertificateSha256Fingerprint(absl::string_view pem) {
  absl::StatusOr<X509Ptr> cert = PemToCert(pem);
  if (!cert.ok()) {
    ERR_clear_error();
    return "";
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert->get(), EVP_sha256(), digest, &length) != 1) return "";
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    if (i > 0) out.push_back(':');
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

absl::Status VerifyCertificateChain(absl::string_view leaf_pem, absl::string_view ca_pem) {
  absl::StatusOr<X509Ptr> leaf = PemToCert(leaf_pem);
  if (!leaf.ok()) return leaf.status();
  absl::StatusOr<X509Ptr> ca = PemToCert(ca_pem);
  if (!ca.ok()) return ca.status();
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca->get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), leaf->get(), nullptr) != 1) {
    return absl::InternalError(OpenSslError("X509 store setup"));
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::UnauthenticatedError(
        absl::StrCat("certificate verification failed: ", X509_verify_cert_error_string(err)));
  }
  return absl::OkStatus();
}

}  // namespace portico
