#pragma once
// A byte stream between this process and a peer, as the HTTP connections see it: plain TCP now
// (tcp_transport.h), TLS next. Connections talk only to this interface, so a TLS transport slots
// in without touching them.
//
// Contracts that every implementation keeps:
//  - Reads are zero-copy where the implementation can: OnTransportRead's view points into a buffer
//    the transport does not hand over (the loop's shared read buffer for TCP, a decrypt buffer for
//    TLS), valid only during the call. The owner parses from it and copies only what it keeps.
//  - Write() hands bytes to the kernel at once when it can (no copy, no write request) and copies
//    and queues only the rest; queued bytes keep their order and complete with
//    OnTransportWritten. A write the transport cannot even queue returns false: nothing was
//    queued, and no callback reports it.
//  - Callbacks never run from inside a method the owner called (Close() included), except that
//    Close() cancels a pending shutdown (OnTransportShutdown with UV_ECANCELED) before
//    OnTransportClosed, as libuv does.
//  - After Close(), the only callbacks are those cancellations and, last, OnTransportClosed; the
//    owner may free itself there.
// Thread-compatible: one loop thread.
#include <cstddef>

#include "absl/strings/string_view.h"

struct sockaddr;

namespace portico {

class TransportCallbacks {
 public:
  virtual ~TransportCallbacks() = default;
  // Connect() finished (status < 0: failed; the owner closes).
  virtual void OnTransportConnected(int status) = 0;
  // Bytes from the peer; the view is valid only for this call.
  virtual void OnTransportRead(absl::string_view data) = 0;
  // The peer closed its sending side. Reading has stopped.
  virtual void OnTransportEof() = 0;
  // Reading failed (a UV_* error): the owner closes.
  virtual void OnTransportReadError(int status) = 0;
  // Queued bytes went out (`status` < 0: the write failed and the owner closes).
  virtual void OnTransportWritten(size_t bytes, int status) = 0;
  // Shutdown() is done: everything queued went out, then the FIN (status < 0: it failed, or the
  // transport was closed first: UV_ECANCELED).
  virtual void OnTransportShutdown(int status) = 0;
  // The transport is closed; nothing else follows. The owner may free it (and itself) now.
  virtual void OnTransportClosed() = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Starts a connection to `address` (OnTransportConnected follows): 0, or the libuv error
  // (negative errno) when it cannot even start (then the owner closes).
  virtual int Connect(const sockaddr* address) = 0;
  virtual void StartReading() = 0;
  virtual void StopReading() = 0;
  virtual bool reading() const = 0;
  // Sends the concatenation of `parts` after every byte already queued (see the file comment).
  virtual bool Write(const absl::string_view* parts, size_t count) = 0;
  bool Write(absl::string_view data) { return Write(&data, 1); }
  // Bytes queued and not yet written.
  virtual size_t pending_write_bytes() const = 0;
  // Sends the FIN after the queued bytes (OnTransportShutdown follows). False when it cannot.
  virtual bool Shutdown() = 0;
  // Closes now; queued bytes are dropped. Idempotent. OnTransportClosed follows.
  virtual void Close() = 0;
  virtual bool closing() const = 0;
  // Disables Nagle's algorithm (once; later calls cost nothing).
  virtual void SetNoDelay() = 0;
  // True when nothing (no byte, no EOF) is waiting to be read. Costs a system call.
  virtual bool PeerSilent() = 0;
};

}  // namespace portico
