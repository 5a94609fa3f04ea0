#include "control_plane/gen_certs.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/file.h"
#include "common/tls/tls_files.h"

namespace portico::cp {
namespace {

// The files among `names` that already exist in `dir`.
std::vector<std::string> Existing(const std::string& dir, const std::vector<std::string>& names) {
  std::vector<std::string> found;
  for (const std::string& name : names) {
    if (PathExists(dir + "/" + name)) found.push_back(name);
  }
  return found;
}

absl::StatusOr<GenCertsResult> NewCluster(const GenCertsRequest& request) {
  const std::vector<std::string> files = {"ca.crt", "ca.key", "cp.crt", "cp.key", "dp.crt", "dp.key"};
  if (!request.force) {
    if (std::vector<std::string> found = Existing(request.dir, files); !found.empty()) {
      return absl::AlreadyExistsError(absl::StrCat(
          request.dir, " already holds ", absl::StrJoin(found, ", "),
          " but no complete CA; nothing was written. Pass --force to make a new cluster there "
          "(every CP and DP certificate must then be replaced)"));
    }
  }
  if (absl::Status s = GenerateClusterCertificates(request.dir, request.cp_names, request.dp_id); !s.ok()) {
    return s;
  }
  return GenCertsResult{files, true};
}

}  // namespace

absl::StatusOr<GenCertsResult> RunGenCerts(const GenCertsRequest& request) {
  const bool has_ca_crt = PathExists(request.dir + "/ca.crt");
  const bool has_ca_key = PathExists(request.dir + "/ca.key");
  const bool asked = request.dp_id_given || request.cp_names_given;
  if (!has_ca_crt && !has_ca_key) return NewCluster(request);
  if (!asked) {
    if (request.force) return NewCluster(request);
    return absl::AlreadyExistsError(absl::StrCat(
        request.dir, " already holds a cluster CA; nothing was written. Use --dp-id NAME to issue "
        "another DP certificate (NAME.crt, NAME.key), --cp-names NAMES to issue a new CP "
        "certificate, or --force to replace the whole cluster (every enrolled DP is then locked out "
        "until it gets a certificate from the new CA)"));
  }
  if (!has_ca_crt || !has_ca_key) {
    return absl::FailedPreconditionError(absl::StrCat(
        request.dir, " holds ", has_ca_crt ? "ca.crt but no ca.key" : "ca.key but no ca.crt",
        "; certificates are issued from both. Restore the missing file, or pass --force without "
        "--dp-id/--cp-names to make a new cluster"));
  }
  // Check every precondition before writing anything.
  if (request.dp_id_given) {
    if (!IsValidNodeId(request.dp_id)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid data plane node id '", request.dp_id,
                                                     "' (1..128 of [A-Za-z0-9._-])"));
    }
    if (request.dp_id == "ca" || request.dp_id == "cp") {
      return absl::InvalidArgumentError(absl::StrCat("--dp-id ", request.dp_id, " would overwrite the ",
                                                     request.dp_id == "ca" ? "CA" : "CP certificate",
                                                     "; choose another node id"));
    }
    const std::vector<std::string> files = {request.dp_id + ".crt", request.dp_id + ".key"};
    if (std::vector<std::string> found = Existing(request.dir, files); !found.empty() && !request.force) {
      return absl::AlreadyExistsError(absl::StrCat(
          request.dir, "/", found.front(), " already exists; nothing was written. Choose another "
          "--dp-id, or pass --force to replace that DP's certificate and key"));
    }
  }
  for (const std::string& name : request.cp_names) {
    if (name.empty() || name.find(',') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("invalid control plane name '", name, "'"));
    }
  }
  GenCertsResult result;
  if (request.dp_id_given) {
    if (absl::Status s = IssueDataPlaneCertificate(request.dir, request.dp_id,
                                                   request.dir + "/" + request.dp_id);
        !s.ok()) {
      return s;
    }
    result.written.push_back(request.dp_id + ".key");
    result.written.push_back(request.dp_id + ".crt");
  }
  if (request.cp_names_given) {
    const bool new_key = request.force || !PathExists(request.dir + "/cp.key");
    if (absl::Status s = IssueControlPlaneCertificate(request.dir, request.cp_names, new_key); !s.ok()) {
      return s;
    }
    if (new_key) result.written.push_back("cp.key");
    result.written.push_back("cp.crt");
  }
  return result;
}

}  // namespace portico::cp
