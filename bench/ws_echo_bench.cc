// WebSocket echo load for bench/websocket_echo.sh: one binary, two roles, each a single-threaded
// epoll loop (so the load side costs little CPU next to the proxy under test).
//
//   ws_echo_bench server PORT
//       RFC 6455 echo server on 127.0.0.1:PORT: answers the opening handshake (Sec-WebSocket-Accept
//       = base64(SHA-1(key + GUID))), then sends every data frame back unmasked with the same
//       opcode; answers a close frame with a close frame and closes.
//   ws_echo_bench client PORT PATH CONNECTIONS SECONDS MESSAGE_BYTES
//       CONNECTIONS clients to 127.0.0.1:PORT, each: the handshake for PATH (101 required), then
//       one masked binary message at a time, waiting for its echo (checked byte for byte), for
//       SECONDS. Prints "messages=<n> seconds=<s> rate=<n/s> p50_us=<> p99_us=<> errors=<n>".
//
// Frames are at most 65535 bytes here (7- and 16-bit lengths); that is all the benchmark needs.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }
void SetNoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::string AcceptKey(const std::string& key) {
  const std::string input = key + kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  unsigned char out[64];
  const int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n));
}

// Appends a frame header (FIN set) for `length` payload bytes; `mask` null: unmasked.
void AppendFrameHeader(std::string* out, int opcode, size_t length, const unsigned char* mask) {
  out->push_back(static_cast<char>(0x80 | opcode));
  const unsigned char mask_bit = mask != nullptr ? 0x80 : 0;
  if (length < 126) {
    out->push_back(static_cast<char>(mask_bit | length));
  } else {
    out->push_back(static_cast<char>(mask_bit | 126));
    out->push_back(static_cast<char>((length >> 8) & 0xff));
    out->push_back(static_cast<char>(length & 0xff));
  }
  if (mask != nullptr) out->append(reinterpret_cast<const char*>(mask), 4);
}

// One complete frame at the start of `in`: its size in bytes (0: incomplete, -1: unsupported).
struct Frame {
  int opcode = 0;
  bool masked = false;
  unsigned char mask[4] = {0, 0, 0, 0};
  size_t header = 0;
  size_t length = 0;
};
long ParseFrame(const std::string& in, size_t at, Frame* frame) {
  if (in.size() - at < 2) return 0;
  const unsigned char b0 = static_cast<unsigned char>(in[at]), b1 = static_cast<unsigned char>(in[at + 1]);
  if ((b0 & 0x80) == 0) return -1;  // fragmented messages: not produced by this tool
  frame->opcode = b0 & 0x0f;
  frame->masked = (b1 & 0x80) != 0;
  size_t length = b1 & 0x7f, header = 2;
  if (length == 127) return -1;
  if (length == 126) {
    if (in.size() - at < 4) return 0;
    length = (static_cast<size_t>(static_cast<unsigned char>(in[at + 2])) << 8) |
             static_cast<unsigned char>(in[at + 3]);
    header = 4;
  }
  if (frame->masked) {
    if (in.size() - at < header + 4) return 0;
    std::memcpy(frame->mask, in.data() + at + header, 4);
    header += 4;
  }
  if (in.size() - at < header + length) return 0;
  frame->header = header;
  frame->length = length;
  return static_cast<long>(header + length);
}

// Writes all of `data` (blocking briefly on EAGAIN: messages are small and the peer reads).
bool WriteAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

// ---- server ---------------------------------------------------------------------------------

struct ServerConnection {
  int fd = -1;
  bool upgraded = false;
  std::string in;
};

int RunServer(uint16_t port) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 || ::listen(listener, 1024) != 0) {
    std::perror("bind/listen");
    return 1;
  }
  SetNonBlocking(listener);
  const int ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  std::printf("listening on port %u\n", port);
  std::fflush(stdout);
  std::vector<epoll_event> events(256);
  char buffer[65536];
  std::string out;
  while (true) {
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        while (true) {
          const int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
          if (fd < 0) break;
          SetNoDelay(fd);
          auto* c = new ServerConnection{fd};
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.ptr = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
        continue;
      }
      auto* c = static_cast<ServerConnection*>(events[i].data.ptr);
      bool close_it = false;
      while (true) {
        const ssize_t r = ::recv(c->fd, buffer, sizeof(buffer), 0);
        if (r > 0) {
          c->in.append(buffer, static_cast<size_t>(r));
          continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) close_it = true;
        break;
      }
      out.clear();
      if (!c->upgraded) {
        const size_t end = c->in.find("\r\n\r\n");
        if (end != std::string::npos) {
          std::string key;
          size_t k = 0;
          while ((k = c->in.find('\n', k)) != std::string::npos && k < end) {
            ++k;
            if (strncasecmp(c->in.c_str() + k, "sec-websocket-key:", 18) == 0) {
              size_t v = k + 18;
              while (c->in[v] == ' ') ++v;
              key = c->in.substr(v, c->in.find('\r', v) - v);
            }
          }
          if (key.empty()) {
            WriteAll(c->fd, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            close_it = true;
          } else {
            out = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: " + AcceptKey(key) + "\r\n\r\n";
            c->upgraded = true;
          }
          c->in.erase(0, end + 4);
        }
      }
      size_t at = 0;
      while (c->upgraded && !close_it) {
        Frame frame;
        const long size = ParseFrame(c->in, at, &frame);
        if (size == 0) break;
        if (size < 0 || !frame.masked) {  // client frames must be masked
          close_it = true;
          break;
        }
        std::string payload = c->in.substr(at + frame.header, frame.length);
        for (size_t j = 0; j < payload.size(); ++j) payload[j] = static_cast<char>(payload[j] ^ frame.mask[j % 4]);
        at += static_cast<size_t>(size);
        if (frame.opcode == 0x8) {  // close: echo it, then close
          AppendFrameHeader(&out, 0x8, payload.size(), nullptr);
          out += payload;
          close_it = true;
          break;
        }
        if (frame.opcode == 0x9) {  // ping -> pong
          AppendFrameHeader(&out, 0xA, payload.size(), nullptr);
        } else if (frame.opcode == 0xA) {
          continue;
        } else {
          AppendFrameHeader(&out, frame.opcode, payload.size(), nullptr);
        }
        out += payload;
      }
      c->in.erase(0, at);
      if (!out.empty() && !WriteAll(c->fd, out)) close_it = true;
      if (close_it) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
        ::close(c->fd);
        delete c;
      }
    }
  }
}

