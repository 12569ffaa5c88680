// Memory registrations of user buffers, for zero-copy transfers. Registering pins pages and costs
// tens of microseconds per megabyte, so a registration is made once and found again by address
// for every transfer from the buffer. Entries are counted: the last deregistration removes the
// entry and releases the registration, so that a later buffer at the same addresses (the
// allocator reuses them) is registered anew instead of matching a registration whose pages the
// NIC still holds from the freed buffer.
//
// A program that frees a registered buffer without deregistering it would leave an entry whose
// pages are no longer the buffer's; invalidate() (fed by UnmapWatch) makes such entries stale:
// never found or shared again, released when their last handle is removed.
//
// The cache is pure bookkeeping: the registrar (ibv_reg_mr in the transport, a fake in tests)
// makes registrations, and the owner it returns releases one when the entry goes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace kumi::ib {

struct Registration {
  std::uintptr_t begin = 0, end = 0;  // registered bytes: [begin, end), page-aligned
  std::uint32_t lkey = 0, rkey = 0;
};

class RegistrationCache {
 public:
  using Owner = std::shared_ptr<void>;  // releases the registration when the last copy goes
  using Registrar = std::function<std::pair<Registration, Owner>(std::uintptr_t begin, std::size_t bytes)>;

  // Handles count up from firstHandle, so that two caches of one transport never share one.
  explicit RegistrationCache(Registrar registrar, std::uint64_t firstHandle = 1)
      : registrar_(std::move(registrar)), nextHandle_(firstHandle) {}

  // Registers [data, data + bytes) rounded out to whole pages, or takes another reference on an
  // entry that already covers it. Returns a handle for remove(); never 0.
  std::uint64_t add(const void* data, std::size_t bytes);
  // Drops the reference that add() returned; the last one releases the registration. False if
  // the handle is unknown (already removed).
  bool remove(std::uint64_t handle);
  // The entry covering [data, data + bytes) whole, or nullptr.
  const Registration* find(const void* data, std::size_t bytes) const;
  // Entries overlapping [begin, end) no longer describe the memory there (it was unmapped, moved
  // or emptied). Returns how many became stale.
  std::size_t invalidate(std::uintptr_t begin, std::uintptr_t end);
  std::size_t entries() const { return entries_.size(); }
  std::size_t staleEntries() const;

 private:
  struct Entry {
    Registration reg;
    Owner owner;
    std::vector<std::uint64_t> handles;
    bool stale = false;
  };
  Registrar registrar_;
  std::vector<Entry> entries_;  // few: users register a handful of long-lived buffers
  std::uint64_t nextHandle_;
};

}  // namespace kumi::ib
