#include "topology/machine_loader.hpp"

#include <hwloc.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/log.hpp"
#include "topology/gpu_fabric.hpp"
#include "topology/nvml_probe.hpp"

namespace kumi::topo {
namespace {

struct TopologyDeleter {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};
using TopologyPtr = std::unique_ptr<hwloc_topology, TopologyDeleter>;

TopologyPtr newTopology() {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) failErrno("hwloc_topology_init");
  TopologyPtr topo(raw);
  // GPUs and NICs are I/O objects, which hwloc drops unless asked; "important" keeps GPUs, NICs,
  // storage and the bridges above them, and skips the host's many uninteresting functions.
  if (hwloc_topology_set_io_types_filter(topo.get(), HWLOC_TYPE_FILTER_KEEP_IMPORTANT) != 0)
    failErrno("hwloc_topology_set_io_types_filter");
  // Instruction caches are dropped by default; lstopo shows them, and so does kumi-topo.
  if (hwloc_topology_set_icache_types_filter(topo.get(), HWLOC_TYPE_FILTER_KEEP_ALL) != 0)
    failErrno("hwloc_topology_set_icache_types_filter");
  return topo;
}

CpuList cpusOf(hwloc_const_bitmap_t set) {
  CpuList out;
  // An infinite set (never an object's cpuset in practice) would never end the walk.
  if (set == nullptr || hwloc_bitmap_weight(set) < 0) return out;
  for (int i = hwloc_bitmap_first(set); i >= 0; i = hwloc_bitmap_next(set, i)) out.push_back(i);
  return out;
}

std::string infoOf(hwloc_obj_t obj, const char* name) {
  const char* v = hwloc_obj_get_info_by_name(obj, name);
  return v ? v : "";
}

std::string busIdOf(hwloc_obj_t pci) {
  const auto& a = pci->attr->pcidev;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%01x", a.domain, a.bus, a.dev, a.func);
  return buf;
}

// The NUMA node an I/O object (or a CPU object) is local to, when it is exactly one.
int numaNodeOf(hwloc_topology_t topo, hwloc_obj_t obj) {
  hwloc_obj_t cpuSide = hwloc_get_non_io_ancestor_obj(topo, obj);
  if (cpuSide == nullptr || cpuSide->nodeset == nullptr || hwloc_bitmap_weight(cpuSide->nodeset) != 1)
    return -1;
  return hwloc_bitmap_first(cpuSide->nodeset);
}

CpuList closeCpusOf(hwloc_topology_t topo, hwloc_obj_t obj) {
  hwloc_obj_t cpuSide = hwloc_get_non_io_ancestor_obj(topo, obj);
  return cpuSide ? cpusOf(cpuSide->cpuset) : CpuList{};
}

int depthOf(hwloc_obj_t obj) {
  int d = 0;
  for (hwloc_obj_t p = obj->parent; p != nullptr; p = p->parent) ++d;
  return d;
}

// hwloc_get_common_ancestor_obj compares level depths, which I/O objects do not have; walk
// parent pointers instead.
hwloc_obj_t commonAncestor(hwloc_obj_t a, hwloc_obj_t b) {
  std::vector<hwloc_obj_t> chain;
  for (hwloc_obj_t p = a; p != nullptr; p = p->parent) chain.push_back(p);
  for (hwloc_obj_t p = b; p != nullptr; p = p->parent)
    if (std::find(chain.begin(), chain.end(), p) != chain.end()) return p;
  return nullptr;
}

Link linkBetween(hwloc_topology_t topo, hwloc_obj_t a, hwloc_obj_t b, int packageCount) {
  hwloc_obj_t common = commonAncestor(a, b);
  if (common == nullptr) return {Closeness::Machine, 0};
  Link link{Closeness::Machine, depthOf(common)};
  switch (common->type) {
    case HWLOC_OBJ_BRIDGE:
      link.level = common->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_HOST ? Closeness::HostBridge
                                                                               : Closeness::PciSwitch;
      return link;
    case HWLOC_OBJ_PCI_DEVICE:
    case HWLOC_OBJ_OS_DEVICE:
      link.level = Closeness::PciSwitch;
      return link;
    default:
      break;
  }
  if (common->nodeset != nullptr && hwloc_bitmap_weight(common->nodeset) == 1)
    link.level = Closeness::NumaNode;
  else if (common->type == HWLOC_OBJ_PACKAGE || packageCount <= 1 ||
           hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_PACKAGE, common) != nullptr)
    link.level = Closeness::Package;
  return link;
}

