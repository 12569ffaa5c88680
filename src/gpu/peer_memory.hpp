// Whether the kernel lets an RDMA NIC pin GPU memory through ibv_reg_mr: a peer-memory module
// (NVIDIA's nvidia_peermem, or the older nv_peer_mem with MLNX_OFED) must be loaded. Read from
// sysfs under a root that tests point at a directory of their own.
#pragma once

#include <string>

namespace kumi::gpu {

struct PeerMemoryModule {
  bool loaded = false;
  std::string detail;  // which one is loaded, or what was looked for
};

PeerMemoryModule probePeerMemory(const std::string& sysRoot = "/sys");

}  // namespace kumi::gpu
