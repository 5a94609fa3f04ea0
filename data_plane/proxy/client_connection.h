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
//     │                       │                                                │ EOF / 2 s
//     └───────────────────────┴──────────── any failure ─────────────────────▶ kClosing
//                                                                  (uv_close; freed after
//                                                                   both close callbacks)
// Thread-compatible: only touched on the owning worker's loop.
#include <cstddef>
#include <cstdint>
#include <deque>
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

namespace portico::proxy {

class Worker;

class ClientConnection final : public Http1ParserDelegate, public UpstreamObserver {
 public:
  enum class State { kIdle, kExchange, kDraining, kLingering, kClosing };

  explicit ClientConnection(Worker& worker);
  ~ClientConnection() override;
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  // Accepts a pending connection from `server` and starts reading. On error the caller must
  // Close().
  absl::Status Accept(uv_stream_t* server);
  // Aborts the connection (and its upstream, if any). Idempotent.
  void Close();
  State state() const { return state_; }

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
  // What one request needs while it is in flight. Pins the config it started with.
  struct Exchange {
    std::shared_ptr<const RuntimeConfig> config;
    const config::v1::Route* route = nullptr;
    const ServiceTarget* target = nullptr;
    std::string upstream_head;           // kept for the one stale-connection retry
    std::deque<std::string> pending_body;  // body bytes waiting for the upstream to connect
    size_t pending_body_bytes = 0;
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
  };
  // Bytes queued for the client but not yet handed to the kernel (see QueueToClient).
  struct OutPiece {
    const char* borrowed = nullptr;  // nullptr: `offset` indexes out_owned_
    size_t offset = 0;
    size_t size = 0;
  };
  static constexpr size_t kMaxOutPieces = 16;

  void OnRead(ssize_t nread, const char* data);
  void OnWriteDone(size_t bytes, int status);
  void OnShutdown(int status);
  void OnTimer();
  void OnHandleClosed();

  void ProcessInput();
  void UpdateReading();
  void EnterIdle();
  void BeginDrain();
  // Response bytes are gathered (QueueToClient) and handed to the kernel in one vectored write
  // (FlushToClient): uv_try_write first, and a uv_write with a copy of only the remainder.
  // Borrowed bytes must stay valid until the next FlushToClient.
  void QueueToClient(absl::string_view data, bool copy);
  void FlushToClient();
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

  Worker& worker_;
  State state_ = State::kIdle;
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  uv_shutdown_t shutdown_req_;
  bool handles_initialised_ = false;
  int pending_closes_ = 0;
  bool reading_ = false;
  bool in_process_input_ = false;
  bool parse_failed_ = false;
  bool peer_eof_ = false;          // the client shut its write side
  std::string client_ip_;
  Http1Parser parser_;
  std::string input_;              // received, not yet parsed
  size_t pending_write_bytes_ = 0;
  std::unique_ptr<Exchange> exchange_;
  std::unique_ptr<Exchange> spare_exchange_;  // reused by the next request
  std::unique_ptr<Exchange> retired_exchange_;  // the exchange of a closed connection (see Close)
  std::vector<std::pair<absl::string_view, absl::string_view>> router_headers_;  // OnHead scratch
  std::string out_owned_;                     // copied bytes of the pieces below
  OutPiece out_pieces_[kMaxOutPieces];
  size_t out_piece_count_ = 0;
};

}  // namespace portico::proxy
