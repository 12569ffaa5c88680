// RDMA transport over libibverbs (RoCE v2 or InfiniBand): reliable-connected queue pairs to each
// peer, set up when a schedule first needs the peer by exchanging connection records over the
// bootstrap (TCP) transport, which names a peer that died or never comes at once.
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
// Buffers the user registered (kumiCommRegister) are sent from without the staging copy: the
// header goes from the staging slot and the bytes straight from the buffer, in one write of two
// gather elements; the send completes when the NIC has read them.
//
// GPUDirect RDMA: device memory registered through registerDeviceBuffer (the device executor's
// send slots) is read by the NIC itself, every part in the same two-element write as a
// registered host buffer's, through a dma-buf or a peer-memory registration as
// transports/ib/gdr_policy.hpp chooses for this rank's GPU and NIC. A receive into registered
// device memory (postRecvDevice) is advertised to the sender (address, rkey, size and message
// number, written into an area after the sender's own ring); a sender that holds the advert when
// it starts that message, and can read its source with the NIC, writes the whole message there
// and then only the header into a slot, on the same queue pair, so the bytes are in place when
// the header's completion says so. Otherwise the message goes through the slots as always, into
// the receive's host buffer: the choice is the sender's, per message, and both are correct.
//
// Failures name the device, port, queue pair and peer: a work request that completes in error
// (e.g. a peer that died: the retries run out), a peer that never publishes its queue pairs, an
// error on the device's asynchronous event queue.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "topology/rails.hpp"
#include "transports/ib/ib_options.hpp"
#include "transports/transport.hpp"

namespace kumi {

// What the communicator needs to decide whether to use RDMA with a peer, before any transport
// exists: this rank's port, if it has one, and why not otherwise.
struct IbAvailability {
  bool usable = false;
  std::string linkLayer;             // "roce" or "ib": ranks talk over RDMA only when both agree
  std::vector<std::string> devices;  // of the usable ports, in KUMI_IB_HCA's order (for rails)
  std::string why;                   // when not usable, for the one INFO line of the TCP fallback
};
// Looks for usable ports. Never throws for a missing device.
IbAvailability probeIb(const ib::IbOptions& options);

struct IbTransportOptions {
  int rank = 0;
  int port = 0;       // which of the usable ports (probeIb's devices): this rank's rail
  ib::IbOptions ib;
  WireChecks checks;  // KUMI_CHECKSUM
  // How every GPU of this host reaches this rank's NIC (topology), for GPUDirect RDMA; empty
  // when unknown (only KUMI_IB_GDR_LEVEL=SYS then lets the NIC read GPU memory).
  std::vector<topo::GpuPath> gpuPaths;
};

class IbTransport final : public Transport {
 public:
  // Opens this rank's port and chooses its GID (logged at INFO with the reason). Connection
  // records travel over bootstrap (the communicator's TCP transport), which must outlive this.
  IbTransport(const IbTransportOptions& options, Transport& bootstrap);
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
  std::uint64_t registerBuffer(void* data, std::size_t bytes) override;
  bool deregisterBuffer(std::uint64_t handle) override;
  std::uint64_t registerDeviceBuffer(void* data, std::size_t bytes, gpu::Device& device, int deviceIndex) override;
  bool readsDevice(int peer) const override;
  void postRecvDevice(int peer, void* host, void* device, std::size_t bytes, Request* req) override;
  // Bytes the NIC read from device memory so far, for tests.
  std::uint64_t deviceReadBytes() const;
  // Bytes written straight into a receiver's advertised buffer, and received so, for tests.
  std::uint64_t directBytesSent() const;
  std::uint64_t directBytesReceived() const;
  // Registered user buffers (entries of the registration cache), for tests.
  std::size_t registrations() const;
  // Bytes sent straight from registered buffers so far, for tests.
  std::uint64_t zeroCopyBytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace kumi
