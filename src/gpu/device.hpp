// The GPU as collectives on device buffers use it: what kind of memory a pointer is, a queue of
// asynchronous work of kumi's own (a CUDA stream), pinned host memory for staging, and the two
// points where a call meets the caller's stream (it starts after the stream's earlier work; the
// stream's later work waits for it). CUDA implements it (gpu/cuda_device.cpp); tests put a CPU
// imitation in its place (tests/common/fake_device.hpp) so that the ordering logic of the device
// path runs on machines without a GPU. Nothing here names a CUDA type.
#pragma once

#include <kumi/kumi.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpu/memory_kind.hpp"
#include "gpu/nic_access.hpp"

namespace kumi::gpu {

// Memory allocated by a Device; freed by the deleter it carries.
using Memory = std::shared_ptr<std::byte>;

// A point in a caller's stream: the work enqueued on it so far.
class StreamMark {
 public:
  virtual ~StreamMark() = default;
};

// A point in one process's work queue that a queue of another process on the host can wait for,
// with no host in between (a CUDA IPC event: cudaEventInterprocess). WorkQueue::record moves the
// point to the work queued so far; a wait queued after that record returned (in host time,
// anywhere) holds its queue until the marked work has run. A process that waits must have
// queued its wait before the next record of the same event (kumi keeps one per device slot, and a
// slot is written again only after its reader released it).
class IpcEvent {
 public:
  virtual ~IpcEvent() = default;
  // What another process opens (Device::openIpcEvent), and an id no other event of this process
  // ever has (the cache of opened events is keyed by it).
  virtual const std::array<std::byte, 64>& handle() const = 0;
  virtual std::uint64_t id() const = 0;
  // Blocks the host until the work marked by the latest record has run (a host-side reader).
  virtual void synchronize() = 0;
};

// Work on one device in issue order. Each call enqueues and returns a ticket at once; tickets
// finish in the order they were given.
class WorkQueue {
 public:
  using Ticket = std::uint64_t;
  virtual ~WorkQueue() = default;
  // bytes from src to dst; either may be device memory or pinned host memory.
  virtual Ticket copy(void* dst, const void* src, std::size_t bytes) = 0;
  // dst[i] = a[i] op b[i] (gpu/reduce_device.hpp's semantics); b may be pinned host memory.
  virtual Ticket reduce(kumiDataType_t type, kumiRedOp_t op, void* dst, const void* a, const void* b,
                        std::size_t n) = 0;
  virtual Ticket divide(kumiDataType_t type, void* dst, std::size_t n, std::uint64_t divisor) = 0;
  // The last ticket whose work is done (0 before any); never blocks. Throws kumi::Error when the
  // device reported a failure.
  virtual Ticket finished() = 0;
  // Work enqueued from now on starts only after what the mark's stream held when it was made.
  virtual void waitFor(const StreamMark& mark) = 0;
  // Moves the event (this process's, of this queue's device) to the work enqueued so far.
  virtual void record(IpcEvent& event) = 0;
  // Work enqueued from now on starts only after what the event's latest record marked (an event
  // of this process's or one opened from another's).
  virtual void waitFor(const IpcEvent& event) = 0;
  // Blocks until everything enqueued has finished (before memory it uses is freed); never throws.
  virtual void drain() = 0;
};

// Where a communicator's calls release the callers' streams. Calls are numbered 1, 2, ... in
// the order they were made; hold(stream, k) makes the stream's later work wait until release(j)
// with j >= k (compared cyclically, so the count may wrap). One per communicator.
class StreamGates {
 public:
  virtual ~StreamGates() = default;
  virtual void hold(void* stream, std::uint32_t call) = 0;  // from the calling thread
  virtual void release(std::uint32_t call) = 0;             // from any thread; never lowers
};

// Device memory of one process made reachable from another of the same host (CUDA IPC): the
// opaque handle of its allocation, an id that never names another allocation (CUDA's buffer id:
// an address freed and allocated again gets a new one), and where the pointer lies in it.
struct IpcRef {
  std::array<std::byte, 64> handle{};
  std::uint64_t bufferId = 0;
  std::uint64_t offset = 0;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual MemoryKind kindOf(const void* p) = 0;
  // The device the calling thread uses (CUDA's current device), and making one current.
  virtual int current() = 0;
  virtual void use(int device) = 0;
  virtual std::unique_ptr<WorkQueue> newQueue(int device) = 0;
  virtual std::unique_ptr<StreamGates> newGates(int device) = 0;
  virtual Memory hostMemory(std::size_t bytes) = 0;  // pinned, reachable from every device
  virtual Memory deviceMemory(int device, std::size_t bytes) = 0;
  // From the calling thread, at the call: what the stream holds so far.
  virtual std::unique_ptr<StreamMark> mark(void* stream) = 0;
  // Blocks until the stream's work is done (host buffers given with a stream).
  virtual void synchronize(void* stream) = 0;
  // For tools and tests: a stream of their own (destroyed with the returned handle), and a
  // blocking copy between any two kinds of memory.
  virtual std::shared_ptr<void> newStream() = 0;
  virtual void copyNow(void* dst, const void* src, std::size_t bytes) = 0;
  // The allocation holding device pointer p, for another process to open; nullopt where it
  // cannot be shared (memory from a stream-ordered pool or the VMM API without a shareable
  // handle, host memory). Cheap to repeat: implementations cache by allocation.
  virtual std::optional<IpcRef> exportIpc(const void* p) = 0;
  // Maps another process's allocation (exportIpc's handle) on this process's current device;
  // the mapping's base, closed by the deleter. Throws kumi::Error when it cannot be opened.
  virtual Memory openIpc(const std::array<std::byte, 64>& handle) = 0;
  // An event of `device` that other processes of the host may open and wait for; null where
  // the device cannot share events (then kumi orders names through the host). Lives as long as
  // the returned pointer: a peer must not be waiting on it when it goes.
  virtual std::unique_ptr<IpcEvent> newIpcEvent(int device) = 0;
  // Another process's event (IpcEvent::handle), opened here. Throws kumi::Error when it cannot be.
  virtual std::unique_ptr<IpcEvent> openIpcEvent(const std::array<std::byte, 64>& handle) = 0;
  // PCI bus ids ("0000:07:00.0"): of `device`, first, then of every other GPU this process sees
  // whose memory a kernel on `device` can read (peer access). A peer process whose GPU is not in
  // the list (not visible here, CUDA_VISIBLE_DEVICES, or no P2P path) must not send by name.
  virtual std::vector<std::string> readableGpus(int device) = 0;
  // GPUDirect RDMA: how a NIC may reach `device`'s memory, a dma-buf of the page-aligned range
  // [p, p + bytes) (fd -1 where it cannot be exported), and the address a peer-memory
  // registration pins for device pointer p (p itself on CUDA, where nvidia_peermem resolves it).
  virtual NicAccess nicAccess(int device) = 0;
  virtual DmaBuf exportDmabuf(const void* p, std::size_t bytes) = 0;
  virtual void* peerMemoryAddress(void* p) { return p; }
  // Makes NIC writes into `device`'s memory that the host saw complete visible to the work queued
  // after this call (cudaDeviceFlushGPUDirectRDMAWrites where the GPU does not order them itself).
  virtual void flushNicWrites(int device) = 0;
};

// The process's device: the one installed (tests), else CUDA's when a GPU can be used; null
// when there is none (why says why, if asked).
Device* device(std::string* why = nullptr);
// Puts d in place of the CUDA device for the rest of the process (tests only).
void installDevice(std::shared_ptr<Device> d);

}  // namespace kumi::gpu