// ---- client ---------------------------------------------------------------------------------

struct ClientConnection {
  int fd = -1;
  bool upgraded = false;
  std::string in;
  Clock::time_point sent_at;
};

int RunClient(uint16_t port, const std::string& path, int connections, double seconds, size_t message_bytes) {
  if (message_bytes > 65535) message_bytes = 65535;
  std::mt19937 random(42);
  std::string payload(message_bytes, '\0');
  for (char& ch : payload) ch = static_cast<char>('a' + random() % 26);
  const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
  std::string frame;
  AppendFrameHeader(&frame, 0x2, payload.size(), mask);
  for (size_t j = 0; j < payload.size(); ++j) frame.push_back(static_cast<char>(payload[j] ^ mask[j % 4]));
  std::string expected_header;
  AppendFrameHeader(&expected_header, 0x2, payload.size(), nullptr);
  const size_t echo_size = expected_header.size() + payload.size();

  const int ep = epoll_create1(0);
  std::vector<std::unique_ptr<ClientConnection>> clients;
  const std::string handshake = "GET " + path +
                                " HTTP/1.1\r\nHost: bench.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  for (int i = 0; i < connections; ++i) {
    auto c = std::make_unique<ClientConnection>();
    c->fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(c->fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      std::perror("connect");
      return 1;
    }
    SetNoDelay(c->fd);
    SetNonBlocking(c->fd);
    if (!WriteAll(c->fd, handshake)) return 1;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = c.get();
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    clients.push_back(std::move(c));
  }
  uint64_t messages = 0, errors = 0;
  std::vector<uint32_t> latencies_us;
  latencies_us.reserve(1 << 22);
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<epoll_event> events(256);
  char buffer[65536];
  int open = connections;
  while (open > 0) {
    const auto now = Clock::now();
    if (now >= until) break;
    const int timeout_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count()) + 1;
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout_ms);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<ClientConnection*>(events[i].data.ptr);
      bool failed = false;
      while (true) {
        const ssize_t r = ::recv(c->fd, buffer, sizeof(buffer), 0);
        if (r > 0) {
          c->in.append(buffer, static_cast<size_t>(r));
          continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) failed = true;
        break;
      }
      if (!c->upgraded) {
        const size_t end = c->in.find("\r\n\r\n");
        if (end != std::string::npos) {
          if (c->in.compare(0, 12, "HTTP/1.1 101") != 0) {
            std::fprintf(stderr, "handshake refused: %s\n", c->in.substr(0, end).c_str());
            return 1;
          }
          c->in.erase(0, end + 4);
          c->upgraded = true;
          c->sent_at = Clock::now();
          if (!WriteAll(c->fd, frame)) failed = true;
        }
      }
      while (c->upgraded && !failed && c->in.size() >= echo_size) {
        if (c->in.compare(0, expected_header.size(), expected_header) != 0 ||
            c->in.compare(expected_header.size(), payload.size(), payload) != 0) {
          failed = true;  // counted below
          break;
        }
        c->in.erase(0, echo_size);
        const auto now2 = Clock::now();
        ++messages;
        latencies_us.push_back(static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(now2 - c->sent_at).count()));
        c->sent_at = now2;
        if (!WriteAll(c->fd, frame)) failed = true;
      }
      if (failed) {
        ++errors;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
        ::close(c->fd);
        c->fd = -1;
        --open;
      }
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& c : clients) {
    if (c->fd >= 0) ::close(c->fd);
  }
  std::sort(latencies_us.begin(), latencies_us.end());
  auto percentile = [&](double p) -> uint32_t {
    if (latencies_us.empty()) return 0;
    return latencies_us[std::min(latencies_us.size() - 1, static_cast<size_t>(p * latencies_us.size()))];
  };
  std::printf("messages=%llu seconds=%.2f rate=%.0f p50_us=%u p99_us=%u errors=%llu\n",
              static_cast<unsigned long long>(messages), elapsed, messages / elapsed, percentile(0.50),
              percentile(0.99), static_cast<unsigned long long>(errors));
  return errors == 0 && messages > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "server") == 0) return RunServer(static_cast<uint16_t>(std::atoi(argv[2])));
  if (argc >= 7 && std::strcmp(argv[1], "client") == 0) {
    return RunClient(static_cast<uint16_t>(std::atoi(argv[2])), argv[3], std::atoi(argv[4]), std::atof(argv[5]),
                     static_cast<size_t>(std::atol(argv[6])));
  }
  std::fprintf(stderr,
               "usage: %s server PORT\n       %s client PORT PATH CONNECTIONS SECONDS MESSAGE_BYTES\n", argv[0],
               argv[0]);
  return 2;
}
