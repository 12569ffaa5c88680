// The GPU-to-GPU links of one machine, from an NVLink bandwidth matrix in the form hwloc's NVML
// component records it ("NVLinkBandwidth": GPUs first, then the other ends of their links,
// NVSwitches or CPU ports; MB/s in one direction), or built from NVML by kumi itself where hwloc
// has no NVML support. Plain data and arithmetic, so that fixtures test it without a GPU.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "topology/machine.hpp"

namespace kumi::topo {

struct NvLinkEnd {
  std::string busId;      // "0000:07:00.0"
  bool nvswitch = false;  // a switch port; other non-GPU ends (a CPU's NVLink port) carry no GPU traffic
};

struct NvLinkMatrix {
  std::vector<NvLinkEnd> ends;
  std::vector<std::uint64_t> mbps;  // ends x ends, row-major; the diagonal is ignored
  std::vector<int> lanes;           // ends x ends links where the source counts them (NVML); empty: derived
  std::string source;               // "hwloc NVLinkBandwidth", "NVML"
};

// One direction of one NVLink link of a version (1-5), in MB/s; 0 for a version not known.
std::uint64_t nvlinkLaneMBps(unsigned version);

// "00000000:07:00.0" (NVML), "0000:07:00.0" (hwloc) -> "0000:07:00.0"; empty if not a bus id.
std::string canonicalBusId(std::string_view id);

// Fills m.gpuPeers: PCIe between every pair (from `pci`, the common-ancestor links the loader
// computed, [a][b] in GPU order), then NVLink where `nvlink` (if any) joins two GPUs directly,
// or through NVSwitches (the narrower of the two GPUs' switch bandwidths). Ends that match no
// GPU of m (and are not switches) are ignored.
void setGpuPeers(Machine& m, const std::vector<std::vector<Link>>& pci, const NvLinkMatrix* nvlink);

}  // namespace kumi::topo
