#include "topology/gpu_fabric.hpp"

#include <algorithm>
#include <cstdio>

namespace kumi::topo {

std::uint64_t nvlinkLaneMBps(unsigned version) {
  // One direction of one link: 20 GB/s for NVLink 1 (P100), 25 for 2-4 (V100, A100, H100: a
  // version 3 link has twice the pairs of a version 2 one at half the rate each), 50 for 5 (B200).
  switch (version) {
    case 1: return 20000;
    case 2:
    case 3:
    case 4: return 25000;
    case 5: return 50000;
    default: return 0;
  }
}

std::string canonicalBusId(std::string_view id) {
  unsigned domain = 0, bus = 0, dev = 0, fn = 0;
  std::string s(id);
  if (std::sscanf(s.c_str(), "%x:%x:%x.%x", &domain, &bus, &dev, &fn) != 4 || domain > 0xffff || bus > 0xff ||
      dev > 0x1f || fn > 7)
    return {};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%01x", domain, bus, dev, fn);
  return buf;
}

void setGpuPeers(Machine& m, const std::vector<std::vector<Link>>& pci, const NvLinkMatrix* nvlink) {
  const std::size_t n = m.gpus.size();
  m.gpuPeers.assign(n, std::vector<GpuPeer>(n));
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = 0; b < n; ++b) {
      GpuPeer& p = m.gpuPeers[a][b];
      p.pci = a < pci.size() && b < pci[a].size() ? pci[a][b] : Link{};
      if (a == b) {
        p.kind = GpuLinkKind::Self;
        continue;
      }
      const double x = m.gpus[a].pcieGBps, y = m.gpus[b].pcieGBps;
      p.gbps = x > 0 && y > 0 ? std::min(x, y) : 0;
    }
  if (nvlink == nullptr || nvlink->ends.empty() || nvlink->mbps.size() != nvlink->ends.size() * nvlink->ends.size())
    return;

  const std::size_t e = nvlink->ends.size();
  std::vector<int> gpuOf(e, -1);
  for (std::size_t i = 0; i < e; ++i)
    for (std::size_t g = 0; g < n; ++g)
      if (!m.gpus[g].busId.empty() && canonicalBusId(nvlink->ends[i].busId) == m.gpus[g].busId)
        gpuOf[i] = static_cast<int>(g);
  auto at = [&](std::size_t i, std::size_t j) { return nvlink->mbps[i * e + j]; };
  // Each GPU's bandwidth into the switch fabric: the sum over its links to every switch port.
  std::vector<std::uint64_t> toSwitches(n, 0);
  for (std::size_t i = 0; i < e; ++i) {
    if (gpuOf[i] < 0) continue;
    for (std::size_t s = 0; s < e; ++s)
      if (s != i && nvlink->ends[s].nvswitch) toSwitches[static_cast<std::size_t>(gpuOf[i])] += at(i, s);
  }
  bool any = false;
  for (std::size_t i = 0; i < e; ++i)
    for (std::size_t j = 0; j < e; ++j) {
      if (i == j || gpuOf[i] < 0 || gpuOf[j] < 0 || gpuOf[i] == gpuOf[j]) continue;
      const auto a = static_cast<std::size_t>(gpuOf[i]), b = static_cast<std::size_t>(gpuOf[j]);
      GpuPeer& p = m.gpuPeers[a][b];
      const std::uint64_t direct = at(i, j);
      const std::uint64_t switched = std::min(toSwitches[a], toSwitches[b]);
      if (direct == 0 && switched == 0) continue;
      any = true;
      if (direct >= switched) {
        p.kind = GpuLinkKind::NvLink;
        p.gbps = static_cast<double>(direct) / 1000.0;
        if (!nvlink->lanes.empty()) p.lanes = nvlink->lanes[i * e + j];
        else if (direct % 25000 == 0) p.lanes = static_cast<int>(direct / 25000);  // hwloc knows versions 1-4:
        else if (direct % 20000 == 0) p.lanes = static_cast<int>(direct / 20000);  // 25 or 20 GB/s lanes
      } else {
        p.kind = GpuLinkKind::NvSwitch;
        p.gbps = static_cast<double>(switched) / 1000.0;
        p.lanes = 0;
      }
    }
  if (any) m.nvlinkSource = nvlink->source;
}

}  // namespace kumi::topo