bool isPciGpuByClass(hwloc_obj_t pci) {
  const auto& a = pci->attr->pcidev;
  bool display = a.class_id == 0x0300 || a.class_id == 0x0302;  // VGA, 3D controller
  return display && (a.vendor_id == 0x10de || a.vendor_id == 0x1002);
}

// A compute device hwloc found through a GPU library (cuda0, nvml0, rsmi0, opencl0d0, ze0). Bare
// DRM nodes (card0, renderD128) are left out: every server's BMC display controller has one.
bool isComputeOsDevice(hwloc_obj_t osdev) {
  auto type = osdev->attr->osdev.type;
  if (type == HWLOC_OBJ_OSDEV_COPROC) return true;
  if (type != HWLOC_OBJ_OSDEV_GPU || osdev->name == nullptr) return false;
  std::string_view name = osdev->name;
  return !(name.starts_with("card") || name.starts_with("renderD") || name.starts_with("controlD"));
}

bool isNicOsDevice(hwloc_obj_t osdev) {
  auto type = osdev->attr->osdev.type;
  return type == HWLOC_OBJ_OSDEV_NETWORK || type == HWLOC_OBJ_OSDEV_OPENFABRICS;
}

std::vector<hwloc_obj_t> osDevicesBelow(hwloc_obj_t obj) {
  std::vector<hwloc_obj_t> out;
  for (hwloc_obj_t c = obj->io_first_child; c != nullptr; c = c->next_sibling)
    if (c->type == HWLOC_OBJ_OS_DEVICE) out.push_back(c);
  return out;
}

// Devices without a bus id sort after those with one, then by name.
auto orderKey(const std::string& busId, const std::string& name) {
  return std::make_tuple(busId.empty(), busId, name);
}

void loadCpus(hwloc_topology_t topo, Machine& m) {
  for (hwloc_obj_t o = nullptr; (o = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PACKAGE, o)) != nullptr;)
    m.packages.push_back({static_cast<int>(o->os_index), cpusOf(o->cpuset)});
  for (hwloc_obj_t o = nullptr; (o = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, o)) != nullptr;)
    m.numaNodes.push_back({static_cast<int>(o->os_index), cpusOf(o->cpuset), o->attr->numanode.local_memory});
  std::sort(m.numaNodes.begin(), m.numaNodes.end(),
            [](const NumaNode& a, const NumaNode& b) { return a.osIndex < b.osIndex; });
  m.puCount = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);

  // Some platforms report no cores; each PU then stands for one.
  hwloc_obj_type_t coreType = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
  for (hwloc_obj_t o = nullptr; (o = hwloc_get_next_obj_by_type(topo, coreType, o)) != nullptr;) {
    Core core;
    core.pus = cpusOf(o->cpuset);
    if (core.pus.empty()) continue;
    if (hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_PACKAGE, o))
      core.package = static_cast<int>(pkg->os_index);
    for (const NumaNode& n : m.numaNodes)
      if (!n.cpus.empty() && containsAll(n.cpus, core.pus)) {
        core.numaNode = n.osIndex;
        break;
      }
    m.cores.push_back(std::move(core));
  }

  const hwloc_obj_type_t cacheTypes[] = {HWLOC_OBJ_L5CACHE, HWLOC_OBJ_L4CACHE, HWLOC_OBJ_L3CACHE,
                                         HWLOC_OBJ_L2CACHE, HWLOC_OBJ_L1CACHE, HWLOC_OBJ_L3ICACHE,
                                         HWLOC_OBJ_L2ICACHE, HWLOC_OBJ_L1ICACHE};
  for (hwloc_obj_type_t type : cacheTypes) {
    for (hwloc_obj_t o = nullptr; (o = hwloc_get_next_obj_by_type(topo, type, o)) != nullptr;) {
      const auto& a = o->attr->cache;
      char kind = a.type == HWLOC_OBJ_CACHE_DATA ? 'd' : a.type == HWLOC_OBJ_CACHE_INSTRUCTION ? 'i' : 'u';
      auto it = std::find_if(m.caches.begin(), m.caches.end(), [&](const CacheGroup& g) {
        return g.level == static_cast<int>(a.depth) && g.kind == kind && g.sizeBytes == a.size;
      });
      if (it == m.caches.end()) m.caches.push_back({static_cast<int>(a.depth), kind, a.size, 1});
      else ++it->count;
    }
  }
}

