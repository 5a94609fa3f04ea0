#pragma once
// One downstream (client) HTTP/1.1 connection, owned by its Worker. It handles one request at a
// time (an Exchange); pipelined bytes wait in input_ until the current exchange ends. The client
// is read continuously (no read stop/start per request) as long as input_ stays below
// kMaxBufferedInputBytes and, while a request body streams, the upstream keeps up.
//
//            head parsed                 request and response complete, keep-alive
//   kIdle ───────────────▶ kExchange ───────────────────────────────────────────▶ kIdle
//     │                       │  response complete and must close / local error with close
//     │ idle timeout,         ▼
//     │ EOF, error       kDraining ──(uv_shutdown: queued writes flushed)──▶ kLingering
//     │                       │ client done and nothing queued: close at once  │ EOF / 2 s
//     └───────────────────────┴──────────── any failure ─────────────────────▶ kClosing
//                                                                  (uv_close; freed after
//                                                                   the close callback)
// Thread-compatible: only touched on the owning worker's loop.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <uv.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "data_plane/proxy/http1_messages.h"
#include "data_plane/proxy/http1_parser.h"
#include "data_plane/proxy/runtime_config.h"
#include "data_plane/proxy/upstream_connection.h"
#include "data_plane/proxy/worker.h"

namespace portico::proxy {

class Worker;

class ClientConnection final : public Http1ParserDelegate, public UpstreamObserver {
 public:
  enum class State { kIdle, kExchange, kDraining, kLingering, kClosing };

  explicit ClientConnection(Worker& worker);
  ~ClientConnection() override;
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  // Adopts the accepted socket `fd` (from `peer`) and starts reading. Takes ownership of `fd`
  // even on error; on error the caller must Close().
  absl::Status Accept(int fd, const struct sockaddr* peer);
  // Aborts the connection (and its upstream, if any). Idempotent.
  void Close();
  State state() const { return state_; }
  // The worker's deadline sweep: the idle/header or linger timeout expired.
  void OnDeadline();

  // Request parser delegate.
  HeadAction OnHead(const Http1Head& head) override;
  void OnBody(absl::string_view data) override;
  void OnMessageComplete() override {}

  // Upstream observer.
  void OnUpstreamConnected() override;
  HeadAction OnUpstreamHead(const Http1Head& head) override;
  void OnUpstreamBody(absl::string_view data) override;
  void OnUpstreamComplete() override;
  void OnUpstreamFailure(UpstreamError error, bool response_bytes_received) override;
  void OnUpstreamWriteDrained() override;
  void OnUpstreamReadEnd() override;

 private:
  struct Uv;
  using Exchange = ClientExchange;

  void OnRead(ssize_t nread, const char* data);
  void OnWriteDone(size_t bytes, int status);
  void OnShutdown(int status);
  void OnHandleClosed();

  // Parses input_, or `fresh` (bytes just read, still in the worker's read buffer) when input_ is
  // empty; only bytes left unparsed are copied into input_.
  void ProcessInput(absl::string_view fresh = {});
  void UpdateReading();
  void EnterIdle();
  // Idle with nothing buffered: gives the exchange and the head storage back to the worker.
  void ReleaseRequestState();
  void MarkRequestStateHeld();
  // The final response is queued: close. `client_done`: the client has nothing more to send
  // (request fully read, it asked for close or half-closed, no unparsed bytes); then, when the
  // kernel already holds every response byte, the socket is closed at once (no shutdown, no
  // lingering read). Otherwise: shutdown after the queued writes, then lingering read.
  void BeginDrain(bool client_done = false);
  bool ClientDone() const;
  // Response bytes are gathered (QueueToClient) and handed to the kernel in one vectored write
  // (FlushToClient): uv_try_write first, and a uv_write with a copy of only the remainder.
  // Borrowed bytes must stay valid until the next FlushToClient.
  void QueueToClient(absl::string_view data, bool copy);
  void FlushToClient();
  // Makes the worker's output gather list this connection's, flushing what another connection
  // (or this one, when full) queued. False when that flush closed this connection.
  bool ClaimOutput();
  // During an exchange: response bytes wait in libuv for the client, or a local response was sent
  // and the rest of the request body is being discarded. The client timeout applies then.
  bool WaitsOnClient() const;
  void WriteToClient(absl::string_view data);  // queue (borrowed) + flush

  void StartUpstream(bool allow_pooled);
  // Request body bytes towards the upstream, re-framed as one chunk when `as_chunk`.
  void SendToUpstream(absl::string_view data, bool as_chunk);
  void EndExchange();  // drops the current exchange (keeps it as the spare for the next one)
  size_t UpstreamBacklog() const;
  void OnRequestComplete();
  void MaybeFinishExchange();
  // A generated (Kong-style) response for the current exchange. `force_close` closes the
  // connection after it; otherwise the request body is discarded and keep-alive honoured.
  void RespondLocally(int status, absl::string_view message, bool force_close);
  // Sends a complete generated response for the current exchange (see RespondLocally).
  void SendLocalResponse(std::string response, bool close);
  void RespondToBadInput(bool head_too_large);

  // Kept small: an idle keep-alive connection is this object, its llhttp state and its libuv
  // handle; everything request-scoped lives in pooled objects (docs/proxy.md, "Memory").
  Worker& worker_;
  State state_ = State::kIdle;
  bool handles_initialised_ = false;
  bool reading_ = false;
  bool in_process_input_ = false;
  bool parse_failed_ = false;
  bool peer_eof_ = false;          // the client shut its write side
  bool wrote_ = false;             // a response byte was written (TCP_NODELAY set from the 2nd write)
  bool nodelay_ = false;
  bool holds_request_state_ = false;
  uint8_t pending_closes_ = 0;
  DeadlineNode deadline_;
  uv_tcp_t tcp_;
  std::unique_ptr<uv_shutdown_t> shutdown_req_;  // only while draining
  std::string client_ip_;
  Http1Parser parser_;
  std::string input_;              // received, not yet parsed (pipelined or while busy)
  absl::string_view fresh_;        // during ProcessInput: unparsed part of the bytes just read
  size_t pending_write_bytes_ = 0;
  std::unique_ptr<Exchange> exchange_;
  std::unique_ptr<Exchange> spare_exchange_;    // the last exchange, until the connection is idle
  std::unique_ptr<Exchange> retired_exchange_;  // the exchange of a closed connection (see Close)
};

}  // namespace portico::proxy
