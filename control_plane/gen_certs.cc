#include "control_plane/gen_certs.h"

#include <cstdio>

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

absl::Status CheckFileName(const char* flag, const std::string& name, const char* what) {
  if (!IsValidNodeId(name)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid ", what, " '", name, "' (1..128 of [A-Za-z0-9._-])"));
  }
  if (name == "ca") {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ca would overwrite the CA; choose another name"));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenCertsResult> NewCluster(const GenCertsRequest& request) {
  const std::string& cp = request.cp_id;
  // A new cluster's DP files are dp.crt and dp.key: the CP's must be others.
  if (cp == "dp") {
    return absl::InvalidArgumentError(
        "--cp-id dp would overwrite the new cluster's DP certificate (dp.crt, dp.key); choose another name");
  }
  std::vector<std::string> files = {"ca.crt", "ca.key", cp + ".crt", cp + ".key", "dp.crt", "dp.key"};
  // GenerateClusterCertificates writes cp.* first (renamed to the --cp-id after).
  std::vector<std::string> checked = files;
  if (cp != "cp") checked.insert(checked.end(), {"cp.crt", "cp.key"});
  if (!request.force) {
    if (std::vector<std::string> found = Existing(request.dir, checked); !found.empty()) {
      return absl::AlreadyExistsError(absl::StrCat(
          request.dir, " already holds ", absl::StrJoin(found, ", "),
          " but no complete CA; nothing was written. Pass --force to make a new cluster there "
          "(every CP and DP certificate must then be replaced)"));
    }
  }
  if (absl::Status s = GenerateClusterCertificates(request.dir, request.cp_names, request.dp_id); !s.ok()) {
    return s;
  }
  if (cp != "cp") {
    for (const char* ext : {".crt", ".key"}) {
      const std::string from = request.dir + "/cp" + ext, to = request.dir + "/" + cp + ext;
      if (std::rename(from.c_str(), to.c_str()) != 0) {
        return absl::InternalError(absl::StrCat("cannot rename ", from, " to ", to));
      }
    }
  }
  return GenCertsResult{files, true};
}

}  // namespace

absl::StatusOr<GenCertsResult> RunGenCerts(const GenCertsRequest& request) {
  if (request.cp_id_given || request.cp_id != "cp") {
    if (absl::Status s = CheckFileName("--cp-id", request.cp_id, "control plane certificate name"); !s.ok()) return s;
  }
  if (request.dp_id_given && request.cp_id == request.dp_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dp-id and --cp-id are both '", request.dp_id, "': they name files, choose two names"));
  }
  for (const std::string& name : request.cp_names) {
    if (name.empty() || name.find(',') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("invalid control plane name '", name, "'"));
    }
  }
  const bool has_ca_crt = PathExists(request.dir + "/ca.crt");
  const bool has_ca_key = PathExists(request.dir + "/ca.key");
  const bool cp_asked = request.cp_names_given || request.cp_id_given;
  const bool asked = request.dp_id_given || cp_asked;
  if (!has_ca_crt && !has_ca_key) return NewCluster(request);
  if (!asked) {
    if (request.force) return NewCluster(request);
    return absl::AlreadyExistsError(absl::StrCat(
        request.dir, " already holds a cluster CA; nothing was written. Use --dp-id NAME to issue "
        "another DP certificate (NAME.crt, NAME.key), --cp-names NAMES [--cp-id NAME] to issue a CP "
        "certificate, or --force to replace the whole cluster (every enrolled DP is then locked out "
        "until it gets a certificate from the new CA)"));
  }
  if (!has_ca_crt || !has_ca_key) {
    return absl::FailedPreconditionError(absl::StrCat(
        request.dir, " holds ", has_ca_crt ? "ca.crt but no ca.key" : "ca.key but no ca.crt",
        "; certificates are issued from both. Restore the missing file, or pass --force without "
        "--dp-id/--cp-names/--cp-id to make a new cluster"));
  }
  // Check every precondition before writing anything.
  if (request.dp_id_given) {
    if (absl::Status s = CheckFileName("--dp-id", request.dp_id, "data plane node id"); !s.ok()) return s;
    if (request.dp_id == "cp") {
      return absl::InvalidArgumentError("--dp-id cp would overwrite the CP certificate; choose another node id");
    }
    const std::vector<std::string> files = {request.dp_id + ".crt", request.dp_id + ".key"};
    if (std::vector<std::string> found = Existing(request.dir, files); !found.empty() && !request.force) {
      return absl::AlreadyExistsError(absl::StrCat(
          request.dir, "/", found.front(), " already exists; nothing was written. Choose another "
          "--dp-id, or pass --force to replace that DP's certificate and key"));
    }
  }
  const std::string& cp = request.cp_id;
  const bool cp_crt = PathExists(request.dir + "/" + cp + ".crt");
  const bool cp_key = PathExists(request.dir + "/" + cp + ".key");
  // The CP certificate: when asked, or (default name) when the folder has none at all.
  const bool issue_cp = cp_asked || (!cp_crt && !cp_key);
  if (cp_asked && cp_crt && !request.force) {
    return absl::AlreadyExistsError(absl::StrCat(
        request.dir, "/", cp, ".crt already exists; nothing was written. For another CP's certificate "
        "pass --cp-id NAME (writes NAME.crt, NAME.key); --force replaces ", cp, ".crt and ", cp, ".key"));
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
  if (issue_cp) {
    const bool new_key = request.force || !cp_key;  // a key without its certificate is certified
    if (absl::Status s = IssueControlPlaneCertificate(request.dir, request.cp_names, new_key, cp); !s.ok()) {
      return s;
    }
    if (new_key) result.written.push_back(cp + ".key");
    result.written.push_back(cp + ".crt");
  }
  return result;
}

}  // namespace portico::cp
