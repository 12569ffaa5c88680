// Peer processes' device allocations, opened once each (opening costs a driver call and a
// mapping) and closed when evicted or when the cache goes. Keyed by the exporting process and
// its buffer id, which CUDA never gives two allocations: a buffer freed and allocated again at
// the same address is a new entry, and a stale mapping is never used for it. Least recently
// used entries go first beyond `capacity` (an application cycling through many buffers keeps
// at most that many of its peers' allocations mapped). Peers' IPC events, which say when a
// named message has been written, are opened once each the same way.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gpu/device.hpp"

namespace kumi::gpu {

class IpcCache {
 public:
  explicit IpcCache(Device& device, std::size_t capacity = 64) : device_(device), capacity_(capacity) {}
  // The address of offset `offset` in the allocation `handle` of process `pid`, mapped here.
  // Throws kumi::Error when the allocation cannot be opened.
  std::byte* map(int pid, std::uint64_t bufferId, const std::array<std::byte, 64>& handle, std::uint64_t offset);
  // The event `eventId` of process `pid`, opened here. Throws kumi::Error when it cannot be.
  IpcEvent& event(int pid, std::uint64_t eventId, const std::array<std::byte, 64>& handle);
  std::size_t size() const { return entries_.size(); }
  std::uint64_t opens() const { return opens_; }
  std::size_t events() const { return events_.size(); }

 private:
  struct Entry {
    int pid;
    std::uint64_t bufferId;
    Memory base;
    std::uint64_t lastUse;
  };
  struct OpenedEvent {
    int pid;
    std::uint64_t id;
    std::unique_ptr<IpcEvent> event;
    std::uint64_t lastUse;
  };
  Device& device_;
  std::size_t capacity_;
  std::vector<Entry> entries_;
  std::vector<OpenedEvent> events_;
  std::uint64_t clock_ = 0, opens_ = 0;
};

}  // namespace kumi::gpu
