// What an RDMA NIC may use to read a GPU's memory itself (GPUDirect RDMA), as the device and the
// kernel offer it: a dma-buf exported by the driver (ibv_reg_dmabuf_mr), or pinning through a
// peer-memory module (ibv_reg_mr on the device pointer). Plain data: the device fills it, the
// RDMA transport's policy (transports/ib/gdr_policy.hpp) decides with it.
#pragma once

#include <cstdint>
#include <string>

namespace kumi::gpu {

struct NicAccess {
  bool dmabuf = false;
  std::string noDmabuf;  // why not, e.g. "the driver does not export dma-bufs of this GPU's memory"
  bool peerMemory = false;
  std::string noPeerMemory;  // why not, e.g. "no peer-memory module (nvidia_peermem or nv_peer_mem) is loaded"
  // Whether the GPU's own work sees what a NIC wrote into its memory once the host saw the
  // write complete: natively ordered, or after Device::flushNicWrites. Where not, kumi never
  // lets the NIC write receives into GPU memory (sends from it are unaffected).
  bool seesNicWrites = false;
  std::string noNicWrites;
};

// A dma-buf of a range of device memory: fd owned by whoever asked (closed once registered),
// -1 where the range cannot be exported; offset of the range's first byte in it.
struct DmaBuf {
  int fd = -1;
  std::uint64_t offset = 0;
};

}  // namespace kumi::gpu
