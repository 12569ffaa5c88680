// Which RDMA port carries each local rank's traffic between hosts: its rail. A rank drives GPU l
// when it is local rank l (as launchers set CUDA_VISIBLE_DEVICES or the device index), and its
// bytes should leave by the NIC closest to that GPU: through the same PCIe switch, a transfer
// never crosses the CPU's root complex or the socket interconnect. With more GPUs than NICs
// (8 and 4 on our users' nodes) each NIC takes at most ceil(ranks / NICs) ranks, so that no
// NIC carries three rails while another carries one.
#pragma once

#include <string>
#include <vector>

#include "topology/machine.hpp"

namespace kumi::topo {

struct RailChoice {
  int port = 0;        // index into the ports given
  std::string reason;  // for the INFO log: "nearest to GPU 3 (pci_switch)", "round robin: ..."
};

// ports: the usable RDMA devices of this host (names as ibv_get_device_name gives them), in
// preference order. Ranks beyond the GPUs, or on a machine whose NICs hwloc does not place,
// go round-robin over the ports. One entry per local rank.
std::vector<RailChoice> assignRails(const Machine& machine, const std::vector<std::string>& ports, int localSize);

// How each GPU of the machine reaches the NIC of RDMA port `port` (its verbs device name), for
// the GPUDirect RDMA decision; empty when hwloc does not place that NIC.
struct GpuPath {
  std::string busId;
  Link link;
};
std::vector<GpuPath> gpuPathsTo(const Machine& machine, const std::string& port);

}  // namespace kumi::topo