// hwloc's "NVLinkBandwidth" matrix (from its NVML component, or recorded in an XML file) as an
// NVLinkMatrix; nullopt when there is none.
std::optional<NvLinkMatrix> nvlinkFromHwloc(hwloc_topology_t topo) {
  unsigned count = 1;
  hwloc_distances_s* d = nullptr;
  if (hwloc_distances_get_by_name(topo, "NVLinkBandwidth", &count, &d, 0) != 0 || count == 0 || d == nullptr)
    return std::nullopt;
  struct Release {
    hwloc_topology_t t;
    hwloc_distances_s* d;
    ~Release() { hwloc_distances_release(t, d); }
  } release{topo, d};
  NvLinkMatrix out;
  out.source = "hwloc NVLinkBandwidth";
  for (unsigned i = 0; i < d->nbobjs; ++i) {
    hwloc_obj_t o = d->objs[i];
    NvLinkEnd end;
    if (o != nullptr) {
      hwloc_obj_t pci = o->type == HWLOC_OBJ_OS_DEVICE ? o->parent : o;
      if (pci != nullptr && pci->type == HWLOC_OBJ_PCI_DEVICE) end.busId = busIdOf(pci);
      end.nvswitch = o->subtype != nullptr && std::string_view(o->subtype) == "NVSwitch";
    }
    out.ends.push_back(std::move(end));
  }
  out.mbps.assign(d->values, d->values + static_cast<std::size_t>(d->nbobjs) * d->nbobjs);
  return out;
}

void loadIo(hwloc_topology_t topo, Machine& m, bool probeNvml) {
  std::vector<std::pair<Gpu, hwloc_obj_t>> gpus;
  std::vector<std::pair<Nic, hwloc_obj_t>> nics;

  for (hwloc_obj_t o = nullptr; (o = hwloc_get_next_pcidev(topo, o)) != nullptr;) {
    const auto& a = o->attr->pcidev;
    m.pciDevices.push_back({busIdOf(o), a.vendor_id, a.device_id, a.class_id, infoOf(o, "PCIVendor"),
                            infoOf(o, "PCIDevice")});
    auto osdevs = osDevicesBelow(o);
    bool compute = std::any_of(osdevs.begin(), osdevs.end(), isComputeOsDevice);
    if (!isPciGpuByClass(o) && !compute) continue;
    Gpu gpu;
    gpu.busId = m.pciDevices.back().busId;
    gpu.vendorId = a.vendor_id;
    gpu.deviceId = a.device_id;
    gpu.name = m.pciDevices.back().name;
    for (hwloc_obj_t d : osdevs)
      if (d->name) gpu.osDevices.push_back(d->name);
    gpus.emplace_back(std::move(gpu), o);
  }
  std::sort(m.pciDevices.begin(), m.pciDevices.end(),
            [](const PciDevice& x, const PciDevice& y) { return x.busId < y.busId; });

  for (hwloc_obj_t o = nullptr; (o = hwloc_get_next_osdev(topo, o)) != nullptr;) {
    bool pciParent = o->parent != nullptr && o->parent->type == HWLOC_OBJ_PCI_DEVICE;
    if (isComputeOsDevice(o) && !pciParent) {  // e.g. a co-processor hwloc cannot place on PCI
      Gpu gpu;
      gpu.name = o->name ? o->name : "";
      gpu.osDevices.push_back(gpu.name);
      gpus.emplace_back(std::move(gpu), o);
      continue;
    }
    if (!isNicOsDevice(o) || o->name == nullptr) continue;
    // The OS devices of one PCI function are one NIC: mlx5_0 and the netdev on the same port.
    hwloc_obj_t key = pciParent ? o->parent : o;
    auto it = std::find_if(nics.begin(), nics.end(), [&](const auto& n) { return n.second == key; });
    if (it == nics.end()) {
      Nic nic;
      if (pciParent) {
        nic.busId = busIdOf(key);
        nic.vendorId = key->attr->pcidev.vendor_id;
        nic.deviceId = key->attr->pcidev.device_id;
      }
      nics.emplace_back(std::move(nic), key);
      it = std::prev(nics.end());
    }
    bool rdma = o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS;
    it->first.osDevices.push_back({o->name, rdma});
  }

  for (auto& [nic, obj] : nics) {
    // The RDMA device names the NIC: it is what a verbs transport opens.
    std::stable_sort(nic.osDevices.begin(), nic.osDevices.end(),
                     [](const OsDevice& x, const OsDevice& y) { return x.rdma && !y.rdma; });
    nic.rdma = nic.osDevices.front().rdma;
    nic.name = nic.osDevices.front().name;
    nic.numaNode = numaNodeOf(topo, obj);
    nic.closeCpus = closeCpusOf(topo, obj);
  }
  for (auto& [gpu, obj] : gpus) {
    gpu.numaNode = numaNodeOf(topo, obj);
    gpu.closeCpus = closeCpusOf(topo, obj);
  }
  std::sort(gpus.begin(), gpus.end(), [](const auto& x, const auto& y) {
    return orderKey(x.first.busId, x.first.name) < orderKey(y.first.busId, y.first.name);
  });
  std::sort(nics.begin(), nics.end(), [](const auto& x, const auto& y) {
    return orderKey(x.first.busId, x.first.name) < orderKey(y.first.busId, y.first.name);
  });

  int packageCount = static_cast<int>(m.packages.size());
  std::vector<std::vector<Link>> gpuPci;
  for (auto& [gpu, gobj] : gpus) {
    for (auto& nic : nics) gpu.nics.push_back(linkBetween(topo, gobj, nic.second, packageCount));
    if (gobj->type == HWLOC_OBJ_PCI_DEVICE) gpu.pcieGBps = gobj->attr->pcidev.linkspeed;
    gpuPci.emplace_back();
    for (auto& other : gpus) gpuPci.back().push_back(linkBetween(topo, gobj, other.second, packageCount));
    m.gpus.push_back(std::move(gpu));
  }
  for (auto& nic : nics) m.nics.push_back(std::move(nic.first));
  rankNics(m);

  std::optional<NvLinkMatrix> nvlink = nvlinkFromHwloc(topo);
  if (!nvlink && probeNvml && !m.gpus.empty()) {
    std::string why;
    nvlink = probeNvLinks(m, &why);
    if (!nvlink) KUMI_INFO("no NVLink facts for ", m.gpus.size(), " GPUs: ", why);
  }
  setGpuPeers(m, gpuPci, nvlink ? &*nvlink : nullptr);
}

