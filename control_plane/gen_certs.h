#pragma once
// `portico-cp gen-certs DIR`: what it writes into a certificate folder, and what it refuses to
// overwrite (docs/operations.md "Certificates").
//
//   DIR without a CA         a new cluster: ca.{crt,key}, CP.{crt,key} (CP = --cp-id, default cp;
//                            SANs localhost, 127.0.0.1, ::1 + --cp-names), dp.{crt,key} (node id
//                            --dp-id, default dp-1)
//   DIR with ca.crt+ca.key   the CA is kept and only what is asked is issued from it:
//                              --dp-id NAME   NAME.crt + NAME.key, a DP client certificate; also
//                                             cp.crt + cp.key when DIR holds neither
//                              --cp-names A,B CP.crt + CP.key, a CP server certificate (another
//                              --cp-id CP     CP's: --cp-id cp-2); an existing CP.key without
//                                             CP.crt is certified, not replaced
//                            nothing asked: an error, or with --force a whole new cluster
// An existing file is never overwritten: the error names it. The one exception is --force, which
// replaces the files asked for (NAME.* for --dp-id, CP.* for --cp-names/--cp-id) and, with nothing
// else asked, the whole cluster. The CA is never replaced while --dp-id/--cp-names/--cp-id is
// given. Everything is checked before the first file is written. Keys are written 0600.
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace portico::cp {

struct GenCertsRequest {
  std::string dir;
  std::vector<std::string> cp_names;  // extra CP SANs
  bool cp_names_given = false;        // --cp-names was passed (even if empty)
  std::string cp_id = "cp";           // file name of the CP certificate and key (cp.crt, cp.key)
  bool cp_id_given = false;
  std::string dp_id = "dp-1";
  bool dp_id_given = false;
  bool force = false;
};

struct GenCertsResult {
  std::vector<std::string> written;  // file names inside dir, in write order
  bool new_cluster = false;          // a new CA was made
};

absl::StatusOr<GenCertsResult> RunGenCerts(const GenCertsRequest& request);

}  // namespace portico::cp
