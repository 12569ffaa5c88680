#include "topology/machine.hpp"

#include <algorithm>
#include <numeric>

#include "core/error.hpp"

namespace kumi::topo {

std::string_view closenessName(Closeness c) {
  switch (c) {
    case Closeness::PciSwitch: return "pci_switch";
    case Closeness::HostBridge: return "host_bridge";
    case Closeness::NumaNode: return "numa_node";
    case Closeness::Package: return "package";
    case Closeness::Machine: return "machine";
  }
  return "unknown";
}

std::string_view gpuLinkKindName(GpuLinkKind k) {
  switch (k) {
    case GpuLinkKind::Self: return "self";
    case GpuLinkKind::NvLink: return "nvlink";
    case GpuLinkKind::NvSwitch: return "nvswitch";
    case GpuLinkKind::Pcie: return "pcie";
  }
  return "unknown";
}

bool closer(const Link& a, const Link& b) {
  if (a.level != b.level) return a.level < b.level;
  return a.depth > b.depth;
}

std::vector<int> nicsByCloseness(const Machine& machine, int gpu) {
  KUMI_REQUIRE_ARG(gpu >= 0 && gpu < static_cast<int>(machine.gpus.size()), "GPU ", gpu,
                   " does not exist (the machine has ", machine.gpus.size(), ")");
  const std::vector<Link>& links = machine.gpus[gpu].nics;
  std::vector<int> order(links.size());
  std::iota(order.begin(), order.end(), 0);
  // Stable, so that NICs equally close keep their order.
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return closer(links[a], links[b]); });
  return order;
}

void rankNics(Machine& machine) {
  for (std::size_t g = 0; g < machine.gpus.size(); ++g) {
    auto order = nicsByCloseness(machine, static_cast<int>(g));
    machine.gpus[g].nearestNic = order.empty() ? -1 : order.front();
  }
}

std::vector<const Core*> coresOfNumaNode(const Machine& machine, int numaOsIndex) {
  std::vector<const Core*> out;
  for (const Core& c : machine.cores)
    if (c.numaNode == numaOsIndex) out.push_back(&c);
  return out;
}

std::uint64_t lastLevelCacheBytes(const Machine& machine) {
  int level = 0;
  for (const CacheGroup& g : machine.caches)
    if (g.kind != 'i') level = std::max(level, g.level);
  std::uint64_t bytes = 0;
  for (const CacheGroup& g : machine.caches)
    if (g.kind != 'i' && g.level == level) bytes += g.sizeBytes * static_cast<std::uint64_t>(g.count);
  return bytes;
}

}  // namespace kumi::topo
