// Shared-memory transport between ranks of one host. Each rank owns a segment holding one
// inbound ring per local peer (8 slots); a sender writes into its ring in the receiver's segment.
// Messages that fit the ring are copied through the slots. Larger ones, where the kernel allows
// cross-memory attach, travel as a descriptor: the receiver reads straight from the sender's buffer with
// process_vm_readv (one copy instead of two) and acknowledges through the ring. Idle ranks sleep
// on a futex in their own segment that senders ring, so co-located ranks do not burn the cores
// they share. Set-up is collective among the local ranks, through the store; a pair uses shared
// memory only when both sides mapped each other's segment, so host ids that lie (KUMI_HOSTID)
// fall back to another transport instead of corrupting data.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rendezvous/store.hpp"
#include "transports/transport.hpp"

namespace kumi {

struct ShmOptions {
  int rank = 0;
  std::vector<int> localPeers;        // other ranks of this communicator with the same host id
  std::string dir = "/dev/shm";       // KUMI_SHM_DIR
  std::string segmentPrefix;          // names segments per job, generation and communicator
  std::size_t channelBytes = 512 << 10;  // KUMI_SHM_BUFFER: ring bytes per peer and direction
  bool crossMemoryAttach = true;      // KUMI_SHM_CMA
  WireChecks checks;                  // KUMI_CHECKSUM
};

// The largest message copied through the ring for a ring of channelBytes; larger ones go as
// descriptors where cross-memory attach works (the planner prices them as a rendezvous).
std::size_t shmEagerBytes(std::size_t channelBytes);

class ShmTransport final : public Transport {
 public:
  // Collective among this rank and opt.localPeers. Throws with a clear cause when this host
  // cannot give shared memory (e.g. /dev/shm too small); peers of such a rank fail with its story.
  ShmTransport(const ShmOptions& opt, Store& store, const Deadline& deadline, const std::atomic<bool>* cancel);
  ~ShmTransport() override;

  // Peers reached through shared memory (both sides agreed), and of those, the ones this rank
  // reads from with cross-memory attach.
  const std::vector<int>& connectedPeers() const;
  const std::vector<int>& crossMemoryPeers() const;

  // Device messages (transport.hpp): this rank says it maps device memory sent to it from the
  // GPUs it can read (readableGpus: its own first, then its peer-accessible ones, PCI bus ids;
  // empty: none, nothing changes), and how it reads one into host memory for a plain receive
  // (a blocking copy from the peer's memory). Peers send by name only from a GPU on that list.
  using DevicePuller = std::function<void(void* dst, const DeviceMessage& m, std::size_t bytes)>;
  void enableDevicePull(DevicePuller puller, const std::vector<std::string>& readableGpus);

  const char* name() const override { return "shm"; }
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
  bool pullsDevice(int peer) const override;
  void postSendDevice(int peer, const DeviceMessage& m, std::size_t bytes, Request* req) override;
  void postRecvAny(int peer, void* data, std::size_t bytes, Request* req) override;
  void releaseDevice(int peer) override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The segment name of `rank` under a prefix: "kumi-<job>-g<generation>-<communicator hash>".
std::string shmSegmentPrefix(const std::string& jobId, int generation, const std::string& commId);

}  // namespace kumi
