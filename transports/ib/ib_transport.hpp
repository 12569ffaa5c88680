// RDMA transport over libibverbs (RoCE v2 or InfiniBand): reliable-connected queue pairs to each
// peer, set up through the store when a schedule first needs the peer.
//
// Data path: every pair has, per direction, a ring of registered slots in the receiver's memory.
// The sender copies a message part and its header (call stamp, sequence, sizes, checksum) into a
// registered staging slot of its own and RDMA-writes it, with immediate data naming the slot,
// into the same slot of the receiver's ring; the write's completion at the receiver says the
// bytes are there. The receiver copies parts out in slot order when a matching receive is posted
// and returns the freed slots as a credit (a zero-byte send whose immediate carries the count of
// slots freed so far), so a sender never overwrites a slot that has not been read. Slots go
// round-robin over the pair's queue pairs (KUMI_IB_QPS_PER_CONNECTION) for ECMP entropy; the
// slot order, not arrival order, decides the order of parts, so several QPs keep messages in
// posting order.
//
// Failures name the device, port, queue pair and peer: a work request that completes in error
// (e.g. a peer that died: the retries run out), a peer that never publishes its queue pairs, an
// error on the device's asynchronous event queue.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "rendezvous/store.hpp"
#include "transports/ib/ib_options.hpp"
#include "transports/transport.hpp"

namespace kumi {

// What the communicator needs to decide whether to use RDMA with a peer, before any transport
// exists: this rank's port, if it has one, and why not otherwise.
struct IbAvailability {
  bool usable = false;
  std::string linkLayer;  // "roce" or "ib": ranks talk over RDMA only when both agree
  std::string why;        // when not usable, for the one INFO line of the TCP fallback
};
// Reads KUMI_IB_* and looks for ports. Throws on a bad setting, never for a missing device.
IbAvailability probeIb(const ib::IbOptions& options, int localRank);

struct IbTransportOptions {
  int rank = 0;
  int localRank = 0;  // picks this rank's port: local rank l uses port l mod ports (a rail per NIC)
  ib::IbOptions ib;
  WireChecks checks;  // KUMI_CHECKSUM
};

class IbTransport final : public Transport {
 public:
  // Opens this rank's port and chooses its GID (logged at INFO with the reason). store must be
  // scoped to the communicator: connection records are published there.
  IbTransport(const IbTransportOptions& options, std::shared_ptr<Store> store);
  ~IbTransport() override;

  const char* name() const override { return "ib"; }
  // "rxe0:1 GID 1 (::ffff:10.77.0.1, RoCE v2)", for logs and tests.
  std::string describe() const;

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

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace kumi
