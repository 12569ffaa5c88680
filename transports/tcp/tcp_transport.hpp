// TCP transport: non-blocking sockets, several per peer for bandwidth, an epoll progress engine
// that blocks instead of spinning when idle. Connections are made lazily when a schedule first
// needs a peer; a handshake carries job id, generation, communicator and rank so that stray or
// stale connections are refused and logged.
#pragma once

#include <memory>
#include <string>

#include "core/socket.hpp"
#include "rendezvous/store.hpp"
#include "transports/transport.hpp"

namespace kumi {

struct TcpOptions {
  int rank = 0;
  int worldSize = 1;
  std::string jobId;
  int generation = 0;
  std::string commId;         // unique per communicator within the job
  int socketsPerPeer = 1;
  std::size_t bufferBytes = 0;
  SockAddr listenAddress;     // port 0: any
  double handshakeSeconds = 30;
  std::string secret;         // KUMI_SECRET: every connection proves it (both ways) before use
  WireChecks checks;          // KUMI_CHECKSUM
  int heartbeatSeconds = 5;   // KUMI_HEARTBEAT: kernel keepalive period (core/socket.hpp)
};

class TcpTransport final : public Transport {
 public:
  // Listens, publishes this rank's address in store (already scoped to the communicator), and
  // starts accepting peers.
  TcpTransport(const TcpOptions& options, std::shared_ptr<Store> store);
  ~TcpTransport() override;

  const char* name() const override { return "tcp"; }
  void connect(const std::vector<int>& peers, const Deadline& deadline) override;
  void setCallStamp(const CallStamp& stamp) override;
  void postSend(int peer, const void* data, std::size_t bytes, Request* req) override;
  void postRecv(int peer, void* data, std::size_t bytes, Request* req) override;
  bool progress(std::vector<Request*>& completed) override;
  void waitForEvents(int timeoutMs) override;
  void interrupt() override;
  void publishFailure(const std::string& story) override;
  void shutdown() override;
  void cancelAll() override;
  int eventFd() const override;  // the epoll set
  bool cancelRecv(int peer, Request* req) override;

  // "host:port" this rank listens on (also published in the store as tcp/<rank>).
  std::string address() const;
  // Every rank's address, learnt at start-up from the ranks themselves: connections then need
  // the store only when a peer refuses (to follow a pod that moved), not to find it.
  void learnAddresses(std::vector<std::string> byRank);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kumi
