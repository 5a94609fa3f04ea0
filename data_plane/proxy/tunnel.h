#pragma once
// A byte tunnel between a client connection and an upstream connection after a WebSocket
// handshake (101): what one end reads goes to the other end's transport as it came (the read
// buffer's view is handed to Transport::Write, which copies only what the kernel does not take).
// Frames are not parsed.
//
//   flow control  an end is not read while the other end's queued bytes are at or above
//                 kHighWaterBytes, and is read again below kLowWaterBytes;
//   half-close    EOF from one end shuts down the other end's write side after its queued bytes
//                 (TLS: close_notify); once both directions are shut, both ends close;
//   idle          `idle_timeout_ms` (the service's read_timeout) with no byte read or written in
//                 either direction closes both ends (measured by the upstream end's timer);
//   failure       a read or write error, or either end closing, closes both ends. Queued bytes
//                 are dropped: closing is the only signal a byte tunnel has.
//
// Owned by the client connection; both ends hold it until they close. Thread-compatible: only
// the owning worker's loop.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/net/transport.h"

namespace portico::dp {

class Worker;

// A connection in tunnel mode, as the tunnel drives it.
class TunnelEnd {
 public:
  virtual ~TunnelEnd() = default;
  // The connection's transport (TCP, or TLS over TCP).
  virtual Transport& tunnel_transport() = 0;
  // Closes the connection; it reports nothing more to the tunnel.
  virtual void CloseFromTunnel() = 0;
  // A byte went through the tunnel: the end that keeps the idle timer restarts it.
  virtual void OnTunnelActivity() {}
};

class Tunnel {
 public:
  enum Side : int { kClient = 0, kUpstream = 1 };

  // Counts the tunnel as open on `worker`; Start() begins reading both ends.
  Tunnel(Worker& worker, TunnelEnd& client, TunnelEnd& upstream);
  ~Tunnel();
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // Reads both ends (an end with EOF or paused excepted). Bytes and EOF an end had before the
  // tunnel (OnRead, OnEof) may be given first.
  void Start();

  // ---- from the ends' transport callbacks
  void OnRead(Side from, absl::string_view data);
  void OnEof(Side from);
  // Queued bytes of `side` went out.
  void OnWritten(Side side);
  void OnShutdown(Side side, int status);
  // Closes both ends (an error, the idle timeout, an end closing, worker shutdown). Idempotent;
  // safe to call from inside an end's Close.
  void Close();
  bool closed() const { return closed_; }

 private:
  static Side Other(Side side) { return side == kClient ? kUpstream : kClient; }
  void Touch();

  Worker& worker_;
  TunnelEnd* ends_[2];
  bool eof_[2] = {false, false};       // the end's peer sent EOF (its reading stopped)
  bool paused_[2] = {false, false};    // the end is not read: the other end's queue is full
  bool shut_[2] = {false, false};      // our FIN to the end went out
  bool closed_ = false;
};

}  // namespace portico::dp
