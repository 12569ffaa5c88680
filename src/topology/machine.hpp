// What kumi knows about one machine: CPUs, memory, caches and the PCI devices that matter to a
// collective library (GPUs and NICs), with how close each GPU is to each NIC. Plain data, so
// that binding decisions and reports can be computed and tested without hwloc; machine_loader.hpp
// fills it from hwloc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "topology/cpu_list.hpp"

namespace kumi::topo {

struct Package {
  int osIndex = -1;
  CpuList cpus;
};

struct NumaNode {
  int osIndex = -1;
  CpuList cpus;  // empty for memory-only nodes (CXL, HBM, GPU memory exposed as NUMA)
  std::uint64_t memoryBytes = 0;
};

struct Core {
  int package = -1;   // os index of its package, -1 when the machine reports none
  int numaNode = -1;  // os index of the first NUMA node holding all its PUs
  CpuList pus;        // its hardware threads
};

// Caches of one kind, size and level, counted ("L2 2 MiB x48").
struct CacheGroup {
  int level = 0;
  char kind = 'u';  // 'u' unified, 'd' data, 'i' instruction
  std::uint64_t sizeBytes = 0;
  int count = 0;
};

struct PciDevice {
  std::string busId;  // "0000:03:00.0"
  std::uint16_t vendorId = 0;
  std::uint16_t deviceId = 0;
  std::uint16_t classId = 0;  // class and subclass, e.g. 0x0302 (3D controller)
  std::string vendorName;     // names only where the source records them (XML files)
  std::string name;
};

// How close two I/O devices are: the deepest object of the hwloc tree above both. Smaller is
// closer; two devices in one PCI device count as the same switch.
enum class Closeness { PciSwitch = 0, HostBridge = 1, NumaNode = 2, Package = 3, Machine = 4 };

struct Link {
  Closeness level = Closeness::Machine;
  int depth = 0;  // depth of the common ancestor (machine = 0): deeper is closer within a level
};

struct Gpu {
  std::string busId;  // empty for a device hwloc does not place on PCI
  double pcieGBps = 0;  // its PCIe link, one direction (hwloc's link speed); 0 when unknown
  std::uint16_t vendorId = 0;
  std::uint16_t deviceId = 0;
  std::string name;
  std::vector<std::string> osDevices;  // hwloc's names for it (cuda0, nvml0, ...), often none
  int numaNode = -1;                   // os index, -1 when not local to exactly one node
  CpuList closeCpus;                   // PUs of the smallest CPU object it hangs off
  std::vector<Link> nics;              // closeness to every NIC, in NIC order
  int nearestNic = -1;                 // index into Machine::nics, -1 when there is none
};

// One network adapter port; OS devices of one PCI function are one NIC (mlx5_0 and its netdev).
struct OsDevice {
  std::string name;
  bool rdma = false;  // an OpenFabrics (verbs) device rather than a network interface
};

struct Nic {
  std::string name;  // the RDMA device's name when it has one (mlx5_0), else the interface's
  std::string busId;
  std::uint16_t vendorId = 0;
  std::uint16_t deviceId = 0;
  std::vector<OsDevice> osDevices;
  bool rdma = false;
  int numaNode = -1;
  CpuList closeCpus;
};

// How one GPU reaches another of its machine (a row of `nvidia-smi topo -m`).
enum class GpuLinkKind { Self, NvLink, NvSwitch, Pcie };

struct GpuPeer {
  GpuLinkKind kind = GpuLinkKind::Pcie;
  double gbps = 0;  // one direction: NVLink lanes x lane speed, the NVSwitch share, or the narrower PCIe link (0: unknown)
  int lanes = 0;    // direct NVLink links (0 through a switch or over PCIe)
  Link pci;         // their common PCIe ancestor, whatever the kind
};

struct Machine {
  std::string source;    // "this machine", "xml:PATH" or "synthetic:DESCRIPTION"
  std::string hostName;  // as recorded by hwloc, may be empty
  std::vector<Package> packages;
  std::vector<NumaNode> numaNodes;  // by os index
  std::vector<Core> cores;          // in hwloc's logical order
  int puCount = 0;
  std::vector<CacheGroup> caches;       // outermost level first
  std::vector<PciDevice> pciDevices;    // by bus id
  std::vector<Gpu> gpus;                // by bus id: GPU i is CUDA device i under CUDA_DEVICE_ORDER=PCI_BUS_ID
  std::vector<Nic> nics;                // by bus id, devices without one last
  std::vector<std::vector<GpuPeer>> gpuPeers;  // [a][b], GPU order; empty without GPUs
  std::string nvlinkSource;  // where NVLink facts came from ("hwloc NVLinkBandwidth", "NVML"), empty: none
};

std::string_view gpuLinkKindName(GpuLinkKind k);  // "self", "nvlink", "nvswitch", "pcie"

std::string_view closenessName(Closeness c);  // "pci_switch", "host_bridge", ...

// The rank order of NICs seen from one GPU: level, then depth, then NIC order. True when a is
// strictly closer than b (ties are broken by the caller's order, so this is a strict weak order).
bool closer(const Link& a, const Link& b);

// NIC indices, closest to GPU `gpu` first.
std::vector<int> nicsByCloseness(const Machine& machine, int gpu);

// Sets each GPU's nearestNic from its links; the loader calls it, fixtures built by hand may too.
void rankNics(Machine& machine);

// Cores of one NUMA node (by os index), in logical order.
std::vector<const Core*> coresOfNumaNode(const Machine& machine, int numaOsIndex);

// Bytes of the outermost data (or unified) cache level, all instances together; 0 if hwloc saw
// no cache. The planner's cost model asks whether a call's buffers fit in it.
std::uint64_t lastLevelCacheBytes(const Machine& machine);

}  // namespace kumi::topo
