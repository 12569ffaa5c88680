// The one interface every transport implements (tcp now; shm, cuda_ipc, ibverbs later), shaped
// like a network plugin: connect to peers, post sends and receives of byte ranges, poll for
// completion, block when idle. The executor never knows which transport carries a step.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/deadline.hpp"
#include "core/error.hpp"

namespace kumi {

namespace gpu {
class Device;
}

// What the sender was doing when it sent a message: its call (kind, count, type, op, root,
// sequence number) packed in 16 bytes by the communicator (src/comm/call_stamp.hpp). Every
// message carries its sender's stamp and a receive accepts only a message with its own, so
// ranks that called different collectives, or the same one with different arguments, are told
// so at the first message instead of exchanging wrong data. Transports treat it as opaque.
struct CallStamp {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
  bool operator==(const CallStamp&) const = default;
};

// A message from `peer` carried another call's stamp; the communicator names both calls.
class CallMismatch : public Error {
 public:
  CallMismatch(int peer, const CallStamp& expected, const CallStamp& received)
      : Error(kumiRemoteError, "call mismatch"), peer(peer), expected(expected), received(received) {}
  int peer;
  CallStamp expected, received;
};

// A failure on the link with `peer` (e.g. corrupted data): the communicator names both ends.
class LinkError : public Error {
 public:
  LinkError(int peer, std::string message) : Error(kumiRemoteError, std::move(message)), peer(peer) {}
  int peer;
};

// The connection to `peer` is gone: it exited, crashed, aborted or failed (a peer that fails
// says why through the store first; the communicator tells the two apart).
class PeerLost : public LinkError {
 public:
  using LinkError::LinkError;
};

// The connection to `peer` ended and the peer (or the store) said why: `what()` is the story of
// the failure that the peer reported, to be told as the root cause.
class PeerFailed : public PeerLost {
 public:
  using PeerLost::PeerLost;
};

[[noreturn]] inline void failPeerFailed(int peer, const std::string& story) { throw PeerFailed(peer, story); }

template <class... Args>
[[noreturn]] void failPeerLost(int peer, const Args&... args) {
  throw PeerLost(peer, cat(args...));
}

template <class... Args>
[[noreturn]] void failLink(int peer, const Args&... args) {
  throw LinkError(peer, cat(args...));
}

// End-to-end integrity of payloads (KUMI_CHECKSUM): the sender puts a CRC32C of every message
// part in its header, the receiver recomputes it and fails naming the link on a difference.
struct WireChecks {
  bool checksum = false;
  // Tests only (KUMI_TEST_CORRUPT_EVERY): flips one bit of every n-th message part a rank
  // receives, after it crossed the link and before it is checked, as a faulty link would.
  std::uint32_t corruptEvery = 0;
};

// Flips a bit of a received part when WireChecks asks for it; true if it did.
bool injectCorruption(const WireChecks& checks, std::uint32_t& counter, void* data, std::size_t bytes);

// Device memory of a rank of this host, named so that a peer process can map it (CUDA IPC, see
// gpu/device.hpp's IpcRef) and read a message from it in place: the device path's zero-copy
// transfer between processes of one host.
struct DeviceMessage {
  std::array<std::byte, 64> handle{};  // of the sender's allocation
  std::uint64_t bufferId = 0;          // never names another allocation of that process
  std::uint64_t offset = 0;            // of the message in the allocation
  std::uint64_t address = 0;           // the message in the sender's address space (same process)
  std::int32_t pid = 0;                // the sender's process
  // When the sender's queue has written the bytes: its IPC event (id 0: none; the name was then
  // sent only once they were written), and the event object itself for a reader in the same process.
  std::array<std::byte, 64> event{};
  std::uint64_t eventId = 0;
  std::uint64_t eventAddress = 0;
};

// One posted send or receive. The transport may split it into parts (several sockets or
// queue pairs); it is complete when every part is.
struct Request {
  std::uint32_t step = 0;  // the executor's index of the schedule step
  int partsLeft = 0;
  // Set when a receive posted with postRecvAny got device memory in place of bytes: valid until
  // releaseDevice for that peer.
  const DeviceMessage* device = nullptr;
  // Set when a receive posted with postRecvDevice got its bytes in the device buffer (the NIC
  // wrote them there) rather than in the host one.
  bool landedOnDevice = false;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;

  // Ensures connections to these peers exist; collective between each pair. Bounded by deadline.
  virtual void connect(const std::vector<int>& peers, const Deadline& deadline) = 0;

  // Sends and receives posted from now on carry (and expect) this stamp.
  virtual void setCallStamp(const CallStamp& stamp) = 0;

