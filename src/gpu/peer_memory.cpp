#include "gpu/peer_memory.hpp"

#include <sys/stat.h>

#include <array>
#include <string_view>

namespace kumi::gpu {
namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

PeerMemoryModule probePeerMemory(const std::string& sysRoot) {
  // The module itself, then the peer client it registers with the (MLNX_OFED) peer-memory core:
  // a module built into the kernel has no /sys/module entry with parameters but still registers.
  constexpr std::array<std::string_view, 2> kModules{"nvidia_peermem", "nv_peer_mem"};
  for (std::string_view m : kModules)
    if (exists(sysRoot + "/module/" + std::string(m))) return {true, std::string(m) + " is loaded"};
  if (exists(sysRoot + "/kernel/mm/memory_peers/nv_mem/version"))
    return {true, "the nv_mem peer-memory client is registered"};
  return {false, "no peer-memory module (nvidia_peermem or nv_peer_mem) is loaded"};
}

}  // namespace kumi::gpu