// probeNvml: this machine, where NVML can add what hwloc's own NVML component would have.
Machine fromTopology(hwloc_topology_t topo, std::string source, bool probeNvml = false) {
  Machine m;
  m.source = std::move(source);
  m.hostName = infoOf(hwloc_get_root_obj(topo), "HostName");
  loadCpus(topo, m);
  loadIo(topo, m, probeNvml);
  return m;
}

void load(hwloc_topology_t topo, const std::string& what) {
  if (hwloc_topology_load(topo) != 0) failErrno("hwloc could not load ", what);
}

}  // namespace

Machine loadLocalMachine() {
  TopologyPtr topo = newTopology();
  // hwloc's libpciaccess component leaks about 1 KiB per load (a leak report in every sanitized
  // program that binds) and only adds device names; the Linux component finds the same PCI
  // devices and bridges through sysfs. Failure (hwloc without the component) changes nothing.
  hwloc_topology_set_components(topo.get(), HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
  load(topo.get(), "this machine's topology");
  return fromTopology(topo.get(), "this machine", /*probeNvml=*/true);
}

Machine loadMachineFromXml(const std::string& path) {
  // hwloc reports a missing file only as a failed load; say which.
  if (!std::ifstream(path)) fail(kumiInvalidArgument, "cannot open hwloc XML file '", path, "'");
  TopologyPtr topo = newTopology();
  // hwloc parses the file in set_xml and checks the tree in load; either may reject it.
  if (hwloc_topology_set_xml(topo.get(), path.c_str()) != 0 || hwloc_topology_load(topo.get()) != 0)
    fail(kumiInvalidArgument, "'", path, "' is not a valid hwloc XML topology");
  return fromTopology(topo.get(), "xml:" + path);
}

Machine loadMachineFromSynthetic(const std::string& description) {
  TopologyPtr topo = newTopology();
  if (hwloc_topology_set_synthetic(topo.get(), description.c_str()) != 0)
    fail(kumiInvalidArgument, "'", description,
         "' is not an hwloc synthetic topology (e.g. \"pack:2 numa:1 core:8 pu:2\")");
  load(topo.get(), cat("synthetic topology '", description, "'"));
  return fromTopology(topo.get(), "synthetic:" + description);
}

}  // namespace kumi::topo
