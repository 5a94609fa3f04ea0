#pragma once
// `portico-cp gen-certs DIR`: what it writes into a certificate folder, and what it refuses to
// overwrite (docs/operations.md "Certificates").
//
//   DIR without a CA         a new cluster: ca.{crt,key}, cp.{crt,key}, dp.{crt,key} (node id
//                            --dp-id, default dp-1)
//   DIR with ca.crt+ca.key   the CA is kept and only what is asked is issued from it:
//                              --dp-id NAME   NAME.crt + NAME.key, a DP client certificate
//                              --cp-names A,B cp.crt, a CP server certificate for the existing
//                                             cp.key (a new key only with --force)
//                            nothing asked: an error, or with --force a whole new cluster
// No existing key or CA file is overwritten without --force. Everything is checked before the
// first file is written.
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace portico::cp {

struct GenCertsRequest {
  std::string dir;
  std::vector<std::string> cp_names;  // extra CP SANs
  bool cp_names_given = false;        // --cp-names was passed (even if empty)
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
