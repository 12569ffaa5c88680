// Whether the NIC reads GPU memory itself (GPUDirect RDMA) or device bytes go through pinned host
// memory, decided per GPU and NIC from how far apart PCIe puts them, as NCCL's GDR level does:
// a NIC that reaches the GPU through a PCIe switch reads it at the link's rate, while a read
// that crosses the CPU's root complex, or the socket interconnect, is often slower than two
// copies through host memory. Pure: the facts come from the topology, the device and the
// environment, so every branch is tested on fixtures.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "gpu/nic_access.hpp"
#include "topology/machine.hpp"

namespace kumi::ib {

// How far apart a GPU and a NIC may be for the NIC to read GPU memory (KUMI_IB_GDR_LEVEL, NCCL's
// names). kumi's topology does not tell one PCIe switch from a chain of them, so PIX reads as PXB.
enum class GdrLevel {
  Loc = 0,   // never: always stage through host memory
  Pxb = 1,   // under a common PCIe switch (the usual HGX layout: each NIC beside two GPUs)
  Phb = 2,   // through the PCIe host bridge of one CPU
  Node = 3,  // across host bridges of one NUMA node
  Sys = 4,   // anywhere, across the socket interconnect too
};

// "LOC", "PIX", "PXB", "PHB", "NODE", "SYS", any case; anything else is an error naming the
// variable and the token.
GdrLevel parseGdrLevel(std::string_view text);
std::string_view gdrLevelName(GdrLevel level);
// The level a topology link stands at.
GdrLevel levelOf(topo::Closeness c);

enum class GdrMechanism {
  Staging,     // device bytes are copied to pinned host memory and sent from there
  DmaBuf,      // the GPU exports a dma-buf, registered with ibv_reg_dmabuf_mr (Linux 5.12+)
  PeerMemory,  // ibv_reg_mr on the device pointer, served by a peer-memory module (nvidia_peermem)
};
std::string_view gdrMechanismName(GdrMechanism m);  // "staging", "dma-buf", "peer memory"

struct GdrInputs {
  std::string gpu;                 // bus id, for the reason
  std::string nic;                 // device name, for the reason
  std::optional<topo::Link> path;  // between them; nullopt when the topology does not place both
  GdrLevel maxLevel = GdrLevel::Pxb;  // KUMI_IB_GDR_LEVEL
  bool dmabufAllowed = true;          // KUMI_IB_DMABUF
  bool checksum = false;              // KUMI_CHECKSUM: the host computes every part's CRC
  gpu::NicAccess support;  // what the GPU and the kernel offer
};

struct GdrChoice {
  GdrMechanism mechanism = GdrMechanism::Staging;
  std::string reason;  // one INFO line: the path, the level and the mechanism or what stopped it
};

GdrChoice chooseGdr(const GdrInputs& in);

}  // namespace kumi::ib
