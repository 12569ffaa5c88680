#include "gpu/ipc_cache.hpp"

#include <algorithm>

namespace kumi::gpu {

std::byte* IpcCache::map(int pid, std::uint64_t bufferId, const std::array<std::byte, 64>& handle,
                         std::uint64_t offset) {
  ++clock_;
  for (Entry& e : entries_)
    if (e.pid == pid && e.bufferId == bufferId) {
      e.lastUse = clock_;
      return e.base.get() + offset;
    }
  Memory base = device_.openIpc(handle);  // throws before the cache changes
  ++opens_;
  if (entries_.size() >= capacity_) {
    auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                   [](const Entry& a, const Entry& b) { return a.lastUse < b.lastUse; });
    entries_.erase(oldest);  // closes its mapping
  }
  entries_.push_back({pid, bufferId, std::move(base), clock_});
  return entries_.back().base.get() + offset;
}

IpcEvent& IpcCache::event(int pid, std::uint64_t eventId, const std::array<std::byte, 64>& handle) {
  ++clock_;
  for (OpenedEvent& e : events_)
    if (e.pid == pid && e.id == eventId) {
      e.lastUse = clock_;
      return *e.event;
    }
  std::unique_ptr<IpcEvent> opened = device_.openIpcEvent(handle);  // throws before the cache changes
  // A peer keeps one event per device slot of its (a few dozen); bounded all the same, least
  // recently used out first.
  if (events_.size() >= 16 * capacity_) {
    auto oldest = std::min_element(events_.begin(), events_.end(),
                                   [](const OpenedEvent& a, const OpenedEvent& b) { return a.lastUse < b.lastUse; });
    events_.erase(oldest);
  }
  events_.push_back({pid, eventId, std::move(opened), clock_});
  return *events_.back().event;
}

}  // namespace kumi::gpu
