#include "data_plane/proxy/http2_upstream_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "data_plane/proxy/worker.h"

namespace portico::dp {

Http2UpstreamPool::Http2UpstreamPool(Worker& worker) : worker_(worker) {}

Http2UpstreamPool::~Http2UpstreamPool() = default;

absl::StatusOr<Http2UpstreamStream*> Http2UpstreamPool::OpenStream(
    const Target& target, const std::string& pool_key, const UpstreamTlsContext* tls, absl::string_view server_name,
    UpstreamObserver* observer, absl::Span<const std::pair<std::string, std::string>> headers,
    const UpstreamTimeouts& timeouts, uint64_t deadline_ms, bool end_stream) {
  if (closing_) return absl::UnavailableError("the worker is stopping");
  if (auto it = by_key_.find(pool_key); it != by_key_.end()) {
    for (Http2UpstreamConnection* connection : it->second) {
      if (!connection->HasCapacity()) continue;
      Http2UpstreamStream* stream = connection->OpenStream(observer, headers, timeouts, deadline_ms, end_stream);
      if (stream != nullptr) return stream;
    }
  }
  // A DNS name is at most 253 bytes; a longer Host (preserve_host) cannot be an SNI.
  if (tls != nullptr && server_name.size() > 253) {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream TLS: the server name (", server_name.size(), " bytes) is too long for SNI"));
  }
  auto owned = std::make_unique<Http2UpstreamConnection>(*this, worker_.loop(), worker_.read_buffer(),
                                                         kReadBufferBytes, pool_key);
  Http2UpstreamConnection* connection = owned.get();
  connections_.emplace(connection, std::move(owned));
  by_key_[pool_key].push_back(connection);
  if (tls != nullptr) {
    SSL* ssl = tls->NewSsl(server_name, connection, worker_.UpstreamTlsSession(pool_key));
    if (ssl == nullptr) {
      connection->Close();
      return absl::ResourceExhaustedError("upstream TLS: cannot create a connection (out of memory)");
    }
    connection->UseTls(ssl, worker_.upstream_tls_plain_buffer(), kUpstreamTlsPlainBytes);
  }
  if (absl::Status s = connection->Connect(reinterpret_cast<const sockaddr*>(&target.address), timeouts.connect_ms);
      !s.ok()) {
    connection->Close();
    return s;
  }
  Http2UpstreamStream* stream = connection->OpenStream(observer, headers, timeouts, deadline_ms, end_stream);
  if (stream == nullptr) {
    connection->Close();
    return absl::ResourceExhaustedError("upstream HTTP/2: cannot open a stream");
  }
  return stream;
}

size_t Http2UpstreamPool::open_connection_count(const std::string& pool_key) const {
  auto it = by_key_.find(pool_key);
  return it == by_key_.end() ? 0 : it->second.size();
}

void Http2UpstreamPool::CloseAll() {
  closing_ = true;
  std::vector<Http2UpstreamConnection*> all;
  for (auto& [raw, owned] : connections_) all.push_back(raw);
  for (Http2UpstreamConnection* connection : all) connection->Close();
}

void Http2UpstreamPool::Forget(Http2UpstreamConnection* connection) {
  auto it = by_key_.find(connection->pool_key());
  if (it == by_key_.end()) return;
  std::vector<Http2UpstreamConnection*>& list = it->second;
  list.erase(std::remove(list.begin(), list.end(), connection), list.end());
  if (list.empty()) by_key_.erase(it);
}

void Http2UpstreamPool::Destroy(Http2UpstreamConnection* connection) {
  Forget(connection);
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  dead_.push_back(std::move(it->second));
  connections_.erase(it);
}

void Http2UpstreamPool::DrainGraveyard() { dead_.clear(); }

void Http2UpstreamPool::KeepTlsSession(const std::string& pool_key, SSL_SESSION* session) {
  worker_.KeepUpstreamTlsSession(pool_key, session);
}

bool Http2UpstreamPool::AllowTlsLog() { return worker_.AllowUpstreamTlsLog(); }

}  // namespace portico::dp