  // Messages to one peer are delivered in posting order and must be matched, in the same order,
  // by receives of the same stamp and size: a different stamp throws CallMismatch, a different
  // size an error naming both sizes; with WireChecks::checksum a corrupted part is an error too.
  virtual void postSend(int peer, const void* data, std::size_t bytes, Request* req) = 0;
  virtual void postRecv(int peer, void* data, std::size_t bytes, Request* req) = 0;

  // Moves bytes without blocking and appends finished requests to completed. Returns whether
  // anything moved. Throws kumi::Error when a peer fails.
  virtual bool progress(std::vector<Request*>& completed) = 0;

  // Blocks until progress may be possible, interrupt() is called, or timeoutMs passes.
  virtual void waitForEvents(int timeoutMs) = 0;

  // Thread-safe, for abort: interrupts waitForEvents now, and makes a connect in progress (or a
  // later one) fail with kumiAborted.
  virtual void interrupt() = 0;

  // Before shutdown() after a failure: leaves `story` where the peers look when they see this
  // rank go (the shared-memory control block; a last frame on idle TCP sockets), so that they
  // can name the root cause even when the rendezvous store is gone. Best effort, never blocks.
  virtual void publishFailure(const std::string& story) = 0;

  // Closes every connection so that peers see the failure at once; no further use.
  virtual void shutdown() = 0;

  // Drops posted requests after a failure, so that buffers they point to may be released.
  virtual void cancelAll() = 0;

  // A user buffer that transfers may use without staging copies (RDMA registers it with the
  // NIC). Returns a handle, or 0 where the transport has no use for registrations.
  virtual std::uint64_t registerBuffer(void* /*data*/, std::size_t /*bytes*/) { return 0; }
  // Releases a registration; false if this transport does not know the handle.
  virtual bool deregisterBuffer(std::uint64_t /*handle*/) { return false; }

  // GPUDirect RDMA (only the RDMA transport implements it): device memory of `device` that the
  // NIC may read itself for sends to peers where readsDevice(peer). Returns a handle for
  // deregisterBuffer, or 0 where device bytes must be staged through host memory (the GPU and
  // NIC are too far apart, neither dma-buf nor peer memory, checksums on: said once at INFO).
  // Throws kumi::Error when the NIC refuses a registration the policy chose.
  virtual std::uint64_t registerDeviceBuffer(void* /*data*/, std::size_t /*bytes*/, gpu::Device& /*device*/,
                                             int /*deviceIndex*/) {
    return 0;
  }
  // A send to peer of registered device memory goes from that memory, in any size, and a
  // receive from peer may land in registered device memory (postRecvDevice).
  virtual bool readsDevice(int /*peer*/) const { return false; }
  // A receive whose bytes land in `device` (registered device memory) where the sender can write
  // them there, else in `host`; req->landedOnDevice says which. Where readsDevice(peer).
  virtual void postRecvDevice(int peer, void* host, void* /*device*/, std::size_t bytes, Request* req) {
    postRecv(peer, host, bytes, req);
  }

  // Device messages (only transports between processes of one host implement them: shm).
  // Whether the peer maps device memory sent to it: it has a GPU and said it reads such messages.
  virtual bool pullsDevice(int /*peer*/) const { return false; }
  // Sends device memory by name instead of bytes (only where pullsDevice): complete once the peer
  // has read it, so the memory may then be written again.
  virtual void postSendDevice(int peer, const DeviceMessage& /*m*/, std::size_t /*bytes*/, Request* /*req*/) {
    fail(kumiInternalError, "transport ", name(), " cannot send device memory to rank ", peer);
  }
  // A receive that takes either bytes (landing in data) or, from a sender with device memory, a
  // DeviceMessage (req->device set, nothing in data): the caller reads it and then calls
  // releaseDevice(peer); until then later messages from that peer wait.
  virtual void postRecvAny(int peer, void* data, std::size_t bytes, Request* req) { postRecv(peer, data, bytes, req); }
  virtual void releaseDevice(int peer) {
    fail(kumiInternalError, "transport ", name(), " has no device message of rank ", peer, " to release");
  }

  // A descriptor that becomes readable when waitForEvents(0) would find something, or -1: lets
  // a transport that relies on another (RDMA on its TCP bootstrap) wait on both at once.
  virtual int eventFd() const { return -1; }

  // Withdraws a posted receive from peer that nothing has arrived for yet (a transport that
  // watches another's connection with a standing receive drops it once the peer has left);
  // false if there is no such receive.
  virtual bool cancelRecv(int /*peer*/, Request* /*req*/) { return false; }
};

}  // namespace kumi
