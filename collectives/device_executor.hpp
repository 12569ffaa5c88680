// Runs one rank's prepared schedule on device buffers: the same schedules and transports as the
// host executor, with every read and write of the caller's buffers done by the device's work
// queue (a CUDA stream of kumi's own). Bytes cross between ranks through pinned host bounce
// buffers: a send is copied out of the device and then posted; a receive lands in a bounce
// buffer and is copied in (or reduced, the kernel reading the pinned buffer directly) on the
// device. The queue runs in order, so a step may be issued as soon as the steps it depends on
// were issued: the host waits for the device only where it must touch a bounce buffer (a copy
// out before its send, a bounce buffer's consumer before reuse). The host never dereferences a
// device pointer.
//
// Between processes of one host (CUDA IPC, given an IpcCache): a send whose peer maps device
// memory (Transport::pullsDevice) is copied into a device slot of an exported arena, the slot's
// IPC event recorded after the copy, and the name sent at once; the receiver's queue waits for
// the event (GPU to GPU, no host in between) and copies or reduces straight from the slot (one
// pass over NVLink or PCIe, no host memory), and the receiver releases it once its queue has
// read it, which frees the slot. Without IPC events the name goes once the host saw the copy run. The copy
// into the slot is on the sender's own memory (HBM, many times the link's speed) and lets the
// source be written again at once, as with bounce buffers. Peers that do not map, or an arena
// that cannot be exported, take the pinned bounce buffers.
//
// Between hosts over RDMA with GPUDirect (Transport::readsDevice): the arena, with as many slots
// again for receives, is registered with the NIC once. A send is copied into a device slot and
// posted from it, so the NIC reads GPU memory itself; a receive offers a device slot besides its
// bounce buffer, and when the NIC wrote the bytes there it is copied or reduced in from GPU
// memory. Where the RDMA transport chose staging (or none is used), the bounce buffers.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "collectives/executor.hpp"
#include "gpu/device.hpp"
#include "gpu/ipc_cache.hpp"

namespace kumi {

// Where a named message's bytes lie here: the sender's own address when it is a rank of this
// process, else its allocation mapped through the cache.
const std::byte* namedBytes(const DeviceMessage& m, gpu::IpcCache& cache);
// The event after which the named message's bytes are in the sender's slot: the sender's own
// object when it is a rank of this process, else the peer's event opened through the cache.
gpu::IpcEvent& writtenEvent(const DeviceMessage& m, gpu::IpcCache& cache);

class DeviceExecutor {
 public:
  DeviceExecutor(gpu::Device& device, int deviceIndex) : device_(device), deviceIndex_(deviceIndex) {}
  // Releases the NIC's registration of the device slots (the transport outlives the executor).
  ~DeviceExecutor();
  DeviceExecutor(const DeviceExecutor&) = delete;
  DeviceExecutor& operator=(const DeviceExecutor&) = delete;
  // Returns when every step, every transfer and all the queue work of the call have finished.
  // Throws kumi::Error as Executor::run does; on a throw, queue work may still be in flight
  // (the caller drains the queue before the buffers are reused).
  void run(const PreparedSchedule& ps, const Buffers& bufs, Transport* transport, const ExecParams& params,
           gpu::WorkQueue& queue);
  // Device memory for the schedule's scratch, kept across calls.
  std::byte* scratch(std::size_t bytes);
  // Peers' memory opened through this cache (null: no transfers by name). Set before run.
  void usePeerMemory(gpu::IpcCache* cache) { ipc_ = cache; }

 private:
  // A bounce buffer in the pinned arena.
  std::byte* slot(int index) { return pinned_.get() + static_cast<std::size_t>(index) * slotBytes_; }
  std::byte* deviceSlot(int index) { return deviceArena_.get() + static_cast<std::size_t>(index) * slotBytes_; }

  gpu::Device& device_;
  int deviceIndex_;
  gpu::IpcCache* ipc_ = nullptr;
  gpu::Memory scratch_;
  std::size_t scratchBytes_ = 0;
  gpu::Memory pinned_;  // every channel's bounce buffers, slotBytes_ each
  std::size_t pinnedBytes_ = 0;
  std::size_t slotBytes_ = 0;
  gpu::Memory deviceArena_;  // device slots of sends by name, slotBytes_ each
  std::size_t deviceArenaBytes_ = 0;
  std::optional<gpu::IpcRef> arenaName_;
  // The arena's registration for GPUDirect RDMA, with the transport that holds it; asked once
  // per arena, and never again once a transport said it stages.
  Transport* nicTransport_ = nullptr;
  std::uint64_t nicHandle_ = 0;
  bool nicAsked_ = false;
  bool nicRefused_ = false;
  bool nicWarned_ = false;
  bool nicWrites_ = false;  // the GPU sees what the NIC writes (receives may land in device slots)
  std::vector<std::vector<int>> recvDeviceFree_;  // per channel: device slots receives may land in (NIC)
  std::vector<int> recvDeviceSlotOf_;             // per step
  // Each device slot's IPC event, made on first use (null, and never asked again, where the
  // device has none: names then wait for the host to see their copy finish).
  std::vector<std::unique_ptr<gpu::IpcEvent>> slotEvents_;
  bool eventsOff_ = false;
  gpu::IpcEvent* slotEvent(int slot);
  void dropNicRegistration();
  void registerWithNic(Transport* tp, std::size_t bytes);
  std::vector<std::vector<int>> deviceFree_;  // per channel
  // Per-run state, kept to reuse capacity.
  std::vector<std::uint32_t> remaining_;
  std::vector<char> state_;
  std::vector<char> received_;
  std::vector<char> over_;
  std::vector<std::size_t> head_;
  std::vector<std::uint32_t> unposted_;  // per channel: sends waiting in fifo_ to be posted
  std::vector<Request> requests_;
  std::vector<int> slotOf_;
  std::vector<char> direct_;                 // per step: by name (kByName) or from a device slot by the NIC (kByNic)
  std::vector<DeviceMessage> names_;         // per step: what a direct send sends
  std::vector<std::vector<int>> freeSlots_;  // per channel
  std::vector<Request*> completed_;
  std::vector<std::uint32_t> work_;
  struct Waiting {  // queue work the host must see finish before it acts
    gpu::WorkQueue::Ticket ticket;
    std::uint32_t step;
  };
  std::vector<Waiting> fifo_;
  std::size_t fifoHead_ = 0;
};

}  // namespace kumi
