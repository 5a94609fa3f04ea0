#pragma once
// A worker's upstream HTTP/2 connections (services with protocol grpc or grpcs), keyed like its
// HTTP/1 pool (Worker::UpstreamPoolKey: the target, and for TLS the TLS identity and SNI). A
// stream goes on the first connection of its key with room for one more (the server's
// SETTINGS_MAX_CONCURRENT_STREAMS, at most kMaxStreamsPerUpstreamConnection), or on a new one.
// A connection that received GOAWAY takes no new streams and closes when its last one ends; one
// with no stream for kUpstreamIdleTimeoutMs closes.
// Thread-compatible: the owning worker's loop only.
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "data_plane/balancer/destinations.h"
#include "data_plane/balancer/upstream_tls.h"
#include "data_plane/proxy/http2_upstream.h"

namespace portico::dp {

class Worker;

class Http2UpstreamPool {
 public:
  explicit Http2UpstreamPool(Worker& worker);
  ~Http2UpstreamPool();
  Http2UpstreamPool(const Http2UpstreamPool&) = delete;
  Http2UpstreamPool& operator=(const Http2UpstreamPool&) = delete;

  // Opens a stream towards `target` for `observer` (see Http2UpstreamConnection::OpenStream) on a
  // connection under `pool_key`, over TLS with `tls` (SNI `server_name`) when not null. Errors
  // as Worker::ConnectUpstream: InvalidArgument (an SNI too long), ResourceExhausted (local
  // limits), Unavailable (the connect could not start).
  absl::StatusOr<Http2UpstreamStream*> OpenStream(const Target& target, const std::string& pool_key,
                                                  const UpstreamTlsContext* tls, absl::string_view server_name,
                                                  UpstreamObserver* observer,
                                                  absl::Span<const std::pair<std::string, std::string>> headers,
                                                  const UpstreamTimeouts& timeouts, uint64_t deadline_ms,
                                                  bool end_stream);

  // Worker shutdown: closes every connection (streams are dropped without callbacks).
  void CloseAll();
  // Frees the connections closed since the last call (the worker's reaper).
  void DrainGraveyard();

  size_t connection_count() const { return connections_.size(); }
  size_t open_connection_count(const std::string& pool_key) const;

  // ---- for the connections
  // The connection takes no more streams (closing, or GOAWAY seen).
  void Forget(Http2UpstreamConnection* connection);
  // The connection's handles are closed: freed after this loop iteration.
  void Destroy(Http2UpstreamConnection* connection);
  void KeepTlsSession(const std::string& pool_key, SSL_SESSION* session);
  bool AllowTlsLog();

 private:
  Worker& worker_;
  absl::flat_hash_map<Http2UpstreamConnection*, std::unique_ptr<Http2UpstreamConnection>> connections_;
  absl::flat_hash_map<std::string, std::vector<Http2UpstreamConnection*>> by_key_;  // open, by pool key
  std::vector<std::unique_ptr<Http2UpstreamConnection>> dead_;
  bool closing_ = false;
};

}  // namespace portico::dp
