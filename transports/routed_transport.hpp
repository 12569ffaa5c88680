// One Transport over several: each peer is reached through the transport the communicator chose
// for it (shared memory on the same host, TCP elsewhere). The executor sees one transport.
// A look without blocking goes to every transport with work outstanding (a spinning rank must
// see its network data as soon as its shared-memory data). Blocking waits go to the one
// transport with work outstanding; when several have, waits alternate in short slices (shared
// memory sleeps on a futex, TCP on epoll, and no one call waits on both), which bounds the extra
// latency of a sleeping rank to a millisecond.
#pragma once

#include <memory>
#include <vector>

#include "transports/transport.hpp"

namespace kumi {

class RoutedTransport final : public Transport {
 public:
  // routes[peer]: index into transports (unused for this rank itself).
  RoutedTransport(std::vector<std::unique_ptr<Transport>> transports, std::vector<int> routes);

  const char* name() const override { return "routed"; }
  // Which transport carries messages to peer.
  Transport& to(int peer) const { return *transports_[static_cast<std::size_t>(routes_[static_cast<std::size_t>(peer)])]; }

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
  // Goes to every transport; the one that registers (RDMA, at most one) gives the handle.
  std::uint64_t registerBuffer(void* data, std::size_t bytes) override;
  bool deregisterBuffer(std::uint64_t handle) override;
  std::uint64_t registerDeviceBuffer(void* data, std::size_t bytes, gpu::Device& device, int deviceIndex) override;
  bool readsDevice(int peer) const override { return to(peer).readsDevice(peer); }
  void postRecvDevice(int peer, void* host, void* device, std::size_t bytes, Request* req) override;
  bool pullsDevice(int peer) const override { return to(peer).pullsDevice(peer); }
  void postSendDevice(int peer, const DeviceMessage& m, std::size_t bytes, Request* req) override;
  void postRecvAny(int peer, void* data, std::size_t bytes, Request* req) override;
  void releaseDevice(int peer) override { to(peer).releaseDevice(peer); }

 private:
  std::vector<std::unique_ptr<Transport>> transports_;
  std::vector<int> routes_;
  std::vector<long long> outstanding_;  // posted, not yet completed, per transport
  std::vector<int> peersOf_;            // scratch for connect
  std::size_t turn_ = 0;
};

}  // namespace kumi
