#pragma once
// HTTP/1.1 on loopback sockets for tests: the one place that writes, reads and parses raw HTTP.
// A buffered socket reader (head, exact bytes, line, chunked body, to EOF), header-line parsing,
// a blocking raw client that reads responses the way a strict HTTP/1.1 client frames them, a
// one-shot request, a request reader for test upstreams, and loopback listening sockets.
// Every blocking read is bounded (a timeout, a deadline or a stop flag) or ended by the owner
// shutting the socket down, so a broken server fails a test instead of hanging it.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace portico::test_support {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Writes all of `data` to the socket `fd` (no SIGPIPE; retries after EINTR). False on error.
bool SendAll(int fd, absl::string_view data);

// Splits a message head (without its blank line) into the first line and the header lines,
// each as its name and its value without surrounding blanks. A line without a colon is
// skipped, and makes it return false.
bool ParseHeaderLines(absl::string_view head, std::string* first_line, HeaderList* headers);

// The first value of header `name` (any case), or nullptr.
const std::string* FindHeader(const HeaderList& headers, absl::string_view name);

// What a message carried: headers in order, as sent, and the body without its framing.
struct HttpMessage {
  HeaderList headers;
  std::string body;
  bool chunked = false;  // the body came chunked

  // First value of a header (any case); "<absent>" when missing.
  std::string Header(absl::string_view name) const;
  bool HasHeader(absl::string_view name) const;
  size_t HeaderCount(absl::string_view name) const;
};

// One response, as a client read it.
struct HttpReply : HttpMessage {
  bool ok = false;           // a complete response was read
  std::string error;         // why not
  int status = 0;            // of the final response (1xx ones are skipped)
  bool peer_closed = false;  // the peer closed (EOF or reset) while it was read
};

// One request, as a test upstream read it.
struct WireRequest : HttpMessage {
  std::string method;
  std::string target;
  std::string version;
};

// A buffer over a socket it does not own. One read waits for bytes:
//  - with `stop`: in 20 ms slices until `*stop` is set;
//  - with a deadline (set_deadline): until then;
//  - otherwise as the socket says (SO_RCVTIMEO, or until the owner shuts it down).
// Every Read* returns false when the bytes it needs do not come (EOF, reset, timeout, stop)
// or, for a chunked body, break the framing.
class SocketReader {
 public:
  explicit SocketReader(int fd, const std::atomic<bool>* stop = nullptr) : fd_(fd), stop_(stop) {}

  void set_deadline(std::chrono::steady_clock::time_point deadline) { deadline_ = deadline; }

  // The head up to the blank line (without it).
  bool ReadHead(std::string* head);
  // Appends exactly `n` bytes.
  bool ReadExact(size_t n, std::string* out);
  // One line, without its CRLF.
  bool ReadLine(std::string* line);
  // Appends the decoded chunked body; extensions are dropped, trailers go to `trailers`.
  bool ReadChunked(std::string* out, HeaderList* trailers = nullptr);
  // Appends everything up to EOF (or a reset); false on a timeout or stop.
  bool ReadToEof(std::string* out);
  // One more read into the buffer.
  bool Fill();

  bool closed() const { return closed_; }        // a read saw EOF or a reset
  bool timed_out() const { return timed_out_; }  // a read timed out
  std::string& buffer() { return buffer_; }      // read and not yet consumed
  const std::string& buffer() const { return buffer_; }

 private:
  bool WaitReadable();
  bool ReadUntil(absl::string_view delimiter, std::string* out);  // without the delimiter

  int fd_;
  const std::atomic<bool>* stop_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::string buffer_;
  bool closed_ = false;
  bool timed_out_ = false;
};

// Reads the next response: skips 1xx ones; no body after HEAD (`head_request`), 204 and 304;
// then a chunked, a Content-Length or a read-until-close body. The status line must be
// "HTTP/1.1 <3 digits>[ reason]", every header line must have a colon and a Content-Length must
// be a number; otherwise the reply is not ok.
HttpReply ReadResponse(SocketReader& reader, bool head_request = false);

// Reads the next request (request line, headers, then a chunked or Content-Length body).
// False when none comes whole (EOF, timeout, stop) or its framing is broken.
bool ReadRequest(SocketReader& reader, WireRequest* request);

// A blocking client connected to 127.0.0.1:port. `timeout_ms` bounds the connect, every send
// and every read.
class RawHttpClient {
 public:
  explicit RawHttpClient(uint16_t port, int timeout_ms = 5000);
  ~RawHttpClient();
  RawHttpClient(const RawHttpClient&) = delete;
  RawHttpClient& operator=(const RawHttpClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  int connect_error() const { return connect_error_; }  // errno of a failed connect
  bool Send(absl::string_view data);
  void ShutdownWrite();
  // Closes with a reset (RST, SO_LINGER 0): the peer sees the client go away, not a half-close.
  void Reset();
  // Also bounds all reads together.
  void set_deadline(std::chrono::steady_clock::time_point deadline) { reader_.set_deadline(deadline); }

  HttpReply ReadResponse(bool head_request = false);

  // Nothing is left to read and the next read sees EOF or a reset (within the timeout).
  bool ReadsEof();
  // Nothing is left to read and the next read sees a clean EOF (a FIN, not a reset).
  bool WaitCleanEof();
  // Drops whatever arrives until EOF or a reset (true) or the timeout (false).
  bool WaitClosed();
  // Reads until EOF or a reset (true) or until nothing arrives for `quiet` (false); what arrives
  // meanwhile is kept in leftover().
  bool ClosedWithin(std::chrono::milliseconds quiet);
  // After the peer closed: true when its socket is gone (a byte sent to it is answered with a
  // RST, so a second send fails), false when it still reads (e.g. a lingering close).
  bool PeerSocketGone();

  // Bytes read but not part of any response read so far.
  const std::string& leftover() const { return reader_.buffer(); }

 private:
  int connect_error_ = 0;
  int fd_ = -1;
  SocketReader reader_;
};

// Connects to 127.0.0.1:port, sends `request` and reads one response, all within `timeout`.
HttpReply RawHttp(uint16_t port, absl::string_view request,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A listening socket on 127.0.0.1:port (0: an ephemeral one; a fixed port is bound with
// SO_REUSEADDR), close-on-exec. Returns the socket and sets `*bound_port`, or -1.
int ListenOnLoopback(uint16_t port, int backlog, uint16_t* bound_port);

// A loopback port on which nothing listens (bound, then closed).
uint16_t ClosedLoopbackPort();

}  // namespace portico::test_support
