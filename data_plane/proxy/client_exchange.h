#pragma once
// ClientExchange: what one client request needs while it is in flight (see client_connection.h).
// Its own header so that the worker can pool exchanges without seeing ClientConnection.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data_plane/proxy/http1_messages.h"
#include "data_plane/proxy/runtime_config.h"

namespace portico::proxy {

class UpstreamConnection;

// What one request needs while it is in flight. Pins the config it started with. Taken from the
// worker's pool when a request head arrives and given back once the connection is idle again.
struct ClientExchange {
  std::shared_ptr<const RuntimeConfig> config;
  const ServiceTarget* target = nullptr;
  std::string upstream_head;  // kept for the one stale-connection retry
  std::string pending_body;   // body bytes (framed) waiting for the upstream to connect
  std::vector<std::pair<std::string, std::string>> debug_headers;
  UpstreamConnection* upstream = nullptr;
  ResponseFraming framing = ResponseFraming::kNoBody;
  int connect_retries_left = 0;
  bool client_http11 = true;
  bool client_keep_alive = true;
  bool request_is_head = false;
  bool request_chunked = false;
  bool request_complete = false;
  bool body_streamed = false;      // body bytes were handed to a connected upstream
  bool local_response = false;     // the proxy answered; the request body is discarded
  bool response_started = false;   // a byte of the final response went to the client
  bool response_complete = false;
  bool close_after = false;
  bool stale_retry_used = false;

  // Back to the state of a new exchange, keeping buffer capacity; unpins the config.
  void Reset();
  // False when its buffers grew too large to keep in the worker's pool.
  bool WorthPooling() const;
};

}  // namespace portico::proxy
