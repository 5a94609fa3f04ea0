#include "data_plane/proxy/tunnel.h"

#include "data_plane/proxy/worker.h"

namespace portico::dp {

Tunnel::Tunnel(Worker& worker, TunnelEnd& client, TunnelEnd& upstream) : worker_(worker), ends_{&client, &upstream} {
  worker_.CountWebSocketTunnel(+1);
}

Tunnel::~Tunnel() {
  if (!closed_) worker_.CountWebSocketTunnel(-1);
}

void Tunnel::Start() {
  if (closed_) return;
  for (Side side : {kClient, kUpstream}) {
    if (!eof_[side] && !paused_[side]) ends_[side]->tunnel_transport().StartReading();
  }
  Touch();
}

void Tunnel::Touch() {
  if (!closed_) ends_[kUpstream]->OnTunnelActivity();
}

void Tunnel::OnRead(Side from, absl::string_view data) {
  if (closed_ || data.empty()) return;
  Transport& to = ends_[Other(from)]->tunnel_transport();
  if (shut_[Other(from)] || !to.Write(data)) {  // (nothing may follow our FIN)
    Close();
    return;
  }
  if (to.pending_write_bytes() >= kHighWaterBytes && !paused_[from]) {
    paused_[from] = true;
    ends_[from]->tunnel_transport().StopReading();
  }
  Touch();
}

void Tunnel::OnWritten(Side side) {
  if (closed_) return;
  Touch();
  const Side reader = Other(side);
  if (paused_[reader] && ends_[side]->tunnel_transport().pending_write_bytes() < kLowWaterBytes) {
    paused_[reader] = false;
    if (!eof_[reader]) ends_[reader]->tunnel_transport().StartReading();
  }
}

void Tunnel::OnEof(Side from) {
  if (closed_ || eof_[from]) return;
  eof_[from] = true;
  // The FIN goes on to the other end once the bytes before it have.
  if (!ends_[Other(from)]->tunnel_transport().Shutdown()) Close();
}

void Tunnel::OnShutdown(Side side, int status) {
  if (closed_) return;
  if (status < 0) {
    Close();
    return;
  }
  shut_[side] = true;
  if (shut_[kClient] && shut_[kUpstream]) Close();  // both directions are finished
}

void Tunnel::Close() {
  if (closed_) return;
  closed_ = true;
  worker_.CountWebSocketTunnel(-1);
  // Each end's Close calls back here (a no-op now).
  ends_[kClient]->CloseFromTunnel();
  ends_[kUpstream]->CloseFromTunnel();
}

}  // namespace portico::dp
