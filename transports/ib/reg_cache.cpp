#include "transports/ib/reg_cache.hpp"

#include <unistd.h>

#include <algorithm>

#include "core/error.hpp"

namespace kumi::ib {

namespace {

std::uintptr_t pageSize() {
  static const auto p = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

}  // namespace

std::uint64_t RegistrationCache::add(const void* data, std::size_t bytes) {
  KUMI_REQUIRE_ARG(data != nullptr && bytes > 0, "registering a buffer needs an address and a size, got ", data,
                   " and ", bytes, " bytes");
  const std::uint64_t handle = nextHandle_++;
  const auto p = reinterpret_cast<std::uintptr_t>(data);
  KUMI_REQUIRE_ARG(bytes <= UINTPTR_MAX - p, "buffer at ", data, " of ", bytes, " bytes wraps the address space");
  for (Entry& e : entries_)
    if (!e.stale && e.reg.begin <= p && p + bytes <= e.reg.end) {
      e.handles.push_back(handle);
      return handle;
    }
  const std::uintptr_t begin = p & ~(pageSize() - 1);
  const std::uintptr_t end = (p + bytes + pageSize() - 1) & ~(pageSize() - 1);
  auto [reg, owner] = registrar_(begin, end - begin);
  entries_.push_back({reg, std::move(owner), {handle}});
  return handle;
}

bool RegistrationCache::remove(std::uint64_t handle) {
  for (auto e = entries_.begin(); e != entries_.end(); ++e) {
    auto h = std::find(e->handles.begin(), e->handles.end(), handle);
    if (h == e->handles.end()) continue;
    e->handles.erase(h);
    if (e->handles.empty()) entries_.erase(e);  // releases the registration
    return true;
  }
  return false;
}

const Registration* RegistrationCache::find(const void* data, std::size_t bytes) const {
  const auto p = reinterpret_cast<std::uintptr_t>(data);
  for (const Entry& e : entries_)
    if (!e.stale && e.reg.begin <= p && p + bytes <= e.reg.end) return &e.reg;
  return nullptr;
}

std::size_t RegistrationCache::invalidate(std::uintptr_t begin, std::uintptr_t end) {
  std::size_t n = 0;
  for (Entry& e : entries_)
    if (!e.stale && e.reg.begin < end && begin < e.reg.end) {
      e.stale = true;
      ++n;
    }
  return n;
}

std::size_t RegistrationCache::staleEntries() const {
  return static_cast<std::size_t>(std::count_if(entries_.begin(), entries_.end(), [](const Entry& e) { return e.stale; }));
}

}  // namespace kumi::ib
