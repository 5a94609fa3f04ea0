#pragma once
// A blocking HTTP/2 client for loopback tests (nghttp2 client session over a plain socket):
// submit requests, then run the connection until a condition holds or a timeout passes. Records
// what the server sent per stream (status, headers, body, trailers, RST_STREAM code) and for the
// connection (GOAWAY, close). Raw bytes can be written too, for malformed input.
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nghttp2/nghttp2.h>

namespace portico::dp::testing {

struct H2Stream {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::pair<std::string, std::string>> trailers;
  std::string body;
  bool closed = false;
  uint32_t close_error = 0;  // RST_STREAM code (0: closed normally)
  bool reset = false;        // a RST_STREAM frame arrived for it

  // First header (or trailer) of that name, "<absent>" when none.
  std::string Header(const std::string& name) const;
  std::string Trailer(const std::string& name) const;
};

struct H2ClientOptions {
  // Window updates are sent only by Consume() (a client that stops reading).
  bool manual_window = false;
  int32_t initial_window = 65535;
  // Skip nghttp2's checks of what the client sends (bad input on purpose).
  bool skip_outbound_checks = true;
  // The server's SETTINGS_MAX_CONCURRENT_STREAMS as assumed before its SETTINGS arrive (0: nghttp2's).
  uint32_t peer_max_concurrent_streams = 0;
};

class H2TestClient {
 public:
  explicit H2TestClient(H2ClientOptions options = {});
  ~H2TestClient();
  H2TestClient(const H2TestClient&) = delete;
  H2TestClient& operator=(const H2TestClient&) = delete;

  // Connects to 127.0.0.1:port and queues the preface and SETTINGS.
  bool Connect(uint16_t port);
  // For an `Upgrade: h2c` exchange: connects, sends `request_head` (HTTP/1.1 text) and reads up to
  // the end of the 101 head; then stream 1 is that request. False when the answer is not 101.
  bool ConnectUpgrade(uint16_t port, const std::string& method, const std::string& path,
                      const std::vector<std::pair<std::string, std::string>>& extra_headers = {});

  // A request; `headers` after the pseudo-headers, names as given. With `body` (even empty, when
  // `send_body`), DATA frames follow and END_STREAM ends them. Returns the stream id (< 0: error).
  int32_t Submit(const std::string& method, const std::string& path,
                 const std::vector<std::pair<std::string, std::string>>& headers = {},
                 const std::string* body = nullptr, const std::string& authority = "example.com");
  // HEADERS without END_STREAM, for bodies sent later with SendData.
  int32_t SubmitOpen(const std::string& method, const std::string& path,
                     const std::vector<std::pair<std::string, std::string>>& headers = {});
  void ResetStream(int32_t id, uint32_t code = NGHTTP2_CANCEL);
  // Acknowledges `bytes` of stream `id` (manual_window).
  void Consume(int32_t id, size_t bytes);
  // Writes what nghttp2 has queued. (nghttp2 drops a RST_STREAM for a stream whose HEADERS it
  // has not sent yet, and sends neither: send the HEADERS first.)
  bool Send() { return Flush(); }
  // Writes raw bytes on the socket (after flushing what nghttp2 queued).
  bool WriteRaw(const std::string& bytes);

  // Sends what is queued and reads until `done()` or `timeout_ms`. Returns done().
  template <typename Done>
  bool RunUntil(Done done, int timeout_ms = 5000) {
    const int64_t until = NowMs() + timeout_ms;
    while (!done()) {
      if (NowMs() >= until || !Step(static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(50, until - NowMs()))))) {
        return done();
      }
    }
    return true;
  }
  bool WaitClosed(int32_t id, int timeout_ms = 5000) {
    return RunUntil([&] { return streams_[id].closed || connection_closed_; }, timeout_ms);
  }

  H2Stream& stream(int32_t id) { return streams_[id]; }
  bool goaway() const { return goaway_; }
  uint32_t goaway_error() const { return goaway_error_; }
  // The last_stream_id of every GOAWAY received, in order.
  const std::vector<int32_t>& goaway_last_stream_ids() const { return goaway_last_stream_ids_; }
  bool connection_closed() const { return connection_closed_; }
  nghttp2_session* session() { return session_; }
  int fd() const { return fd_; }

 private:
  struct Callbacks;
  static int64_t NowMs();
  // One send and one read attempt (waiting up to `wait_ms`). False once the connection is gone.
  bool Step(int wait_ms);
  bool Flush();
  bool CreateSession(bool upgrade);

  H2ClientOptions options_;
  int fd_ = -1;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, H2Stream> streams_;
  std::deque<std::string> kept_names_;     // header names sent without a copy
  std::map<int32_t, std::string> bodies_;  // request bodies being sent
  std::map<int32_t, size_t> body_sent_;
  bool goaway_ = false;
  uint32_t goaway_error_ = 0;
  std::vector<int32_t> goaway_last_stream_ids_;
  bool connection_closed_ = false;
};

}  // namespace portico::dp::testing
